"""The ``leaderboard`` kind's report rows (experiments/kinds/leaderboard.py computes the cells): mean ± sample std
over seeds, retention deviation, run-time efficiency and Deep Unlearn's per-seed ranks. Reporting only, so it is
outside the cells' code digest (runner.NOT_CELL_CODE): changing how rows are ranked never recomputes a cell.

Retention deviation (Deep Unlearn's RetDev): the mean over RA, FA and TA of |acc / retraining's acc - 1|. Where
retraining's accuracy is 0 (a forgotten class's FA) the ratio is undefined; Deep Unlearn, which forgets random
samples only, never meets it. Here that term is the absolute difference |acc - retraining's acc| (as a fraction),
so a method that leaves a forgotten class recognised is as far from retraining as its FA says, instead of the
term being dropped (which ranked doing nothing near the top of class-forgetting tables).

Indiscernibility (Deep Unlearn's Indisc., 1 - |MIA - 0.5| / 0.5) aims at chance, which is where retraining lands
when random samples are forgotten. When whole classes are forgotten it is not: retraining's population MIA on the
forgotten class is far from 0.5 (indiscernibility about 0.1-0.3 on the benchmark's class tables), so Deep Unlearn's
formula rewards a model that still knows the class. For whole-class forgetting the ranked value is 1 - |MIA -
retraining's MIA| / 0.5 against the same seed's retraining (``indisc_target`` = "retrain"); the Indisc. column
shows it, the MIA column the raw attack. Random forgetting keeps Deep Unlearn's formula."""

from __future__ import annotations

import statistics
from typing import Any

from unlearn.tuned import whole_classes

from ..report import mean_std
from ..workspace import Experiment


COLUMNS = (("retain_acc", "RA", ".2f"), ("forget_acc", "FA", ".2f"), ("val_acc", "VA", ".2f"),
           ("test_acc", "TA", ".2f"), ("test_acc_other", "TA other", ".2f"), ("mia", "MIA", ".2f"), ("indiscernibility", "Indisc.", ".3f"),
           ("retention_deviation", "RetDev", ".3f"), ("rte", "RTE", ".2f"), ("l2_to_retrain", "L2 to R", ".2f"),
           ("avg_rank", "avg rank", ".2f"), ("tuned", "options", "s"))
RANKED = {"retention_deviation": False, "indiscernibility": True, "rte": True}  # True: higher is better


def retention_terms(r: dict[str, Any], ref: dict[str, Any], whole_class: bool = False) -> list[float]:
    """|acc / retraining's - 1| for RA, FA and TA; for whole-class forgetting FA's term is |FA - retraining's FA|
    whatever retraining's FA is (a retraining that recognises 0.2% of the class must not turn the ratio into a
    500x term); elsewhere an accuracy retraining has at 0 (e.g. a tiny random forget set) also takes the
    absolute gap, since the ratio is undefined (module docstring)."""
    return [abs(r[a] - ref[a]) if (whole_class and a == "forget_acc") or ref[a] <= 0 else abs(r[a] / ref[a] - 1)
            for a in ("retain_acc", "forget_acc", "test_acc")]


def indiscernibility(r: dict[str, Any], ref: dict[str, Any] | None, whole_class: bool) -> float:
    """Deep Unlearn's 1 - |MIA - 0.5| / 0.5; for whole-class forgetting 1 - |MIA - retraining's MIA| / 0.5
    (module docstring), NaN where that retraining is missing."""
    if not whole_class:
        return r["indiscernibility"]
    return 1 - abs(r["mia"] - ref["mia"]) / 0.5 if ref is not None else float("nan")


def _per_seed(c: dict[str, Any], ref: dict[str, Any] | None, method: str, whole_class: bool) -> dict[str, float]:
    """One cell's ranked metrics against the same seed's retraining ``ref``."""
    r = c["result"]
    out = {"indiscernibility": indiscernibility(r, ref, whole_class)}
    if ref is not None:
        out["retention_deviation"] = statistics.fmean(retention_terms(r, ref, whole_class))
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


def rows(exp: Experiment, cells: list[dict[str, Any]], references: tuple[str, ...]) -> list[dict[str, Any]]:
    """The table rows: ``references`` (the kind's reference methods, defined with the cells they decide) first,
    never ranked."""
    rows = []
    for model in exp.spec["models"]:
        forget = exp.spec.get("forget", "random:0.1")
        retrain = {c["seed"]: c["result"] for c in cells if c["key"] == {"model": model, "forget": forget,
                                                                           "method": "retrain"}}
        table, per_seed = [], {}
        whole_class = whole_classes(forget)
        for m in (*references, *[m for m in exp.spec["methods"] if m not in references]):
            got = [c for c in cells if c["key"] == {"model": model, "forget": forget, "method": m}]
            if not got:
                continue
            row: dict[str, Any] = {"experiment": exp.name, "model": model, "forget": forget, "method": m,
                                   "seeds": len(got)}
            for key in ("retain_acc", "forget_acc", "val_acc", "test_acc", "mia"):
                row[key], row[key + "_std"] = mean_std([100 * c["result"][key] for c in got])
            row["l2_to_retrain"], row["l2_to_retrain_std"] = mean_std([c["result"]["l2_to_retrain"] for c in got])
            other = [c["result"].get("test_acc_other") for c in got]
            if all(v is not None for v in other):  # whole-class requests: TA on the classes kept
                row["test_acc_other"], row["test_acc_other_std"] = mean_std([100 * v for v in other])
            per_seed[m] = {c["seed"]: _per_seed(c, retrain.get(c["seed"]), m, whole_class) for c in got}
            row["indiscernibility"], row["indiscernibility_std"] = mean_std(
                [per_seed[m][c["seed"]]["indiscernibility"] for c in got])
            if whole_class:
                row["indisc_target"] = "retrain"
            for key in ("retention_deviation", "rte"):
                vals = [v[key] for v in per_seed[m].values() if key in v]
                if vals:
                    row[key], row[key + "_std"] = mean_std(vals)
            files = {c["result"].get("tuned") for c in got}
            row["tuned"] = "reference" if m in references else ("tuned" if files != {None} else "defaults")
            table.append(row)
        ranked = {r["method"]: r for r in table if r["method"] not in references}
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
