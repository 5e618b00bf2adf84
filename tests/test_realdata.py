"""Real-data tier: the project's CIFAR-10 and MNIST copies and Debian's Fashion-MNIST (scripts/setup.sh unpacks
them into ./data).
Skipped, with the reason, where they are absent."""

import pytest
import torch
from click.testing import CliRunner

from condense.cli import main as condense_main
from dcforget.condensed_store import read_condensed
from dcforget.datasets import load_data
from dcforget.forget import ForgetContext, ForgetSpec, resolve_forget
from unlearn.cli import main as unlearn_main

pytestmark = pytest.mark.realdata


def test_cifar10_through_torchvision(real_data_dir):
    d = load_data("cifar10", real_data_dir, download=False, val_fraction=0)
    assert d.train.images.shape == (50000, 3, 32, 32) and d.train.images.dtype == torch.uint8
    assert d.test.images.shape == (10000, 3, 32, 32)
    assert torch.bincount(d.train.labels).tolist() == [5000] * 10
    assert d.info.class_names[2] == "bird"
    capped = load_data("cifar10", real_data_dir, per_class=4500, seed=0, download=False)  # 15% held out: 675/class
    assert len(capped.train) == 38250 and torch.bincount(capped.train.labels).tolist() == [3825] * 10
    assert len(capped.val) == 6750 and torch.bincount(capped.val.labels).tolist() == [675] * 10
    split = resolve_forget(
        ForgetSpec.parse("class:bird"), ForgetContext(capped.train.labels, 10, 0, capped.info.class_names)
    )
    assert len(split.forget) == 3825 and len(split.retain) == 34425


def test_mnist_through_torchvision(real_data_dir):
    if not (real_data_dir / "MNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file():
        pytest.skip(f"MNIST not unpacked under {real_data_dir}")
    d = load_data("mnist", real_data_dir, download=False, val_fraction=0)
    assert d.train.images.shape == (60000, 1, 28, 28) and d.test.images.shape == (10000, 1, 28, 28)


def test_fashionmnist_through_torchvision(real_data_dir):
    if not (real_data_dir / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte").is_file():
        pytest.skip(
            f"Fashion-MNIST not unpacked under {real_data_dir} (scripts/setup.sh does it from Debian's "
            "dataset-fashion-mnist where that is installed)"
        )
    d = load_data("fashionmnist", real_data_dir, download=False, val_fraction=0)
    assert d.train.images.shape == (60000, 1, 28, 28) and d.test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(d.train.labels).tolist() == [6000] * 10 and d.info.class_names[0] == "T-shirt/top"


def test_train_and_condense_a_real_subset(real_data_dir, tmp_path):
    ck = tmp_path / "orig.pt"
    res = CliRunner().invoke(
        unlearn_main,
        [
            "train",
            "cifar10",
            "--data-dir",
            str(real_data_dir),
            "--model",
            "cnn",
            "--per-class",
            "200",
            "--epochs",
            "4",
            "--out",
            str(ck),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    acc = float(res.output.split("test acc ")[1].split("%")[0])
    assert acc > 20.0  # 10 classes: chance is 10%
    h5 = tmp_path / "fdm.h5"
    res = CliRunner().invoke(
        condense_main,
        [
            "build",
            "cifar10",
            "--data-dir",
            str(real_data_dir),
            "--method",
            "fdm",
            "--clusters",
            "5",
            "--checkpoint",
            str(ck),
            "--option",
            "steps=5",
            "--out",
            str(h5),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    cs = read_condensed(h5)
    # 15% of the 200/class cap is held out for validation: 170/class stay in the training split
    assert len(cs) == 50 and cs.train_size == 1700 and sorted(cs.bucket_indices.tolist()) == list(range(1700))
