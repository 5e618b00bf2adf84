"""The benchmark's leaderboard kind: one original and one retraining per seed, every method against the same seed's
retraining (L2 distance, run-time efficiency, retention deviation), tuned options picked up per dataset/model and
preset, ranks within the table; the suite's smoke preset runs end to end on generated data."""

import json

import pytest
import torch

import unlearn.tuned as tuned_mod
from experiments.kinds.leaderboard import REFERENCES, _cells, _rows, _run
from experiments.runner import load_suite
from experiments.workspace import Experiment, Workspace

SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"


@pytest.fixture()
def ws(tmp_path):
    preset = {"dataset": SPEC, "original_epochs": 3, "bf16": False, "clusters": 3, "tuned_preset": "smoke",
              "method_options": {"*": {"epochs": 1}}}
    return Workspace(preset, tmp_path / "artefacts", torch.device("cpu"), None, lambda msg: None)


def test_cells_rows_ranks_and_tuned_options(ws, tmp_path, monkeypatch):
    tuned = tmp_path / "cfg" / "tuned" / "smoke" / "synthetic-mlp" / "neggrad-plus.json"
    tuned.parent.mkdir(parents=True)
    tuned.write_text(json.dumps({"method": "neggrad-plus", "dataset": "synthetic", "model": "mlp", "preset": "smoke",
                                 "options": {"alpha": 0.5, "lr": 0.02}}))
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path / "cfg"])
    exp = Experiment("lb", {"kind": "leaderboard", "models": ["mlp"], "methods": ["neggrad-plus", "finetune"],
                            "forget": "random:0.2"})
    cells = _cells(exp, 2)
    assert [c.key["method"] for c in cells[:4]] == [*REFERENCES, "neggrad-plus", "finetune"]  # references first
    assert len(cells) == 8 and {c.seed for c in cells} == {0, 1}
    done = [{"key": c.key, "seed": c.seed, "result": _run(c, exp, ws.for_experiment(exp))} for c in cells]
    by = {(d["key"]["method"], d["seed"]): d["result"] for d in done}
    # one original per seed: the two seeds' originals differ; the retraining is the same file for every method
    assert not torch.equal(ws.original("mlp", 0).beginning[2].weight, ws.original("mlp", 1).beginning[2].weight)
    assert by[("retrain", 0)]["l2_to_retrain"] == 0 and by[("finetune", 0)]["l2_to_retrain"] > 0
    assert by[("neggrad-plus", 0)]["tuned"] == str(tuned) and by[("neggrad-plus", 0)]["options"]["alpha"] == 0.5
    assert by[("neggrad-plus", 0)]["options"]["epochs"] == 1  # the preset's method options over the tuned ones
    assert by[("finetune", 0)]["tuned"] is None
    rows = {r["method"]: r for r in _rows(exp, done)}
    assert rows["neggrad-plus"]["tuned"] == "tuned" and rows["finetune"]["tuned"] == "defaults"
    assert rows["retrain"]["retention_deviation"] == 0 and "avg_rank" not in rows["retrain"]
    rte = [by[("retrain", s)]["seconds"] / by[("finetune", s)]["seconds"] for s in (0, 1)]
    assert rows["finetune"]["rte"] == pytest.approx(sum(rte) / 2)
    ranks = sorted(rows[m]["rank_l2_to_retrain"] for m in ("neggrad-plus", "finetune"))
    assert ranks == [1, 2] and rows["finetune"]["avg_rank"] == pytest.approx(
        sum(rows["finetune"][f"rank_{k}"] for k in ("retention_deviation", "indiscernibility", "rte", "l2_to_retrain")) / 4)
    # a file tuned under another preset is not this benchmark's
    ws.preset["tuned_preset"] = "cpu"
    assert _run(cells[2], exp, ws.for_experiment(exp))["tuned"] is None


def test_the_benchmark_suite_covers_deep_unlearns_methods_on_three_datasets():
    preset, exps = load_suite("benchmark", "cpu")
    assert {e.spec["dataset"] for e in exps} == {"cifar10", "mnist", "fashionmnist"}
    eighteen = {"finetune", "gradient-ascent", "srl", "neggrad-plus", "bad-teacher", "salun", "scrub", "fisher", "iu",
                "cf-k", "eu-k", "fcs", "msg", "cfw", "prmq", "ct", "kde", "rni"}
    assert all(eighteen <= set(e.spec["methods"]) for e in exps) and preset["seed_note"].startswith("A seed varies")
