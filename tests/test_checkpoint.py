import pytest
import torch

from dcforget.checkpoint import load_checkpoint, save_checkpoint
from dcforget.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    DatasetMismatchError,
    OutputExistsError,
    TrainingSetMismatchError,
)
from dcforget.train import TrainConfig, build_model, checkpoint_meta


@pytest.fixture()
def saved(tiny, tmp_path):
    m = build_model("cnn", tiny, seed=0)
    path = save_checkpoint(tmp_path / "m.pt", m, checkpoint_meta(tiny, TrainConfig(epochs=1), seed=0))
    return m, path


def test_round_trip_restores_weights_and_metadata(saved, tiny):
    m, path = saved
    ck = load_checkpoint(
        path,
        dataset="synthetic",
        fingerprint=tiny.fingerprint(),
        arch="cnn",
        image_shape=tiny.info.image_shape,
        num_classes=4,
    )
    assert all(torch.equal(v, ck.model.state_dict()[k]) for k, v in m.state_dict().items())
    assert ck.meta.model["arch"] == "cnn" and ck.meta.seed == 0 and ck.meta.extra["train_config"]["epochs"] == 1
    assert ck.meta.extra["toolkit_version"] and ck.meta.train_fingerprint == tiny.fingerprint()
    x = torch.rand(3, 3, 16, 16)
    m.eval()
    assert torch.equal(m(x), ck.model(x))


def test_loaded_with_weights_only(saved):
    _, path = saved
    payload = torch.load(path, weights_only=True)
    assert payload["format"] == "dcforget-checkpoint" and isinstance(payload["meta_json"], str)


def test_no_overwrite_without_force(saved, tiny):
    m, path = saved
    before = path.read_bytes()
    with pytest.raises(OutputExistsError, match="--force"):
        save_checkpoint(path, m, {})
    assert path.read_bytes() == before
    save_checkpoint(path, m, {"note": "again"}, force=True)
    assert load_checkpoint(path).meta.extra["note"] == "again"
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


@pytest.mark.parametrize(
    "kw, msg, kind",
    [
        ({"dataset": "cifar10"}, "dataset 'synthetic'", DatasetMismatchError),
        ({"arch": "mlp"}, "architecture 'cnn'", ArchitectureMismatchError),
        ({"num_classes": 10}, "class count 4", ArchitectureMismatchError),
        ({"image_shape": (3, 32, 32)}, "image shape", ArchitectureMismatchError),
        ({"fingerprint": "0" * 64}, "different training set", TrainingSetMismatchError),
    ],
)
def test_mismatch_is_a_clear_error_of_its_own_kind(saved, kw, msg, kind):
    with pytest.raises(kind, match=msg):
        load_checkpoint(saved[1], **kw)


def test_corrupt_and_foreign_files(tmp_path, saved):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "none.pt")
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(junk)
    truncated = tmp_path / "trunc.pt"
    truncated.write_bytes(saved[1].read_bytes()[:2000])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(truncated)
    foreign = tmp_path / "foreign.pt"
    torch.save({"weights": torch.zeros(2)}, foreign)
    with pytest.raises(CheckpointError, match="not a dcforget-checkpoint"):
        load_checkpoint(foreign)
    newer = tmp_path / "newer.pt"
    payload = torch.load(saved[1], weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, newer)
    with pytest.raises(CheckpointError, match="format version 99"):
        load_checkpoint(newer)
    wrong = tmp_path / "wrong.pt"
    payload = torch.load(saved[1], weights_only=True)
    payload["state_dict"].pop(next(iter(payload["state_dict"])))
    torch.save(payload, wrong)
    with pytest.raises(CheckpointError, match="does not match its architecture"):
        load_checkpoint(wrong)


def test_pickled_objects_are_refused(tmp_path):
    evil = tmp_path / "evil.pt"
    torch.save({"format": "dcforget-checkpoint", "obj": object()}, evil)
    with pytest.raises(CheckpointError):
        load_checkpoint(evil)
