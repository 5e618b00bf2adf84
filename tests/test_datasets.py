import pytest
import torch

from dcforget.datasets import DATASETS, cap_per_class, load_data, parse_dataset_spec
from dcforget.errors import DatasetError, UnknownNameError


def test_registry_has_the_contract_datasets():
    assert {"cifar10", "cifar100", "svhn", "mnist", "fashionmnist", "synthetic"} <= set(DATASETS.names())


def test_synthetic_is_seeded_uint8_and_sized():
    a = load_data("synthetic:classes=3,train=7,test=2,channels=1,size=12,seed=5", val_fraction=0)
    b = load_data("synthetic:classes=3,train=7,test=2,channels=1,size=12,seed=5", val_fraction=0)
    c = load_data("synthetic:classes=3,train=7,test=2,channels=1,size=12,seed=6", val_fraction=0)
    assert a.train.images.dtype == torch.uint8 and a.train.images.shape == (21, 1, 12, 12)
    assert a.test.images.shape == (6, 1, 12, 12)
    assert a.info.num_classes == 3 and a.info.image_shape == (1, 12, 12)
    assert torch.bincount(a.train.labels).tolist() == [7, 7, 7]
    assert torch.equal(a.train.images, b.train.images) and torch.equal(a.train.labels, b.train.labels)
    assert not torch.equal(a.train.images, c.train.images)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()


def test_synthetic_is_class_structured(tiny):
    # nearest class-mean classification of the test images works far above chance (0.25)
    x = tiny.train.images.float().flatten(1)
    means = torch.stack([x[tiny.train.labels == k].mean(0) for k in range(4)])
    pred = torch.cdist(tiny.test.images.float().flatten(1), means).argmin(1)
    assert (pred == tiny.test.labels).float().mean() > 0.9


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("synthetic:colour=3", "unknown synthetic dataset option"),
        ("synthetic:classes=x", "is not a int"),
        ("synthetic:classes", "expected key=value"),
        ("synthetic:classes=1", "2<=classes"),
        ("cifar10:size=3", "takes no options"),
    ],
)
def test_bad_dataset_specs(spec, msg):
    with pytest.raises(DatasetError, match=msg):
        load_data(spec)


def test_unknown_dataset_names_the_choices():
    with pytest.raises(UnknownNameError, match="choose one of: .*cifar10"):
        parse_dataset_spec("imagenet")


def test_cap_per_class_is_seeded_balanced_and_sorted():
    labels = torch.tensor([0] * 10 + [1] * 3 + [2] * 8)[torch.randperm(21, generator=torch.Generator().manual_seed(0))]
    keep = cap_per_class(labels, 5, seed=1)
    assert torch.equal(keep, torch.sort(keep).values)
    assert torch.bincount(labels[keep]).tolist() == [5, 3, 5]
    assert torch.equal(keep, cap_per_class(labels, 5, seed=1))
    assert not torch.equal(keep, cap_per_class(labels, 5, seed=2))
    with pytest.raises(DatasetError):
        cap_per_class(labels, 0, seed=0)


def test_load_with_per_class_records_source_indices(tiny):
    full = load_data(tiny.spec, val_fraction=0)
    capped = load_data(tiny.spec, per_class=10, seed=3, val_fraction=0)
    assert len(capped.train) == 40
    assert torch.equal(capped.train.images, full.train.images[capped.source_indices])
    assert torch.equal(capped.test.labels, tiny.test.labels)


@pytest.mark.parametrize(
    "name, expected",
    [
        ("cifar10", "cifar-10-batches-py"),
        ("mnist", "MNIST/raw"),
        ("cifar100", "cifar-100-python"),
        ("fashionmnist", "FashionMNIST/raw"),
    ],
)
def test_missing_files_give_one_line_naming_folder_and_files(tmp_path, name, expected):
    with pytest.raises(DatasetError) as info:
        load_data(name, data_dir=tmp_path, download=False)
    msg = str(info.value)
    assert str(tmp_path) in msg and expected in msg and "\n" not in msg


def test_validation_split_is_stratified_disjoint_seeded_and_recorded(tiny):
    full = load_data(tiny.spec, val_fraction=0.0)
    d = load_data(tiny.spec, val_fraction=0.25, seed=1)
    assert d.val is not None and d.val_fraction == 0.25
    # 30 images per class: round(7.5) = 8 (half to even) held out per class, the rest trained on
    assert torch.bincount(d.val.labels).tolist() == [8, 8, 8, 8]
    assert torch.bincount(d.train.labels).tolist() == [22, 22, 22, 22]
    src_train, src_val = set(d.source_indices.tolist()), set(d.val_source_indices.tolist())
    assert not src_train & src_val and src_train | src_val == set(range(len(full.train)))
    assert torch.equal(d.val.images, full.train.images[d.val_source_indices])
    assert torch.equal(d.train.images, full.train.images[d.source_indices])
    again, other = load_data(tiny.spec, val_fraction=0.25, seed=1), load_data(tiny.spec, val_fraction=0.25, seed=2)
    assert torch.equal(again.val_source_indices, d.val_source_indices)
    assert not torch.equal(other.val_source_indices, d.val_source_indices)
    assert d.fingerprint() != full.fingerprint()  # a checkpoint of one split never pairs with the other
    meta = d.split_meta()
    assert meta["val_fraction"] == 0.25 and meta["val_size"] == 32 and meta["train_size"] == 88


def test_validation_is_held_out_after_the_per_class_cap_and_drawn_apart_from_it(tiny):
    capped = load_data(tiny.spec, per_class=20, seed=3, val_fraction=0.0)
    d = load_data(tiny.spec, per_class=20, seed=3, val_fraction=0.15)
    assert len(d.train) + len(d.val) == len(capped.train) == 80
    assert set(d.source_indices.tolist()) | set(d.val_source_indices.tolist()) == set(capped.source_indices.tolist())


def test_default_holds_out_fifteen_percent_and_checkpoint_metadata_rebuilds_it(tiny):
    from dcforget.datasets import DEFAULT_VAL_FRACTION, load_data_for

    d = load_data(tiny.spec, per_class=20)
    assert DEFAULT_VAL_FRACTION == 0.15 and len(d.val) == 4 * 3
    back = load_data_for(d.split_meta())
    assert back.fingerprint() == d.fingerprint() and torch.equal(back.val_source_indices, d.val_source_indices)
    # checkpoints from before the validation split record no val_fraction: they trained on the whole capped set
    old = load_data_for({"dataset": "synthetic", "dataset_spec": tiny.spec, "per_class": 20, "data_seed": 0})
    assert old.val is None and len(old.train) == 80


@pytest.mark.parametrize("fraction", [-0.1, 1.0, 1.5, float("nan")])
def test_bad_validation_fractions_are_refused(tiny, fraction):
    with pytest.raises(DatasetError, match=r"\[0, 1\)"):
        load_data(tiny.spec, val_fraction=fraction)


@pytest.mark.parametrize(
    "meta",
    [
        {"dataset": 3},
        {"dataset": "synthetic", "per_class": "ten"},
        {"dataset": "synthetic", "data_seed": [1]},
        {"dataset": "synthetic", "val_fraction": "x"},
    ],
)
def test_malformed_checkpoint_split_metadata_is_a_dataset_error(meta):
    from dcforget.datasets import load_data_for

    with pytest.raises(DatasetError, match="metadata"):
        load_data_for(meta)
