import os
from pathlib import Path

import pytest
import torch

from dcforget.datasets import load_data

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

REPO = Path(__file__).resolve().parent.parent
TINY = "synthetic:classes=4,train=30,test=10,size=16,noise=0.3"


def trained_cnn_and_mlp(spec: str, cnn_epochs: int, mlp_epochs: int):
    """(data, cnn, mlp): the generated data of ``spec`` and a cnn and an mlp trained on it (seed 0, batch 32), the
    starting point of the method tests. Trained with the partial cut (full batches of 32 and the remainder): the
    method tests' thresholds were set on these models, and how the fixture was cut is not what they test."""
    from dcforget.train import TrainConfig, train_on

    data = load_data(spec)
    cpu = torch.device("cpu")
    cnn = train_on(
        data, "cnn", TrainConfig(epochs=cnn_epochs, batch_size=32, batches="partial"), seed=0, device=cpu, quiet=True
    ).model
    mlp = train_on(
        data, "mlp", TrainConfig(epochs=mlp_epochs, batch_size=32, batches="partial"), seed=0, device=cpu, quiet=True
    ).model
    return data, cnn, mlp


def run_method(model, data, method: str, spec: str = "random:0.2", **opts):
    """One unlearning request on the CPU, quiet: the method tests' way of running a method."""
    from unlearn.request import unlearn_request

    return unlearn_request(model, data, spec, method, device=torch.device("cpu"), options=opts, quiet=True)


def param_copy(model) -> dict:
    """Detached copies of a model's parameters by name."""
    return {k: p.detach().clone() for k, p in model.named_parameters()}


@pytest.fixture(scope="session")
def tiny():
    """4 classes x 30 train / 10 test images of 3x16x16, generated."""
    return load_data(TINY)


MEMORISED = "synthetic:classes=4,train=60,test=20,size=16,noise=2.0"  # 204 training images, memorised (TA far lower)


@pytest.fixture(scope="session")
def memorised_mlp():
    """(data, mlp, condensed): an MLP that memorised the generated data of ``MEMORISED`` (20 epochs, seed 0) and a
    5-bucket FDM condensed set of it; the default method's request tests start here."""
    from condense.build import build_condensed
    from dcforget.train import TrainConfig, train_on

    data = load_data(MEMORISED)
    cpu = torch.device("cpu")
    mlp = train_on(
        data, "mlp", TrainConfig(epochs=20, batch_size=32, batches="partial"), seed=0, device=cpu, quiet=True
    ).model
    cs = build_condensed(data, "fdm", mlp, device=cpu, seed=0, clusters=5, options={"steps": 2}, quiet=True)
    return data, mlp, cs.condensed


@pytest.fixture(scope="session")
def real_data_dir():
    """The real-data tier's data root: $DCFORGET_DATA_DIR or ./data (scripts/setup.sh unpacks it there)."""
    root = Path(os.environ.get("DCFORGET_DATA_DIR") or REPO / "data")
    if not (root / "cifar-10-batches-py" / "test_batch").is_file():
        pytest.skip(f"real CIFAR-10 not found under {root} (scripts/setup.sh unpacks ../shared/data there)")
    return root
