"""The benchmarks are a suite of the experiment runner (configs/experiments/throughput/), not a second system: every
kind runs end to end on generated data and its report names the command, code and machine."""

import json
import re

import pytest
from click.testing import CliRunner

from experiments.cli import main as experiments_main


def _args(out) -> list[str]:
    return [
        "reproduce",
        "throughput",
        "--preset",
        "smoke",
        "--out",
        str(out),
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--quiet",
    ]


def test_throughput_suite_runs_every_kind_and_reads_back(tmp_path):
    out = tmp_path / "throughput"
    res = CliRunner().invoke(
        experiments_main,
        _args(out),
    )
    assert res.exit_code == 0, res.output
    saved = json.loads((out / "report.json").read_text())
    meta, rows = saved["meta"], saved["rows"]
    assert meta["git"] and "CPU" in meta["machine"] and meta["seeds"] == 1 and not meta["cells_missing"]
    # unlearning: the default against retraining on both requests
    assert {(r["forget"], r["method"]) for r in rows if r.get("forget") in ("random:0.1", "class:2")} >= {
        ("random:0.1", "retrain"),
        ("random:0.1", "condensed"),
        ("class:2", "condensed"),
    }
    # attacks: every part, the original, retraining and the attacked methods
    parts = {(r["part"], r["method"]) for r in rows if r.get("part")}
    assert {
        ("mia", "original"),
        ("mia", "retrain"),
        ("mia", "condensed"),
        ("ulira", "retrained"),
        ("ulira", "condensed"),
        ("inversion", "finetune (condensive)"),
    } <= parts
    ulira = {r["method"]: r for r in rows if r.get("part") == "ulira"}
    for r in ulira.values():  # each AUC lies in the bootstrap CI the report prints for it
        lo, hi = (float(v) for v in re.search(r"AUC 95% CI \[([\d.]+), ([\d.]+)\]", r["extra"]).groups())
        assert lo - 1e-3 <= r["auc"] <= hi + 1e-3, r
    # U-LiRA tells the forget set's members of the original from retrained models, and cannot tell retrained from
    # retrained (the null setting)
    assert ulira["original"]["auc"] >= 0.75 and abs(ulira["retrained"]["auc"] - 0.5) < 0.1
    # the population attack: the original trained on the forget set, retraining did not
    mia = {r["method"]: r for r in rows if r.get("part") == "mia"}
    assert mia["original"]["auc"] >= 0.8 and mia["original"]["auc"] > mia["retrain"]["auc"] + 0.3
    # throughput: a figure per model, and the batched FDM agrees with the reference's loop
    speed = {r["model"]: r for r in rows if r["method"] == "models"}
    assert set(speed) == {"mlp", "cnn"} and all(r["train_fp32"] > 0 and r["train_bf16"] > 0 for r in speed.values())
    for r in speed.values():  # each ratio is of the two figures timed in the same cell (one seed: no averaging)
        for mode in ("train", "infer"):
            assert r[f"{mode}_bf16_over_fp32"] == pytest.approx(r[f"{mode}_bf16"] / r[f"{mode}_fp32"], rel=1e-9)
    fdm = next(r for r in rows if r["method"] == "fdm")
    # the speed-up is the ratio of the two times measured in the same cell, and the report shows all three
    assert fdm["max_pixel_diff"] < 1e-3 and fdm["ours_s"] > 0 and fdm["loop_s"] > 0
    assert fdm["speedup"] == pytest.approx(fdm["loop_s"] / fdm["ours_s"], rel=1e-9)
    md = (out / "report.md").read_text()
    assert "TPR@1%FPR" in md and "train fp32 img/s" in md
    line = next(ln for ln in md.splitlines() if ln.startswith("| mlp | fdm |"))
    assert [f"{fdm['ours_s']:.1f}", f"{fdm['loop_s']:.1f}", f"{fdm['speedup']:.1f}"] == line.split(" | ")[3:6]
    # a rerun computes nothing
    res = CliRunner().invoke(
        experiments_main,
        _args(out),
    )
    assert res.exit_code == 0
    assert json.loads((out / "report.json").read_text())["meta"]["cells_read_back"] == meta["cells"]
