"""The ``leaderboard`` experiment kind: Deep Unlearn's benchmark (../shared/reference/unlearning-methods.md §1.2-1.3)
on one dataset: models x methods x seeds, one original per seed (a seed varies the original's and the retraining's
initialisation and data order, the forget draw and the method's randomness), every method with its tuned options
(``configs/tuned/<preset>/<dataset>-<model>/<method>.json``, written by `experiments tune` on the validation
split; the experiment's ``tuned_on`` names the dataset whose tuning it reuses) or, where none were tuned, its
registered defaults (the report says which, per row).

Per cell: RA, FA, VA, TA, the population MIA of forget vs test (and vs validation), its indiscernibility, seconds,
and the L2 distance of the unlearned weights to the same seed's retrained model. Rows: mean ± sample std over
seeds, time as Deep Unlearn's run-time efficiency (retraining's seconds / the method's), retention deviation
(mean over RA, FA, TA of |acc / retraining's acc - 1|), and ranks per metric within the table (on the seed means;
ties get distinct ranks) plus their average. Deep Unlearn ranks per seed and aggregates the ranks; that, and
leaving out L2 (secondary there), is still to do. Retraining and the original are reference rows."""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch

from unlearn.methods import METHODS
from unlearn.request import unlearn_request
from unlearn.tuned import find_tuned

from ..report import mean_std
from ..workspace import KINDS, Cell, Experiment, Kind, Workspace

REFERENCES = ("retrain", "none")  # retraining, and the original untouched ("none")


def _cells(exp: Experiment, seeds: int) -> list[Cell]:
    s = exp.spec
    methods = [m for m in s["methods"] if m not in REFERENCES]
    for m in methods:
        if METHODS.get(m).needs_offline:
            from dcforget.errors import ConfigError

            raise ConfigError(f"experiment {exp.name}: {m!r} needs DC-U's offline phase per seed, which the "
                              "leaderboard does not build yet")
    forget = s.get("forget", "random:0.1")
    return [Cell(exp.name, {"model": model, "forget": forget, "method": m}, seed)
            for model in s["models"] for seed in range(seeds) for m in (*REFERENCES, *methods)]


def method_options(exp: Experiment, ws: Workspace, method: str, arch: str) -> tuple[dict[str, Any], str | None]:
    """(options, tuned file or None): the tuned options of ``tuned_on``'s dataset for this preset, under the
    preset's and experiment's ``method_options``."""
    if method in REFERENCES:
        train = {**ws.preset.get("original_train", {}), "epochs": int(ws.preset["original_epochs"])}
        known = METHODS.get(method).defaults
        return {k: v for k, v in train.items() if k in known}, None
    known = METHODS.get(method).defaults
    tuned = find_tuned(method, exp.spec.get("tuned_on", ws.preset["dataset"]), arch, known,
                       preset=ws.preset.get("tuned_preset"))  # only files tuned under this benchmark's preset
    out = dict(tuned.options) if tuned is not None else {}
    for source in (ws.preset.get("method_options", {}), exp.spec.get("method_options", {})):
        for scope in ("*", method, f"{method}@{arch}"):
            out.update({k: v for k, v in source.get(scope, {}).items() if k in known})
    return out, (str(tuned.path) if tuned is not None else None)


def l2_distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Euclidean distance between two models' parameters (Deep Unlearn's model L2 distance)."""
    na, nb = [(n, p.shape) for n, p in a.named_parameters()], [(n, p.shape) for n, p in b.named_parameters()]
    if na != nb:
        raise ValueError("L2 distance between models of different layouts")
    return math.sqrt(sum(float(((p.detach().float() - q.detach().float()) ** 2).sum())
                         for p, q in zip(a.parameters(), b.parameters())))


def _run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    k = cell.key
    arch, forget, method = k["model"], k["forget"], k["method"]
    options, tuned = method_options(exp, ws, method, arch)
    retrain_opts = method_options(exp, ws, "retrain", arch)[0]
    retrained, ref = ws.retrained(arch, forget, cell.seed, retrain_opts)
    if method == "retrain":
        out = {key: ref[key] for key in ("retain_acc", "forget_acc", "val_acc", "val_mia", "test_acc", "mia",
                                         "indiscernibility")}
        return {**out, "seconds": ref["time"]["total_s"], "l2_to_retrain": 0.0, "options": ref["options"], "tuned": None}
    condensed = ws.condensed(arch, seed=cell.seed) if METHODS.get(method).needs_condensed else None
    res = unlearn_request(ws.original(arch, cell.seed), ws.data(), forget, method, device=ws.device, seed=cell.seed,
                          quiet=ws.quiet, options=options, condensed=condensed)
    r = res.report
    out = {key: r[key] for key in ("retain_acc", "forget_acc", "val_acc", "val_mia", "test_acc", "mia",
                                   "indiscernibility")}
    return {**out, "seconds": r["time"]["total_s"], "l2_to_retrain": l2_distance(res.model, retrained),
            "options": r["options"], "tuned": tuned, "method_extra": r.get("method_extra", {})}


COLUMNS = (("retain_acc", "RA", ".2f"), ("forget_acc", "FA", ".2f"), ("val_acc", "VA", ".2f"),
           ("test_acc", "TA", ".2f"), ("mia", "MIA", ".2f"), ("indiscernibility", "Indisc.", ".3f"),
           ("retention_deviation", "RetDev", ".3f"), ("rte", "RTE", ".2f"), ("l2_to_retrain", "L2 to R", ".2f"),
           ("avg_rank", "avg rank", ".2f"), ("tuned", "options", "s"))
RANKED = {"retention_deviation": False, "indiscernibility": True, "rte": True, "l2_to_retrain": False}  # True: higher is better


def _rows(exp: Experiment, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for model in exp.spec["models"]:
        forget = exp.spec.get("forget", "random:0.1")
        retrain = {c["seed"]: c["result"] for c in cells if c["key"] == {"model": model, "forget": forget,
                                                                           "method": "retrain"}}
        table = []
        for m in (*REFERENCES, *[m for m in exp.spec["methods"] if m not in REFERENCES]):
            got = [c for c in cells if c["key"] == {"model": model, "forget": forget, "method": m}]
            if not got:
                continue
            row: dict[str, Any] = {"experiment": exp.name, "model": model, "forget": forget, "method": m,
                                   "seeds": len(got)}
            for key in ("retain_acc", "forget_acc", "val_acc", "test_acc", "mia"):
                row[key], row[key + "_std"] = mean_std([100 * c["result"][key] for c in got])
            for key in ("indiscernibility", "l2_to_retrain"):
                row[key], row[key + "_std"] = mean_std([c["result"][key] for c in got])
            paired = [c for c in got if c["seed"] in retrain]
            if paired:
                # retention: accuracy / retraining's, over the accuracies retraining has (class forgetting's FA is 0)
                dev = [statistics.fmean(abs(c["result"][a] / retrain[c["seed"]][a] - 1)
                                        for a in ("retain_acc", "forget_acc", "test_acc") if retrain[c["seed"]][a] > 0)
                       for c in paired]
                row["retention_deviation"], row["retention_deviation_std"] = mean_std(dev)
                if m != "none":  # the untouched original takes no time: no efficiency to speak of
                    rte = [retrain[c["seed"]]["seconds"] / max(c["result"]["seconds"], 1e-9) for c in paired]
                    row["rte"], row["rte_std"] = mean_std(rte)
            files = {c["result"].get("tuned") for c in got}
            row["tuned"] = "reference" if m in REFERENCES else ("tuned" if files != {None} else "defaults")
            table.append(row)
        ranked = [r for r in table if r["method"] not in REFERENCES]
        for key, higher in RANKED.items():
            order = sorted((r for r in ranked if key in r), key=lambda r: -r[key] if higher else r[key])
            for i, r in enumerate(order, 1):
                r[f"rank_{key}"] = i
        for r in ranked:
            rs = [r[f"rank_{k}"] for k in RANKED if f"rank_{k}" in r]
            if rs:
                r["avg_rank"] = sum(rs) / len(rs)
        rows += table
    return rows


KINDS.register("leaderboard")(Kind(_cells, _run, _rows, COLUMNS))
