"""The CLIs as a user runs them: through click's runner, plus one real subprocess for the console scripts."""

import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from attacks.cli import main as attacks_main
from condense.cli import main as condense_main
from dcforget.checkpoint import load_checkpoint
from unlearn.cli import main as unlearn_main

TINY = "synthetic:classes=4,train=30,test=10,size=16"


def run(main, args):
    return CliRunner().invoke(main, args, catch_exceptions=False)


@pytest.mark.parametrize("main", [condense_main, unlearn_main, attacks_main])
def test_help(main):
    res = run(main, ["--help"])
    assert res.exit_code == 0 and "Usage" in res.output


def test_console_scripts_installed():
    bindir = Path(sys.executable).parent
    for name in ("condense", "unlearn", "attacks"):
        res = subprocess.run([str(bindir / name), "--help"], capture_output=True, text=True)
        assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("module", ["condense.cli", "unlearn.cli", "attacks.cli", "experiments.cli"])
def test_every_cli_runs_as_a_module(module):
    """`python -m PACKAGE.cli` runs that package's CLI (they once exited 0 doing nothing). The `unlearn` console
    script is unlearn.cli's group plus the experiment commands (`reproduce`, `demo`: experiments.cli.unlearn_main),
    which a module below experiments cannot import."""
    res = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True)
    assert res.returncode == 0 and "Usage" in res.stdout, res.stderr


def test_train_writes_checkpoint_and_reports(tmp_path):
    out = tmp_path / "runs" / "orig.pt"
    res = run(unlearn_main, ["train", TINY, "--model", "mlp", "--epochs", "3", "--seed", "4", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "train acc" in res.output and "test acc" in res.output and "s/epoch" in res.output
    ck = load_checkpoint(out)
    assert ck.meta.seed == 4 and ck.meta.extra["train_config"]["epochs"] == 3 and ck.meta.model["arch"] == "mlp"
    assert ck.meta.config["dataset"] == TINY and len(ck.meta.extra["history"]) == 3
    res = run(unlearn_main, ["evaluate", str(out)])
    assert res.exit_code == 0 and f"{100 * ck.meta.extra['metrics']['test_acc']:.2f}%" in res.output


def test_config_file_then_flags_override(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "mlp"\n[train]\nepochs = 2\nlr = 0.01\n')
    out = tmp_path / "m.pt"
    res = run(unlearn_main, ["train", TINY, "--config", str(cfg), "--lr", "0.002", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    meta = load_checkpoint(out).meta
    assert meta.model["arch"] == "mlp" and meta.extra["train_config"]["epochs"] == 2
    assert meta.extra["train_config"]["lr"] == 0.002


def test_smoke_preset(tmp_path):
    out = tmp_path / "m.pt"
    res = run(unlearn_main, ["train", TINY, "--preset", "smoke", "--model", "mlp", "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    meta = load_checkpoint(out).meta
    assert meta.per_class == 20 and meta.extra["train_config"]["epochs"] == 2 and meta.config["preset"] == "smoke"


BAD = [
    (["train", "imagenet"], "unknown dataset 'imagenet'"),
    (["train", TINY, "--model", "transformer"], "unknown model 'transformer'"),
    (["train", "cifar10", "--data-dir", "{tmp}/nodata", "--no-download"], "not found in"),
    (["train", TINY, "--epochs", "0"], "Invalid value for '--epochs'"),
    (["train", TINY, "--lr", "-1"], "Invalid value for '--lr'"),
    (["train", TINY, "--per-class", "0"], "Invalid value for '--per-class'"),
    (["train", TINY, "--device", "tpu"], "device"),
    (["train", TINY, "--config", "{tmp}/missing.toml"], "does not exist"),
    (["train", TINY, "--config", "{tmp}/bad.toml"], "not valid TOML"),
    (["train", TINY, "--config", "{tmp}/unknown.toml"], "unknown training option"),
    (["train", TINY, "--preset", "huge"], "Invalid value for '--preset'"),
    (["train", "synthetic:classes=1"], "2<=classes"),
    (["evaluate", "{tmp}/none.pt"], "does not exist"),
    (["evaluate", "{tmp}/bad.toml"], "not a readable checkpoint"),
]


@pytest.mark.parametrize("args, msg", BAD)
def test_bad_input_is_one_line_exit_2_nothing_written(tmp_path, args, msg):
    (tmp_path / "bad.toml").write_text("this is [not toml\n")
    (tmp_path / "unknown.toml").write_text("[train]\nepoch = 3\n")
    out = tmp_path / "out" / "m.pt"
    args = [a.format(tmp=tmp_path) for a in args]
    if args[0] == "train":
        args += ["--out", str(out), "-q"]
    before = sorted(p.name for p in tmp_path.rglob("*"))
    res = CliRunner().invoke(unlearn_main, args)
    assert res.exit_code == 2, res.output
    assert msg in res.output
    assert "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_existing_output_needs_force(tmp_path):
    out = tmp_path / "m.pt"
    out.write_bytes(b"precious")
    res = CliRunner().invoke(unlearn_main, ["train", TINY, "--model", "mlp", "--epochs", "1", "--out", str(out), "-q"])
    assert res.exit_code == 2 and "already exists" in res.output and out.read_bytes() == b"precious"
    res = CliRunner().invoke(
        unlearn_main, ["train", TINY, "--model", "mlp", "--epochs", "1", "--out", str(out), "-q", "--force"]
    )
    assert res.exit_code == 0 and load_checkpoint(out).meta.model["arch"] == "mlp"


def test_error_line_goes_to_stderr_only(tmp_path):
    res = subprocess.run(
        [str(Path(sys.executable).parent / "unlearn"), "train", "imagenet", "--out", str(tmp_path / "x.pt")],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.strip().count("\n") == 0 and res.stderr.startswith("error: unknown dataset")


def test_evaluate_refuses_a_checkpoint_for_other_data(tmp_path):
    out = tmp_path / "m.pt"
    assert run(unlearn_main, ["train", TINY, "--model", "mlp", "--epochs", "1", "--out", str(out), "-q"]).exit_code == 0
    import json

    import torch

    payload = torch.load(out, weights_only=True)
    meta = json.loads(payload["meta_json"])
    meta["dataset_spec"] = "synthetic:classes=4,train=30,test=10,size=16,seed=9"  # same shape, other images
    payload["meta_json"] = json.dumps(meta)
    torch.save(payload, out)
    res = CliRunner().invoke(unlearn_main, ["evaluate", str(out)])
    assert res.exit_code == 2 and "different training set" in res.output


def test_model_options_from_config(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('model = "mlp"\n[model_options]\nlogit_relu = true\n[train]\nepochs = 1\n')
    out = tmp_path / "m.pt"
    assert run(unlearn_main, ["train", TINY, "--config", str(cfg), "--out", str(out), "-q"]).exit_code == 0
    ck = load_checkpoint(out)
    assert ck.meta.model["options"]["logit_relu"] is True
    import torch

    assert (ck.model(torch.rand(8, 3, 16, 16)) >= 0).all()
    cfg.write_text('model = "mlp"\n[model_options]\ndepth = 3\n')
    res = CliRunner().invoke(unlearn_main, ["train", TINY, "--config", str(cfg), "--out", str(tmp_path / "n.pt"), "-q"])
    assert res.exit_code == 2 and "bad options for model" in res.output
