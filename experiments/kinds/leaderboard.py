"""The ``leaderboard`` experiment kind: Deep Unlearn's benchmark (../shared/reference/unlearning-methods.md §1.2-1.3)
on one dataset: models x methods x seeds, one original per seed (a seed varies the original's and the retraining's
initialisation and data order, the forget draw and the method's randomness), every method with its tuned options
(``configs/tuned/<preset>/<dataset>-<model>/<method>.json``, written by `experiments tune` on the validation
split; the experiment's ``tuned_on`` names the dataset whose tuning it reuses) or, where none were tuned, its
registered defaults (the report says which, per row).

Per cell: RA, FA, VA, TA, the population MIA of forget vs test (and vs validation), its indiscernibility, seconds,
the machine that timed it, and the L2 distance of the unlearned weights to the same seed's retrained model. Rows:
mean ± sample std over seeds, time as Deep Unlearn's run-time efficiency (retraining's seconds / the method's, per
seed, only where both were timed on the same machine: a retraining read back from a file another run made
elsewhere gives no ratio), retention deviation (mean over RA, FA, TA of |acc / retraining's acc - 1|), and ranks
as Deep Unlearn's: per seed, the methods are ranked on retention deviation, indiscernibility and RTE (ties share
their mean rank), and a row's rank per metric and its average rank are means over seeds (± sample std of the
per-seed average). L2 is shown, not ranked (secondary in Deep Unlearn). Retraining and the original are
reference rows, never ranked."""

from __future__ import annotations

import math
import statistics
from typing import Any

import torch

from dcforget.errors import ConfigError
from dcforget.provenance import machine
from unlearn.methods import METHODS
from unlearn.request import check_forget_kind, unlearn_request
from unlearn.tuned import find_tuned

from ..report import mean_std
from ..workspace import KINDS, Cell, Experiment, Kind, Workspace

REFERENCES = ("retrain", "none")  # retraining, and the original untouched ("none")


def _cells(exp: Experiment, seeds: int) -> list[Cell]:
    s = exp.spec
    methods = [m for m in s["methods"] if m not in REFERENCES]
    forget = s.get("forget", "random:0.1")
    for m in methods:
        if METHODS.get(m).needs_offline:
            raise ConfigError(f"experiment {exp.name}: {m!r} needs DC-U's offline phase per seed, which the "
                              "leaderboard does not build yet")
        check_forget_kind(m, forget)
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
                       preset=ws.preset.get("tuned_preset"),  # only files tuned under this benchmark's preset
                       forget=exp.spec.get("forget", "random:0.1"))
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
        return {**out, "seconds": ref["time"]["total_s"], "machine": ref.get("machine"), "l2_to_retrain": 0.0,
                "options": ref["options"], "tuned": None}
    condensed = ws.condensed(arch, seed=cell.seed) if METHODS.get(method).needs_condensed else None
    res = unlearn_request(ws.original(arch, cell.seed), ws.data(), forget, method, device=ws.device, seed=cell.seed,
                          quiet=ws.quiet, options=options, condensed=condensed)
    r = res.report
    out = {key: r[key] for key in ("retain_acc", "forget_acc", "val_acc", "val_mia", "test_acc", "mia",
                                   "indiscernibility")}
    return {**out, "seconds": r["time"]["total_s"], "machine": machine(ws.device),
            "l2_to_retrain": l2_distance(res.model, retrained),
            "options": r["options"], "tuned": tuned, "method_extra": r.get("method_extra", {})}


COLUMNS = (("retain_acc", "RA", ".2f"), ("forget_acc", "FA", ".2f"), ("val_acc", "VA", ".2f"),
           ("test_acc", "TA", ".2f"), ("mia", "MIA", ".2f"), ("indiscernibility", "Indisc.", ".3f"),
           ("retention_deviation", "RetDev", ".3f"), ("rte", "RTE", ".2f"), ("l2_to_retrain", "L2 to R", ".2f"),
           ("avg_rank", "avg rank", ".2f"), ("tuned", "options", "s"))
RANKED = {"retention_deviation": False, "indiscernibility": True, "rte": True}  # True: higher is better


def _per_seed(c: dict[str, Any], ref: dict[str, Any] | None, method: str) -> dict[str, float]:
    """One cell's ranked metrics against the same seed's retraining ``ref``."""
    r = c["result"]
    out = {"indiscernibility": r["indiscernibility"]}
    if ref is not None:
        # retention: accuracy / retraining's, over the accuracies retraining has (class forgetting's FA is 0)
        out["retention_deviation"] = statistics.fmean(abs(r[a] / ref[a] - 1) for a in ("retain_acc", "forget_acc",
                                                                                        "test_acc") if ref[a] > 0)
        # the untouched original takes no time; a ratio needs both times from one machine
        if method != "none" and r.get("machine") is not None and r.get("machine") == ref.get("machine"):
            out["rte"] = ref["seconds"] / max(r["seconds"], 1e-9)
    return out


def _ranks(values: dict[str, float], higher: bool) -> dict[str, float]:
    """Rank 1 = best; tied values share the mean of their ranks."""
    order = sorted(values, key=lambda m: -values[m] if higher else values[m])
    out, i = {}, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in order[i:j + 1]:
            out[m] = (i + j) / 2 + 1
        i = j + 1
    return out


def _rows(exp: Experiment, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for model in exp.spec["models"]:
        forget = exp.spec.get("forget", "random:0.1")
        retrain = {c["seed"]: c["result"] for c in cells if c["key"] == {"model": model, "forget": forget,
                                                                           "method": "retrain"}}
        table, per_seed = [], {}
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
            per_seed[m] = {c["seed"]: _per_seed(c, retrain.get(c["seed"]), m) for c in got}
            for key in ("retention_deviation", "rte"):
                vals = [v[key] for v in per_seed[m].values() if key in v]
                if vals:
                    row[key], row[key + "_std"] = mean_std(vals)
            files = {c["result"].get("tuned") for c in got}
            row["tuned"] = "reference" if m in REFERENCES else ("tuned" if files != {None} else "defaults")
            table.append(row)
        ranked = {r["method"]: r for r in table if r["method"] not in REFERENCES}
        seeds = sorted(set.intersection(*(set(per_seed[m]) for m in ranked))) if ranked else []
        by_method: dict[str, dict[str, list[float]]] = {m: {} for m in ranked}
        averages: dict[str, list[float]] = {m: [] for m in ranked}
        for seed in seeds:
            seed_ranks: dict[str, list[float]] = {m: [] for m in ranked}
            for key, higher in RANKED.items():
                vals = {m: per_seed[m][seed][key] for m in ranked if key in per_seed[m][seed]}
                if len(vals) != len(ranked):  # a metric some method lacks on this seed is not ranked there
                    continue
                for m, rank in _ranks(vals, higher).items():
                    by_method[m].setdefault(key, []).append(rank)
                    seed_ranks[m].append(rank)
            for m, rs in seed_ranks.items():
                if rs:
                    averages[m].append(statistics.fmean(rs))
        for m, r in ranked.items():
            for key, rs in by_method[m].items():
                r[f"rank_{key}"] = statistics.fmean(rs)
            if averages[m]:
                r["avg_rank"], r["avg_rank_std"] = mean_std(averages[m])
                r["ranked_seeds"] = len(averages[m])
        rows += table
    return rows


KINDS.register("leaderboard")(Kind(_cells, _run, _rows, COLUMNS))
