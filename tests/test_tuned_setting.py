"""Tuned options that know where they come from (issue #32): `unlearn` uses a tuned file only when the checkpoint's
setting (dataset, model, kind of request, training-set size, the original's epochs) matches the one the file was
tuned on; otherwise the registered defaults run and one line says which file and which field differs.
`--options-from FILE` forces a file; `--untuned` turns files off; the two exclude each other."""

from __future__ import annotations

import json

import pytest
import torch
from click.testing import CliRunner

import unlearn.tuned as tuned_mod
from condense.build import build_condensed
from dcforget.checkpoint import save_checkpoint
from dcforget.condensed_store import write_condensed
from dcforget.datasets import load_data
from dcforget.errors import ConfigError
from dcforget.forget import ForgetSpec
from dcforget.train import TrainConfig, checkpoint_meta, train_on
from unlearn.cli import main as unlearn_main
from unlearn.methods import METHODS
from unlearn.request import UnlearnRequest
from unlearn.tuned import EPOCHS_FACTOR, TRAIN_SIZE_FACTOR, Setting, setting_mismatch, tuned_filename

CPU = torch.device("cpu")
SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"
EPOCHS = 2


@pytest.fixture(scope="module")
def ck(tmp_path_factory):
    """A small MLP checkpoint on generated data, its condensed file, and one with no training-set size recorded
    (as an older toolkit wrote)."""
    d = tmp_path_factory.mktemp("tuned-setting")
    data = load_data(SPEC)
    cfg = TrainConfig(epochs=EPOCHS, batch_size=32)
    tr = train_on(data, "mlp", cfg, seed=0, device=CPU, quiet=True)
    meta = checkpoint_meta(data, cfg, 0, tr)
    save_checkpoint(d / "a.pt", tr.model, meta)
    save_checkpoint(d / "old.pt", tr.model, {k: v for k, v in meta.items() if k != "train_size"})
    cs = build_condensed(
        data, "fdm", tr.model, device=CPU, seed=0, clusters=3, options={"steps": 2}, quiet=True
    ).condensed
    write_condensed(d / "a.h5", cs)
    return {"ck": d / "a.pt", "old": d / "old.pt", "cs": d / "a.h5", "train_size": len(data.train)}


def _write(
    root,
    method,
    options,
    *,
    train_size,
    epochs=EPOCHS,
    forget="random:0.1",
    preset="cpu",
    model="mlp",
    command="experiments tune synthetic --method {m} --preset cpu",
):
    p = root / "tuned" / preset / f"synthetic-{model}" / tuned_filename(method, ForgetSpec.parse(forget))
    p.parent.mkdir(parents=True, exist_ok=True)
    on = {
        "dataset": "synthetic",
        "model": model,
        "train_size": train_size,
        "num_classes": 4,
        "epochs": epochs,
        "forget_kind": ForgetSpec.parse(forget).family,
        "forget": forget,
    }
    p.write_text(
        json.dumps(
            {
                "method": method,
                "dataset": "synthetic",
                "model": model,
                "preset": preset,
                "options": options,
                "trial": 1,
                "norm": 0.5,
                "study": {"trials": 4},
                "setup": {"per_class": None, "forget": forget},
                "tuned_on": on,
                "meta": {"git": "abc", "command": command.format(m=method)},
            },
            indent=1,
        )
    )
    return p


def test_setting_tolerances_are_ratios_either_way():
    here = Setting("cifar10", "mlp", 2125, 30, "random", 250, 10)
    at = lambda size, epochs: Setting("cifar10", "mlp", size, epochs, "random", None, 10)
    assert setting_mismatch(at(int(2125 * TRAIN_SIZE_FACTOR), 30), here) is None
    assert setting_mismatch(at(int(2125 / TRAIN_SIZE_FACTOR) + 1, 30), here) is None
    assert "training-set size" in setting_mismatch(at(2 * 2125, 30), here)  # issue #32's 250 -> 500 per class
    assert "training-set size" in setting_mismatch(at(2125 // 2, 30), here)
    assert setting_mismatch(at(2125, int(30 * EPOCHS_FACTOR)), here) is None
    assert "epochs: 15 in the file, 30 here" in setting_mismatch(at(2125, 15), here)
    assert "model: cnn in the file, mlp here" in setting_mismatch(Setting("cifar10", "cnn", 2125, 30, "random"), here)
    assert "kind of request" in setting_mismatch(Setting("cifar10", "mlp", 2125, 30, "class"), here)
    assert "does not record" in setting_mismatch(None, here)
    assert "does not record its training-set size" in setting_mismatch(
        at(2125, 30), Setting("cifar10", "mlp", None, 30, "random")
    )


def test_a_checkpoint_whose_setting_matches_no_file_gets_the_defaults_with_a_message(ck, tmp_path, monkeypatch):
    far = _write(tmp_path, "neggrad-plus", {"alpha": 0.9, "lr": 0.005}, train_size=4 * ck["train_size"])
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path])
    prep = UnlearnRequest(ck["ck"], "random:0.1", method="neggrad-plus", device="cpu").prepare()
    assert prep.tuned is None and prep.options == {}  # the registered defaults fill in at run time
    assert str(far) in prep.tuned_note and "training-set size" in prep.tuned_note
    out = tmp_path / "o"
    r = CliRunner().invoke(
        unlearn_main,
        [
            "--method",
            "neggrad-plus",
            "--checkpoint",
            str(ck["ck"]),
            "--forget",
            "random:0.1",
            "--option",
            "epochs=1",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    assert f"tuned options for neggrad-plus ({far}) were tuned on another setting: training-set size" in r.output
    assert "using tuned" not in r.output
    rep = json.loads((out / "report.json").read_text())

    assert rep["options"]["alpha"] == METHODS.get("neggrad-plus").defaults["alpha"] != 0.9
    assert rep["tuned"] is None and rep["tuned_choice"]["file"] is None
    assert "training-set size" in rep["tuned_choice"]["reason"]
    assert rep["tuned_choice"]["checkpoint_setting"]["train_size"] == ck["train_size"]
    # the same file at the checkpoint's setting is used; so is one whose epochs differ within the tolerance
    near = _write(tmp_path, "neggrad-plus", {"alpha": 0.9, "lr": 0.005}, train_size=ck["train_size"] + 3, epochs=3)
    prep = UnlearnRequest(ck["ck"], "random:0.1", method="neggrad-plus", device="cpu").prepare()
    assert prep.tuned.path == near and prep.options["alpha"] == 0.9 and prep.tuned_note is None
    _write(tmp_path, "neggrad-plus", {"alpha": 0.9}, train_size=ck["train_size"], epochs=4 * EPOCHS)
    assert (
        "original's epochs"
        in UnlearnRequest(ck["ck"], "random:0.1", method="neggrad-plus", device="cpu").prepare().tuned_note
    )
    # a checkpoint that does not record its training-set size matches nothing
    _write(tmp_path, "neggrad-plus", {"alpha": 0.9}, train_size=ck["train_size"])
    old = UnlearnRequest(ck["old"], "random:0.1", method="neggrad-plus", device="cpu").prepare()
    assert old.tuned is None and "does not record its training-set size" in old.tuned_note


def test_a_matching_file_is_used_and_reported(ck, tmp_path, monkeypatch):
    p = _write(tmp_path, "neggrad-plus", {"alpha": 0.7}, train_size=ck["train_size"])
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path])
    out = tmp_path / "o"
    r = CliRunner().invoke(
        unlearn_main,
        [
            "--method",
            "neggrad-plus",
            "--checkpoint",
            str(ck["ck"]),
            "--forget",
            "random:0.1",
            "--option",
            "epochs=1",
            "--out",
            str(out),
            "--quiet",
        ],
    )
    assert r.exit_code == 0 and f"using tuned options for neggrad-plus on synthetic/mlp from {p}" in r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["options"]["alpha"] == 0.7 and rep["tuned"]["file"] == str(p)
    assert rep["tuned_choice"] == {**rep["tuned_choice"], "file": str(p), "forced": False}


def test_options_from_forces_a_file_and_is_checked(ck, tmp_path, monkeypatch):
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path / "none"])
    far = _write(tmp_path / "f", "neggrad-plus", {"alpha": 0.3}, train_size=10 * ck["train_size"])
    base = [
        "--method",
        "neggrad-plus",
        "--checkpoint",
        str(ck["ck"]),
        "--forget",
        "random:0.1",
        "--option",
        "epochs=1",
        "--quiet",
    ]
    out = tmp_path / "o"
    r = CliRunner().invoke(unlearn_main, [*base, "--options-from", str(far), "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert "forced by --options-from; its setting differs: training-set size" in r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["options"]["alpha"] == 0.3 and rep["tuned_choice"]["forced"] is True
    assert rep["tuned_choice"]["file"] == str(far) and "training-set size" in rep["tuned_choice"]["reason"]
    # bad files and contradictory flags: one error line, exit 2, nothing written
    (tmp_path / "junk.json").write_text("{not json")
    other = _write(tmp_path / "g", "finetune", {"lr": 0.1}, train_size=ck["train_size"])
    unmade = _write(
        tmp_path / "h", "neggrad-plus", {"alpha": 0.3}, train_size=ck["train_size"], command="written by hand"
    )
    wrong_key = _write(tmp_path / "k", "neggrad-plus", {"nonsense": 1}, train_size=ck["train_size"])
    for extra, msg in (
        ([str(tmp_path / "junk.json")], "cannot be read as JSON"),
        ([str(other)], "holds options for 'finetune', not for 'neggrad-plus'"),
        ([str(unmade)], "not a file `experiments tune` wrote"),
        ([str(wrong_key)], "does not have"),
        ([str(tmp_path / "missing.json")], "no such file"),
        ([str(far), "--untuned"], "contradict"),
    ):
        bad = tmp_path / "bad"
        r = CliRunner().invoke(unlearn_main, [*base, "--options-from", *extra, "--out", str(bad)])
        assert r.exit_code == 2 and msg in r.output, (extra, r.output)
        assert r.output.strip().count("\n") == 0 and r.output.startswith("error:"), r.output
        assert not bad.exists()
    with pytest.raises(ConfigError, match="contradict"):
        UnlearnRequest(ck["ck"], "random:0.1", method="neggrad-plus", tuned=False, options_from=far).prepare()


def test_the_default_methods_tuned_file_is_not_used_at_another_setting(ck, tmp_path, monkeypatch):
    """`unlearn --from-condensed` (the default method, condensed) picks up condensed.json only at its setting: at
    DC-U's 5000 per class against a file tuned at 250 it runs the registered defaults and says so."""
    far = _write(tmp_path, "condensed", {"lr": 0.01}, train_size=20 * ck["train_size"])
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path])
    prep = UnlearnRequest(ck["ck"], "random:0.1", condensed_file=ck["cs"], device="cpu").prepare()
    assert prep.method == "condensed" and prep.tuned is None and "lr" not in prep.options
    assert str(far) in prep.tuned_note and "training-set size" in prep.tuned_note
    near = _write(tmp_path, "condensed", {"lr": 0.01}, train_size=ck["train_size"])
    prep = UnlearnRequest(ck["ck"], "random:0.1", condensed_file=ck["cs"], device="cpu").prepare()
    assert prep.tuned.path == near and prep.options["lr"] == 0.01


def test_committed_tuned_files_record_the_setting_of_their_study():
    """Every file under configs/tuned says what it was tuned on, and that agrees with its study's setup."""
    from pathlib import Path

    from experiments.hpsearch import StudySetup

    files = sorted((Path(__file__).resolve().parent.parent / "configs" / "tuned").glob("*/*/*.json"))
    assert files
    for p in files:
        doc = json.loads(p.read_text())
        on, setup = doc.get("tuned_on"), StudySetup.from_dict(doc["setup"])
        assert isinstance(on, dict), f"{p} records no tuned_on"
        assert (on["dataset"], on["model"], on["epochs"], on["forget_kind"], on["per_class"]) == (
            setup.dataset.split(":")[0],
            setup.model,
            setup.train_epochs,
            ForgetSpec.parse(setup.forget).family,
            setup.per_class,
        ), p
        assert isinstance(on["train_size"], int) and on["train_size"] > 0, p
        if setup.per_class:  # the cap minus the validation split (rounded per class)
            expected = setup.per_class * on["num_classes"] * (1 - setup.val_fraction)
            assert abs(on["train_size"] - expected) <= on["num_classes"], (p, on["train_size"], expected)


def test_a_tuned_file_runs_the_defaults_its_study_ran_under(ck, tmp_path, monkeypatch):
    """A file's ``defaults`` (the method's registered defaults when it was tuned) run beside its options, so a
    default changed since does not change what the file does; an option you give still wins; unknown names fail."""
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path / "none"])
    p = _write(tmp_path / "f", "neggrad-plus", {"alpha": 0.3}, train_size=ck["train_size"])
    doc = json.loads(p.read_text())
    assert METHODS.get("neggrad-plus").defaults["weight_decay"] != 0.002
    p.write_text(json.dumps({**doc, "defaults": {"weight_decay": 0.002, "lr": 0.005}}))
    base = ["--method", "neggrad-plus", "--checkpoint", str(ck["ck"]), "--forget", "random:0.1", "--quiet"]
    out = tmp_path / "o"
    r = CliRunner().invoke(unlearn_main, [*base, "--options-from", str(p), "--option", "epochs=1", "--out", str(out)])
    assert r.exit_code == 0, r.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["options"]["alpha"] == 0.3 and rep["options"]["weight_decay"] == 0.002 and rep["options"]["lr"] == 0.005
    out2 = tmp_path / "o2"
    r = CliRunner().invoke(
        unlearn_main,
        [*base, "--options-from", str(p), "--option", "epochs=1", "--option", "lr=0.02", "--out", str(out2)],
    )
    assert r.exit_code == 0 and json.loads((out2 / "report.json").read_text())["options"]["lr"] == 0.02
    p.write_text(json.dumps({**doc, "defaults": {"no_such_option": 1}}))
    out3 = tmp_path / "o3"
    r = CliRunner().invoke(unlearn_main, [*base, "--options-from", str(p), "--option", "epochs=1", "--out", str(out3)])
    assert r.exit_code == 2 and "no_such_option" in r.output and not out3.exists()
