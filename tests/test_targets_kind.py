"""The targets kind (which replaced scripts/issue16-targets.py): targets in an experiment file, checked against
committed reports' cells, per seed; nothing is run, and a cell follows its source report's bytes."""

import json

import pytest

from experiments.kinds.targets import _cells, _inputs, _rows, _run
from experiments.workspace import Experiment

SPEC = {
    "kind": "targets",
    "sample": {"retain_acc": 3.0, "forget_acc": 2.0},
    "time": 0.1,
    "whole_class": {"forget_acc_class": 1.0, "test_acc_other": 1.0},
}


def _cell(seed, method, forget, **r):
    return {"seed": seed, "key": {"model": "mlp", "method": method, "forget": forget}, "result": r}


@pytest.fixture
def report(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cells = [
        _cell(0, "retrain", "random:0.1", retain_acc=0.90, forget_acc=0.40, seconds=10.0),
        _cell(1, "retrain", "random:0.1", retain_acc=0.90, forget_acc=0.40, seconds=10.0),
        _cell(0, "m", "random:0.1", retain_acc=0.88, forget_acc=0.41, seconds=0.5),  # within every bound
        _cell(1, "m", "random:0.1", retain_acc=0.85, forget_acc=0.45, seconds=0.5),  # RA -5, FA +5: misses
        _cell(0, "retrain", "class:2", forget_acc=0.0, test_acc_other=0.6, seconds=10.0),
        _cell(0, "m", "class:2", forget_acc=0.0, test_acc_other=0.595, seconds=2.0),
    ]  # time 0.2 misses
    (tmp_path / "rep").mkdir()
    (tmp_path / "rep" / "report.json").write_text(json.dumps({"meta": {"git": "abc1234"}, "cells": {"e": cells}}))
    src = dict(setting="s", report="rep", experiment="e", model="mlp", method="m")
    exp = Experiment(
        "t",
        {
            **SPEC,
            "sources": [
                {**src, "request": "random", "forget": "random:0.1"},
                {**src, "request": "class", "forget": "class:2"},
                {**src, "request": "gone", "forget": "random:0.1", "report": "nope"},
            ],
        },
    )
    return tmp_path, exp


def test_targets_are_met_or_missed_on_the_mean_and_on_every_seed(report):
    _, exp = report
    rows = _rows(exp, [{"key": c.key, "result": _run(c, exp, None)} for c in _cells(exp, 3)])
    random, whole, gone = rows
    ra, fa = random["targets"]["retain_acc"], random["targets"]["forget_acc"]
    assert ra["mean"] == pytest.approx(-3.5) and not ra["met_on_mean"] and random["d_retain_acc"] == "**-3.5**"
    assert fa["mean"] == pytest.approx(3.0) and not fa["met_on_mean"]
    assert random["time"] == "0.05" and random["met"] == "no"
    assert whole["fa_class"] == "0.00" and whole["d_test_acc_other"] == "-0.5" and whole["time"] == "**0.20**"
    assert whole["targets"]["time_ratio"]["missed_by"] == pytest.approx(0.1)
    assert "not measured" in gone["extra"] and "abc1234"[:7] in random["source"]


def test_a_cell_follows_its_source_reports_bytes(report):
    tmp, exp = report
    first = _cells(exp, 3)[0]
    before = _inputs(first, exp, {})
    (tmp / "rep" / "report.json").write_text((tmp / "rep" / "report.json").read_text() + " ")
    assert _inputs(first, exp, {}) != before
    assert _inputs(_cells(exp, 3)[2], exp, {}) == "missing"
