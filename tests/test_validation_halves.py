"""Two halves of the validation split: a method that reads validation inside itself (its ascent target, its attack's
non-members, its rewind) is served the method half only, and what chooses its options reads the selection half only,
so no choice is made on images the method trained against. Methods that do not read validation keep the whole split.
Synthetic data, no real training."""

import dataclasses
import math

import pytest
import torch

from dcforget.datasets import load_data, validation_halves
from dcforget.errors import ConfigError, DatasetError
from unlearn.methods import METHODS
from unlearn.request import unlearn_request

SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"


@pytest.fixture(scope="module")
def data():
    return load_data(SPEC, val_fraction=0.3)


def test_halves_are_stratified_seeded_and_cover_the_validation_split(data):
    a, b = data.val_halves()
    assert len(set(a.tolist()) & set(b.tolist())) == 0 and sorted([*a.tolist(), *b.tolist()]) == list(
        range(len(data.val))
    )
    counts = torch.bincount(data.val.labels)
    assert torch.equal(torch.bincount(data.val.labels[a], minlength=4), counts // 2)  # stratified
    assert torch.equal(torch.bincount(data.val.labels[b], minlength=4), counts - counts // 2)
    again = load_data(SPEC, val_fraction=0.3).val_halves()
    assert torch.equal(again[0], a) and torch.equal(again[1], b)  # seeded: the same data, the same halves
    other = validation_halves(data.val.labels, seed=1)[0]
    assert not torch.equal(other, a)  # another data seed, another cut
    m, s = data.val_half("method"), data.val_half("selection")
    assert (m.val_part, s.val_part) == ("method", "selection")
    assert set(m.val_source_indices.tolist()).isdisjoint(s.val_source_indices.tolist())
    assert m.fingerprint() == data.fingerprint() and torch.equal(m.train.labels, data.train.labels)
    with pytest.raises(DatasetError, match="already cut"):
        m.val_half("selection")
    with pytest.raises(DatasetError, match="half is one of"):
        data.val_half("test")
    none = load_data(SPEC, val_fraction=0.0)
    assert none.val_half("method") is none


def test_the_registry_marks_the_methods_that_read_validation():
    reads = {n for n in METHODS.names() if METHODS.get(n).reads_validation_with()}
    assert reads == {"condensed", "mia-guided", "scrub", "lrp-npp"}
    assert not METHODS.get("condensed").reads_validation_with({"forget_ce_unit": "nats"})
    assert not METHODS.get("scrub").reads_validation_with({"rewind": False})
    assert not METHODS.get("lrp-npp").reads_validation_with({"aux": "forget"})
    assert METHODS.get("kde").reads_validation_with({"warmup_data": "val"})
    assert "reads_validation" in METHODS.get("mia-guided").capabilities


@pytest.fixture
def spy(monkeypatch):
    """Replace a method's run by one that records the validation images (as training-split source indices) its
    context holds, and returns the original."""
    seen = {}

    def install(name):
        m = METHODS.get(name)

        def run(ctx):
            v = ctx.data.val
            seen[name] = None if v is None else set(ctx.data.val_source_indices.tolist())
            return ctx.copy_original()

        monkeypatch.setitem(METHODS._items, name, dataclasses.replace(m, run=run))
        return seen

    return install


@pytest.fixture(scope="module")
def model(data):
    from dcforget.train import TrainConfig, train_on

    return train_on(
        data, "mlp", TrainConfig(epochs=2, batch_size=32), seed=0, device=torch.device("cpu"), quiet=True
    ).model


@pytest.mark.parametrize("method,spec", [("mia-guided", "random:0.2"), ("scrub", "random:0.2"), ("lrp-npp", "class:1")])
def test_a_method_reading_validation_is_served_the_method_half_only(spy, data, model, method, spec):
    seen = spy(method)
    method_half = set(data.val_half("method").val_source_indices.tolist())
    selection_half = set(data.val_half("selection").val_source_indices.tolist())
    res = unlearn_request(model, data, spec, method, device=torch.device("cpu"), quiet=True, validation="halves")
    assert seen[method] == method_half and seen[method].isdisjoint(selection_half)
    r = res.report
    assert r["data_seen"]["validation"] == len(method_half)
    assert r["validation"]["mode"] == "halves" and "method half" in r["validation"]["method_read"]
    assert "selection half" in r["validation"]["figures"]["selection_val_acc"]
    assert 0 <= r["selection_val_acc"] <= 1 and 0 <= r["selection_val_mia"] <= 1
    # the selection figures are the validation figures of the selection half's images alone
    from dcforget.train import evaluate

    sel = data.val_halves()[1]
    acc = evaluate(res.model, data.val.images[sel], data.val.labels[sel]).accuracy
    assert math.isclose(r["selection_val_acc"], acc, rel_tol=1e-6)
    # the default ("whole") is unchanged: the whole validation split, no selection figures
    whole = unlearn_request(model, data, spec, method, device=torch.device("cpu"), quiet=True)
    assert seen[method] == method_half | selection_half and "selection_val_acc" not in whole.report
    assert whole.report["validation"]["mode"] == "whole" and "whole" in whole.report["validation"]["method_read"]


def test_a_method_that_does_not_read_validation_is_unchanged_in_halves_mode(spy, data, model):
    seen = spy("finetune")
    res = unlearn_request(
        model, data, "random:0.2", "finetune", device=torch.device("cpu"), quiet=True, validation="halves"
    )
    assert seen["finetune"] == set(data.val_source_indices.tolist())  # it reads nothing of it, so nothing is cut
    assert res.report["validation"]["method_read"].startswith("nothing")
    with pytest.raises(ConfigError, match="validation must be"):
        unlearn_request(
            model, data, "random:0.2", "finetune", device=torch.device("cpu"), quiet=True, validation="test"
        )


def test_the_objectives_of_a_halves_study_read_the_selection_half():
    from experiments.hpsearch import SELECTION, StudySetup, objectives, study_validation

    r = {
        "retain_acc": 0.9,
        "forget_acc": 0.6,
        "val_acc": 0.5,
        "val_mia": 0.7,
        "selection_val_acc": 0.8,
        "selection_val_mia": 0.6,
    }
    ref = {
        "retain_acc": 1.0,
        "forget_acc": 0.3,
        "val_acc": 0.5,
        "val_mia": 0.5,
        "selection_val_acc": 0.5,
        "selection_val_mia": 0.5,
    }
    assert objectives(r, ref, "halves") == pytest.approx([0.1 / 3, 0.3 / 3, 0.3 / 3, 0.2])
    assert objectives(r, ref) == pytest.approx([0.1 / 3, 0.3 / 3, 0.0, 0.4])  # whole: unchanged
    assert study_validation("mia-guided") == "halves" and study_validation("finetune") == "whole"
    assert study_validation("condensed", {"forget_ce_unit": "nats"}) == "whole"
    setup = StudySetup(dataset=SPEC, model="mlp")
    assert "validation" not in setup.to_dict()  # earlier studies keep their digests (and their job keys)
    halves = dataclasses.replace(setup, validation="halves")
    assert halves.to_dict()["validation"] == "halves" and halves.digest() != setup.digest()
    assert StudySetup.from_dict(halves.to_dict()) == halves and StudySetup.from_dict(setup.to_dict()) == setup
    assert "selection half" in SELECTION["halves"]
    with pytest.raises(ConfigError, match="whole or halves"):
        StudySetup(dataset=SPEC, model="mlp", validation="test")


def test_a_halves_study_serves_the_method_half_and_scores_on_the_selection_half(spy, tmp_path):
    pytest.importorskip("optuna")
    from experiments.hpsearch import StudySetup, objectives, recheck, tune, tuned_config

    setup = StudySetup(
        dataset=SPEC,
        model="mlp",
        seeds=(0,),
        val_fraction=0.3,
        validation="halves",
        train={"epochs": 3, "batch_size": 32, "optimizer": "adam", "lr": 1e-3},
    )
    seen = spy("mia-guided")
    data = load_data(SPEC, val_fraction=0.3)
    ctx = {"root": str(tmp_path / "art"), "device": "cpu"}
    res = tune(
        "mia-guided",
        setup,
        trials=2,
        storage=tmp_path / "s.journal",
        store=tmp_path / "jobs",
        context=ctx,
        base_options={"batch_size": 32},
    )
    assert seen["mia-guided"] == set(data.val_half("method").val_source_indices.tolist())
    ref = res.references[0]
    assert "selection_val_acc" in ref and "selection_val_mia" in ref
    for t in [t for t in res.trials if t["state"] == "COMPLETE"]:
        r = t["per_seed"][0]
        assert list(t["objectives"].values()) == pytest.approx(objectives(r, ref, "halves"))
        assert t["objectives"]["val_gap"] == pytest.approx(abs(r["selection_val_acc"] - ref["selection_val_acc"]) / 3)
    doc = tuned_config(res, preset="smoke", meta={})
    assert doc["setup"]["validation"] == "halves" and "selection half" in doc["selection"]
    check = recheck(doc, store=tmp_path / "jobs2", context={"root": str(tmp_path / "art2"), "device": "cpu"})
    assert check["within_noise"]  # check-tuned re-scores it the same way (on the selection half)


def test_the_class_choices_sweep_reselects_epochs_and_teacher_on_validation():
    """The default method's class epochs and teacher were first chosen on test-split TA; the choices suite's
    default-class sweep re-makes them on the val gap (every row on every model, against retraining), and the
    method's auto settings are the sweep's pick."""
    from experiments.runner import KINDS, load_suite

    _, exps = load_suite("choices", "cpu")
    exp = next(e for e in exps if e.name == "default-class")
    cells = KINDS.get(exp.spec["kind"]).cells(exp, 1)
    labels = {c.key["method"] for c in cells}
    assert {"retrain", "condensed", "epochs=3", "epochs=12", "teacher=augmented"} <= labels
    assert exp.spec["forget"] == ["class:2"] and len(cells) == len(exp.spec["models"]) * len(labels)
    assert exp.spec["variants"]["teacher=augmented"]["options"] == {"teacher": "augmented", "epochs": 6}
    assert exp.spec["variants"]["teacher=clean,epochs=6"]["options"] == {"teacher": "clean", "epochs": 6}
    assert METHODS.get("condensed").defaults["teacher"] == "auto"


def test_a_tuned_file_says_how_its_study_used_validation(tmp_path):
    """`unlearn` runs a method with options tuned on the halves the way it was tuned (the method half served)."""
    import json

    from unlearn.tuned import read_tuned

    doc = {
        "method": "mia-guided",
        "dataset": "cifar10",
        "model": "mlp",
        "preset": "cpu",
        "options": {"lam": 0.5},
        "setup": {"forget": "random:0.1", "validation": "halves"},
    }
    (tmp_path / "a.json").write_text(json.dumps(doc))
    assert read_tuned(tmp_path / "a.json", METHODS.get("mia-guided").defaults).summary["validation"] == "halves"
    del doc["setup"]["validation"]  # written before the halves: the whole split
    (tmp_path / "b.json").write_text(json.dumps(doc))
    assert read_tuned(tmp_path / "b.json", METHODS.get("mia-guided").defaults).summary["validation"] == "whole"
