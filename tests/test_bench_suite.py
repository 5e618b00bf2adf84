"""The benchmarks are a suite of the experiment runner (configs/experiments/bench/), not a second system: every
kind runs end to end on generated data and its report names the command, code and machine."""

import json

from click.testing import CliRunner

from experiments.cli import main as experiments_main


def test_bench_suite_runs_every_kind_and_reads_back(tmp_path):
    out = tmp_path / "bench"
    res = CliRunner().invoke(experiments_main, ["reproduce", "bench", "--preset", "smoke", "--out", str(out),
                                                "--seeds", "1", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "report.json").read_text())
    meta, rows = saved["meta"], saved["rows"]
    assert meta["git"] and "CPU" in meta["machine"] and meta["seeds"] == 1 and not meta["cells_missing"]
    # unlearning: the default against retraining on both requests
    assert {(r["forget"], r["method"]) for r in rows if r.get("forget") in ("random:0.1", "class:2")} >= {
        ("random:0.1", "retrain"), ("random:0.1", "condensed"), ("class:2", "condensed")}
    # attacks: every part, the original, retraining and the attacked methods
    parts = {(r["part"], r["method"]) for r in rows if r.get("part")}
    assert {("mia", "original"), ("mia", "retrain"), ("mia", "condensed"), ("ulira", "retrained"),
            ("ulira", "condensed"), ("inversion", "finetune (condensive)")} <= parts
    ulira = next(r for r in rows if r.get("part") == "ulira" and r["method"] == "condensed")
    assert 0.0 <= ulira["auc"] <= 1.0
    # throughput: a figure per model, and the batched FDM agrees with the reference's loop
    speed = {r["model"]: r for r in rows if r["method"] == "models"}
    assert set(speed) == {"mlp", "cnn"} and all(r["train_fp32"] > 0 for r in speed.values())
    fdm = next(r for r in rows if r["method"] == "fdm")
    assert fdm["max_pixel_diff"] < 1e-3 and fdm["speedup"] > 0
    md = (out / "report.md").read_text()
    assert "TPR@1%FPR" in md and "train fp32 img/s" in md
    # a rerun computes nothing
    res = CliRunner().invoke(experiments_main, ["reproduce", "bench", "--preset", "smoke", "--out", str(out),
                                                "--seeds", "1", "--device", "cpu", "--quiet"])
    assert res.exit_code == 0
    assert json.loads((out / "report.json").read_text())["meta"]["cells_read_back"] == meta["cells"]
