"""The thin CLIs' façades (issue #34): `condense build` (condense.request), `attacks epsilon` and `attacks ulira`
(attacks.request) validate a whole request before any work and raise typed errors; `attacks ulira` chooses tuned
options by the rule `unlearn` follows (unlearn.tuned.choose_tuned: a file only where its `tuned_on` matches);
the `unlearn` group is built in unlearn.cli and the experiments layer adds its commands through build_group."""

from __future__ import annotations

import json

import click
import pytest
from click.testing import CliRunner

import unlearn.tuned as tuned_mod
from attacks.cli import main as attacks_main
from attacks.request import ULIRA_DEFAULTS, EpsilonRequest, UliraRequest
from condense.request import CondenseRequest, build_defaults
from dcforget.errors import ConfigError, DcForgetError, OutputExistsError, UnknownNameError
from dcforget.forget import ForgetSpec

SPEC = "synthetic:classes=2,train=40,test=10,size=8,noise=1.2"  # a pool of 80: originals train on 40
HALF = 40
JOBS = {"count": 0, "computed_now": 0, "reused": 0, "wall_s": 0}


def _tuned(root, method, options, *, train_size, epochs=2, preset="cpu"):
    p = root / "tuned" / preset / "synthetic-mlp" / f"{method}.json"
    p.parent.mkdir(parents=True, exist_ok=True)
    on = {"dataset": "synthetic", "model": "mlp", "train_size": train_size, "num_classes": 2, "epochs": epochs}
    p.write_text(
        json.dumps(
            {
                "method": method,
                "dataset": "synthetic",
                "model": "mlp",
                "preset": preset,
                "options": options,
                "trial": 1,
                "norm": 0.5,
                "study": {"trials": 4},
                "setup": {"per_class": None, "forget": "random:0.1"},
                "tuned_on": {**on, "forget_kind": "random", "forget": "random:0.1"},
                "meta": {"git": "abc", "command": f"experiments tune synthetic --method {method} --preset {preset}"},
            }
        )
    )
    return p


def _ulira(tmp_path, **kw):
    return UliraRequest(
        SPEC, tmp_path / "u.json", model="mlp", epochs=2, splits=4, forget_fraction=0.5, store=tmp_path / "jobs", **kw
    )


def test_ulira_uses_a_tuned_file_only_at_its_setting_as_unlearn_does(tmp_path, monkeypatch):
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path / "cfg"])
    far = _tuned(tmp_path / "cfg", "finetune", {"lr": 0.02}, train_size=4 * HALF)
    prep = _ulira(tmp_path, methods=("finetune",)).prepare()
    choice = prep.tuned_choices["finetune"]
    assert choice.tuned is None and str(far) in choice.note and "training-set size" in choice.note
    assert prep.setup.methods == {"finetune": {}} and prep.tuned == {}  # the registered defaults
    assert prep.setting.train_size == HALF and prep.setting.epochs == 2 and prep.setting.forget_kind == "random"
    # the same check as `unlearn`'s: one function decides (unlearn.tuned.choose_tuned)
    from unlearn.methods import METHODS

    again = tuned_mod.choose_tuned(
        "finetune", prep.setting, METHODS.get("finetune").defaults, ForgetSpec.parse("random:0.5")
    )
    assert again.note == choice.note
    # at the setting, the file is used, under the --option values
    near = _tuned(tmp_path / "cfg", "finetune", {"lr": 0.02, "epochs": 3}, train_size=HALF + 5, preset="paper")
    prep = _ulira(tmp_path, methods=("finetune",), option_pairs=("epochs=1",)).prepare()
    assert prep.tuned_choices["finetune"].tuned.path == near
    assert prep.setup.methods == {"finetune": {"lr": 0.02, "epochs": 1}} and prep.tuned["finetune"]["file"] == str(near)
    # another epochs count is another setting
    prep = _ulira(tmp_path, methods=("finetune",)).prepare().tuned_choices  # epochs 2 vs the file's 2: used
    assert prep["finetune"].tuned is not None
    far_epochs = UliraRequest(
        SPEC, tmp_path / "u.json", model="mlp", epochs=8, splits=4, forget_fraction=0.5, store=tmp_path / "jobs"
    )
    assert "original's epochs" in far_epochs.prepare().tuned_choices["finetune"].note
    # --untuned: no file; --options-from forces one whatever its setting, checked as `unlearn --options-from`
    assert _ulira(tmp_path, tuned=False).prepare().tuned_choices["finetune"].off
    forced = _ulira(tmp_path, options_from=(str(far),)).prepare()
    assert forced.tuned_choices["finetune"].forced and forced.setup.methods["finetune"]["lr"] == 0.02
    assert "training-set size" in forced.tuned_choices["finetune"].note
    with pytest.raises(ConfigError, match="contradict"):
        _ulira(tmp_path, tuned=False, options_from=(str(far),)).prepare()
    with pytest.raises(ConfigError, match="holds options for 'finetune', not for 'none'"):
        _ulira(tmp_path, methods=("none",), options_from=(str(far),)).prepare()


def test_ulira_cli_says_which_tuned_file_it_uses_or_why_none(tmp_path, monkeypatch):
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path / "cfg"])
    far = _tuned(tmp_path / "cfg", "finetune", {"lr": 0.02}, train_size=4 * HALF)
    import attacks.request as req

    ran = []
    monkeypatch.setattr(
        req.PreparedUlira, "run", lambda self, quiet=False: ran.append(self) or {"attacks": {}, "jobs": JOBS}
    )
    args = ["ulira", SPEC, "--model", "mlp", "--epochs", "2", "--splits", "4", "--forget-fraction", "0.5"]
    args += ["--store", str(tmp_path / "jobs"), "--out", str(tmp_path / "u.json"), "-q"]
    res = CliRunner().invoke(attacks_main, args)
    assert f"tuned options for finetune ({far}) were tuned on another setting: training-set size" in res.output
    assert res.exit_code == 0 and ran and ran[0].setup.methods == {"finetune": {}}
    res = CliRunner().invoke(attacks_main, [*args, "--options-from", str(far)])
    assert "forced by --options-from; its setting differs: training-set size" in res.output
    res = CliRunner().invoke(attacks_main, [*args, "--options-from", str(far), "--untuned"])
    assert res.exit_code == 2 and res.output.startswith("error:") and "contradict" in res.output


def test_ulira_defaults_live_with_the_facade_and_show_in_the_help():
    res = CliRunner().invoke(attacks_main, ["ulira", "--help"])
    text = " ".join(res.output.split())
    assert f"(default {ULIRA_DEFAULTS['splits']})" in text and f"(default {ULIRA_DEFAULTS['model']})" in text
    import attacks.cli

    assert not hasattr(attacks.cli, "_forget_indices") and attacks.cli.ULIRA_DEFAULTS is ULIRA_DEFAULTS


def test_epsilon_request_refuses_before_any_model_is_loaded(tmp_path):
    with pytest.raises(ConfigError, match="at least 2 unlearned"):
        EpsilonRequest(("a.pt",), ("b.pt", "c.pt")).prepare()
    with pytest.raises(ConfigError, match="as many unlearned as retrained"):
        EpsilonRequest(("a.pt", "b.pt", "c.pt"), ("d.pt", "e.pt")).prepare()
    (tmp_path / "e.json").write_text("{}")
    with pytest.raises(OutputExistsError):
        EpsilonRequest(("a.pt", "b.pt"), ("c.pt", "d.pt"), out=tmp_path / "e.json").prepare()
    with pytest.raises(DcForgetError, match="does not exist"):
        EpsilonRequest(("a.pt", "b.pt"), ("c.pt", "d.pt")).prepare()


def test_condense_request_validates_everything_before_any_work(tmp_path):
    out = tmp_path / "c.h5"
    base = dict(dataset=SPEC, out=out)
    for kw, err, msg in (
        ({"method": "nosuch"}, UnknownNameError, "nosuch"),
        ({"method": "fdm", "ipc": 2}, ConfigError, "takes --clusters, not --ipc"),
        ({"method": "dm"}, ConfigError, "give --ipc N"),
        ({"option_pairs": ("steps=-1",)}, ConfigError, "steps"),
        ({"model": "nosuch"}, UnknownNameError, "nosuch"),
        ({"checkpoint": tmp_path / "x.pt", "epochs": 3}, ConfigError, "conflict"),
        ({"dataset": "nosuch"}, UnknownNameError, "nosuch"),
    ):
        with pytest.raises(err, match=msg):
            CondenseRequest(**{**base, **kw}).prepare()
    out.write_text("mine")
    with pytest.raises(OutputExistsError):
        CondenseRequest(**base).prepare()
    prep = CondenseRequest(**base, force=True, clusters=2, model="mlp").prepare()
    assert prep.config["clusters"] == 2 and prep.config["method"] == build_defaults()["method"]
    assert prep.model_out == tmp_path / "c-original.pt" and out.read_text() == "mine"  # nothing written yet


def test_the_unlearn_group_is_built_in_the_stage_and_extended_by_experiments():
    from experiments.cli import demo_cmd, reproduce_cmd, unlearn_main
    from unlearn.cli import build_group
    from unlearn.cli import main as stage

    assert {"reproduce", "demo"} <= set(unlearn_main.commands) and not {"reproduce", "demo"} & set(stage.commands)
    assert set(unlearn_main.commands) - set(stage.commands) == {"reproduce", "demo"}
    assert unlearn_main.params == stage.params and unlearn_main.help == stage.help

    @click.command("hello")
    def hello() -> None:
        click.echo("hi")

    g = build_group([hello])
    assert CliRunner().invoke(g, ["hello"]).output == "hi\n" and "hello" not in stage.commands
    with pytest.raises(ValueError, match="exists already"):
        build_group([reproduce_cmd, reproduce_cmd])
    assert demo_cmd.name == "demo"
