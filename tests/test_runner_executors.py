"""A suite runs on any executor of the job engine: a pool of processes gives the cells one process gives."""

import json

import pytest
import torch
from click.testing import CliRunner

from experiments.cli import main as experiments_main


def _cells(out):
    return {
        p.relative_to(out).as_posix(): json.loads(p.read_text())["result"]
        for p in sorted((out / "cells").rglob("*.json"))
    }


def test_a_pool_of_workers_gives_the_in_process_cells(tmp_path):
    args = [
        "reproduce",
        "dcu",
        "--preset",
        "smoke",
        "--only",
        "remembrance-size",
        "--seeds",
        "1",
        "--device",
        "cpu",
        "--quiet",
    ]
    one, two = tmp_path / "one", tmp_path / "two"
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as each of the two workers will run: float reductions then round the same way
    try:
        res = CliRunner().invoke(experiments_main, [*args, "--out", str(one)])
    finally:
        torch.set_num_threads(threads)
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(experiments_main, [*args, "--out", str(two), "--workers", "2"])
    assert res.exit_code == 0, res.output
    a, b = _cells(one), _cells(two)
    assert a.keys() == b.keys() and len(a) == 5
    for name in a:
        for key in ("retain_acc", "forget_acc", "test_acc"):
            assert a[name][key] == pytest.approx(b[name][key], abs=1e-6), (name, key)
    report = json.loads((two / "report.json").read_text())
    assert not report["meta"]["cells_missing"]
    res = CliRunner().invoke(experiments_main, [*args, "--out", str(two), "--workers", "2"])
    assert res.exit_code == 0 and json.loads((two / "report.json").read_text())["meta"]["cells_read_back"] == len(a)
