"""DC-U's offline phase and online modular unlearning on generated data."""

import pytest
import torch
from click.testing import CliRunner

from condense.build import build_condensed
from dcforget.checkpoint import load_checkpoint
from dcforget.datasets import load_data
from dcforget.errors import ConfigError
from dcforget.train import TrainConfig
from dcforget.training import train_on
from unlearn.cli import main as unlearn_main
from unlearn.offline import offline_phase, remembrance_set
from unlearn.request import unlearn_request

CPU = torch.device("cpu")
SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"


@pytest.fixture(scope="module")
def setup():
    data = load_data(SPEC, per_class=32, seed=0)
    model = train_on(data, "cnn", TrainConfig(epochs=6, batch_size=32), seed=0, device=CPU, quiet=True).model
    return data, model


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_remembrance_sources(setup):
    data, _ = setup
    held = remembrance_set(data, 3, "heldout", seed=0)
    assert len(held.labels) == 12 and torch.bincount(held.labels).tolist() == [3] * 4
    assert not set(held.indices.tolist()) & set(data.source_indices.tolist())  # never a training image
    test = remembrance_set(data, 2, "test", seed=0)
    assert torch.equal(test.images, data.test.images[test.indices])
    with pytest.raises(ConfigError, match="held-out"):
        remembrance_set(data, 9, "heldout", seed=0)
    with pytest.raises(ConfigError):
        remembrance_set(data, 2, "train", seed=0)


def test_offline_phase_moves_final_and_intermediate_only(setup):
    data, model = setup
    rem = remembrance_set(data, 3, "heldout", seed=0)
    off = offline_phase(model, data, rem, {"iterations": 2, "final_epochs": 3, "intermediate_epochs": 1,
                                           "lr_final": 1e-2, "lr_intermediate": 1e-3}, device=CPU, quiet=True)
    b0, i0, f0 = model.split()
    b1, i1, f1 = off.split()
    assert _same(b0, b1) and not _same(i0, i1) and not _same(f0, f1)
    assert all(p.requires_grad for p in off.parameters())


@pytest.mark.parametrize("quirks", [False, True])
def test_online_stages_follow_the_schedule(setup, quirks):
    data, model = setup
    rem = remembrance_set(data, 3, "heldout", seed=0)
    cs = build_condensed(data, "fdm", model, device=CPU, clusters=4, options={"steps": 2}, quiet=True).condensed
    art = {"remembrance_images": rem.images, "remembrance_labels": rem.labels}
    # final_thr == overture_epochs: Final is never trained (the reference's class-wise setting)
    res = unlearn_request(model, data, "random:0.1", "dcu-reference", device=CPU, condensed=cs, artefacts=art,
                          options={"overture_epochs": 2, "final_thr": 2, "reference_quirks": quirks}, quiet=True)
    b0, i0, f0 = model.split()
    b1, i1, f1 = res.model.split()
    assert not _same(b0, b1) and not _same(i0, i1) and _same(f0, f1)
    assert res.report["reduced_set"]["passed"]
    res = unlearn_request(model, data, "random:0.1", "dcu-reference", device=CPU, condensed=cs, artefacts=art,
                          options={"overture_epochs": 2, "final_thr": 1}, quiet=True)
    assert not _same(f0, res.model.split()[2])
    with pytest.raises(ConfigError, match="unlearn offline"):
        unlearn_request(model, data, "random:0.1", "dcu-reference", device=CPU, condensed=cs)


def test_offline_cli_stores_the_remembrance_set(tmp_path):
    r = CliRunner()
    ck = tmp_path / "o.pt"
    assert r.invoke(unlearn_main, ["train", SPEC, "--per-class", "32", "--epochs", "2", "--out", str(ck), "-q"]).exit_code == 0
    res = r.invoke(unlearn_main, ["offline", "--checkpoint", str(ck), "--remembrance-ipc", "2", "--option", "iterations=1",
                                  "--option", "final_epochs=1", "--option", "intermediate_epochs=1", "-q"])
    assert res.exit_code == 0, res.output
    off = load_checkpoint(tmp_path / "o-offline.pt")
    assert off.tensors["remembrance_images"].shape == (8, 3, 16, 16)
    assert off.meta["offline"]["remembrance"]["source"] == "heldout" and off.meta["train_fingerprint"]
    res = r.invoke(unlearn_main, ["offline", "--checkpoint", str(ck), "--option", "speed=1", "--force"])
    assert res.exit_code == 2 and "unknown option" in res.output


def test_class_forgetting_drops_that_class_from_the_remembrance_set(setup):
    data, model = setup
    rem = remembrance_set(data, 3, "heldout", seed=0)
    from unlearn.methods.base import UnlearnContext
    from unlearn.request import cumulative_split
    split = cumulative_split(data, "class:2", 0, None)
    ctx = UnlearnContext(model, data, split, CPU, 0, {}, artefacts={"remembrance_images": rem.images,
                                                                    "remembrance_labels": rem.labels})
    x, y = ctx.remembrance()
    assert 2 not in y.tolist() and len(y) == 9
    assert 2 in ctx.remembrance(keep_forgotten_classes=True)[1].tolist()


def test_condensed_model_mode_trains_a_fresh_classifier_of_another_architecture(tmp_path):
    from dcforget.models.autoencoder import AutoencoderClassifier
    spec = "synthetic:classes=4,train=40,test=10,size=16,noise=0.5"
    data = load_data(spec, per_class=32, seed=0)
    ae = train_on(data, "convae", TrainConfig(epochs=6, batch_size=32), seed=0, device=CPU, quiet=True).model
    assert isinstance(ae, AutoencoderClassifier) and ae.config["options"]["classifier"] == "convnet"
    rem = remembrance_set(data, 4, "heldout", seed=0)
    off = offline_phase(ae, data, rem, {"iterations": 2, "final_epochs": 5, "intermediate_epochs": 1, "lr_final": 1e-3,
                                        "lr_intermediate": 1e-3, "final_reinit_each_iter": True}, device=CPU, quiet=True)
    cs = build_condensed(data, "fdm", off, device=CPU, clusters=4, options={"steps": 2}, quiet=True).condensed
    art = {"remembrance_images": rem.images, "remembrance_labels": rem.labels}
    res = unlearn_request(off, data, "class:1", "condensed-model", device=CPU, condensed=cs, artefacts=art, quiet=True,
                          options={"overture_epochs": 2, "final_epochs": 3, "intermediate_epochs": 1,
                                   "classifier": "mlp", "recondense_epochs": 20})
    m = res.model
    assert m.config["options"]["classifier"] == "mlp" and res.report["method_extra"]["classifier"] == "mlp"
    assert res.report["forget_acc"] <= 0.05  # class 1 is in neither the reduced set nor the remembrance set
    # the databank is the unlearned one, shared by the fresh classifier
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert m.databank(x).shape == (2, 3, 16, 16) and 0 <= float(m.databank(x).min())
    plain = train_on(data, "mlp", TrainConfig(epochs=1), seed=0, device=CPU, quiet=True).model
    with pytest.raises(ConfigError, match="convae"):
        unlearn_request(plain, data, "class:1", "condensed-model", device=CPU, condensed=cs, artefacts=art)
