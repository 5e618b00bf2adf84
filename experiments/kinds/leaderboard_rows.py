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
shows it, the MIA column the raw attack. Random forgetting keeps Deep Unlearn's formula.

Same-run times. RTE divides retraining's seconds by the method's only where both cells were timed in one
invocation (``run_id``) on one machine (its CPU model, flags and threads); otherwise the seed's ratio is withheld
and the row counts it (``rte_withheld``). A machine's speed drifts between runs by about 20%, so the ranks that
depend on RTE come with a range: each timed cell's seconds are scaled by independent factors uniform in [0.8, 1.2]
(``TIME_NOISE``; 500 seeded draws), the average ranks recomputed, and the 2.5-97.5% range of each method's
average rank is shown (``avg_rank_range``). A claim is decided only when it holds, or fails, in at least 97.5% of
those draws; otherwise it is "within timing noise".

Degenerate models. A cell whose RA or TA is at or below chance + 5 points (``DEGENERATE_MARGIN``), or whose
weights are not finite, or whose weight norm exceeds ``EXPLODED`` (100) times retraining's (same seed), is degenerate
(10x flagged `dcu-reference`, whose weights are 14-15x retraining's norm because DC-U's scheme starts from its
offline phase's model, at RA 86% on CIFAR-10: a different weight scale, not a wrecked model; the wrecked models of
the benchmark are 1e4 to 1e14 times, or non-finite):
a wrecked model that Deep Unlearn's ranking can still place high (it is fast and its MIA sits at chance). A
method with a degenerate cell on any seed is not ranked in the toolkit's ranking (``avg_rank``); the row says why
(``degenerate``). Deep Unlearn's own ranking of every method, wrecked ones included, stays beside it, labelled
(``avg_rank_du``).

Pareto front. A ranked row is on the front of RetDev against RTE (``pareto`` = "front") when no other ranked row of
the table is at least as close to retraining and at least as fast, and strictly better on one of the two (means
over seeds).

The default as a user gets it (a ``policy = true`` row, experiments/kinds/leaderboard.py) is never ranked: it runs
one of the ranked methods, or another's options, and a duplicate would move every rank. Its ``pareto`` is "front"
where no ranked row beats it on both RetDev and RTE, else "beaten by" the rows that do (a degenerate row beats
nothing, and a degenerate default is not placed). Where a ranked row is the same run (the same accuracies on every
seed both have: the same method with the same options), the default is placed where that row stands, "(as ROW, the
same run)": the two rows' times differ by the machine's noise alone, which must not decide the placement (and a
default recomputed alone, its RTE withheld, is still placed). Without a twin and without an RTE it is "not placed",
which the targets count as a miss. As the claims are, the placement is decided only where it holds in at least
97.5% of the timing-noise draws (every time scaled by an independent factor in ``TIME_NOISE``); otherwise it is
"within timing noise", with the share of draws in which a ranked row beats it (a miss for the targets too). Its options column says what it ran (the policy entry or the
fallback) and its notes the line `unlearn` printed."""

from __future__ import annotations

import math
import random
import statistics
from typing import Any

from dcforget.forget import ForgetSpec

from ..report import DECIDED, mean_std
from ..workspace import Experiment
from .unlearn import follows_policy

COLUMNS = (
    ("retain_acc", "RA", ".2f"),
    ("forget_acc", "FA", ".2f"),
    ("val_acc", "VA", ".2f"),
    ("test_acc", "TA", ".2f"),
    ("test_acc_other", "TA other", ".2f"),
    ("mia", "MIA", ".2f"),
    ("indiscernibility", "Indisc.", ".3f"),
    ("retention_deviation", "RetDev", ".3f"),
    ("rte", "RTE", ".2f"),
    ("rte_withheld", "RTE withheld", "d"),
    ("l2_to_retrain", "L2 to R", ".3g"),
    ("avg_rank", "avg rank", ".2f"),
    ("avg_rank_range", "rank range (time ±20%)", "s"),
    ("avg_rank_du", "DU rank (all)", ".2f"),
    ("degenerate", "degenerate", "s"),
    ("pareto", "Pareto", "s"),
    ("retain_source", "retain", "s"),
    ("tuned", "options", "s"),
)
DEGENERATE_MARGIN = 5.0  # points above chance
EXPLODED = 100.0  # weight norm / retraining's (DC-U's reference mode starts from its offline-phase model, 14-15x)
TIME_NOISE = (0.8, 1.2)
TIME_DRAWS = 500
RANKED = {"retention_deviation": False, "indiscernibility": True, "rte": True}  # True: higher is better


def retention_terms(r: dict[str, Any], ref: dict[str, Any], whole_class: bool = False) -> list[float]:
    """|acc / retraining's - 1| for RA, FA and TA; for whole-class forgetting FA's term is |FA - retraining's FA|
    whatever retraining's FA is (a retraining that recognises 0.2% of the class must not turn the ratio into a
    500x term); elsewhere an accuracy retraining has at 0 (e.g. a tiny random forget set) also takes the
    absolute gap, since the ratio is undefined (module docstring)."""
    return [
        abs(r[a] - ref[a]) if (whole_class and a == "forget_acc") or ref[a] <= 0 else abs(r[a] / ref[a] - 1)
        for a in ("retain_acc", "forget_acc", "test_acc")
    ]


def indiscernibility(r: dict[str, Any], ref: dict[str, Any] | None, whole_class: bool) -> float:
    """Deep Unlearn's 1 - |MIA - 0.5| / 0.5; for whole-class forgetting 1 - |MIA - retraining's MIA| / 0.5
    (module docstring), NaN where that retraining is missing."""
    if not whole_class:
        return r["indiscernibility"]
    return 1 - abs(r["mia"] - ref["mia"]) / 0.5 if ref is not None else float("nan")


def degenerate_reasons(r: dict[str, Any], ref: dict[str, Any] | None) -> list[str]:
    """Why one cell's model is wrecked (module docstring); empty where it is not."""
    out = []
    classes = r.get("num_classes")
    if classes:
        floor = 1 / classes + DEGENERATE_MARGIN / 100
        out += [
            f"{name} {100 * r[key]:.1f} <= chance + {DEGENERATE_MARGIN:g}"
            for key, name in (("retain_acc", "RA"), ("test_acc", "TA"))
            if r[key] <= floor
        ]
    norm, l2 = r.get("weight_norm"), r.get("l2_to_retrain")
    if (norm is not None and not math.isfinite(norm)) or (l2 is not None and not math.isfinite(l2)):
        out.append("non-finite weights")
    elif norm is not None and ref is not None and ref.get("weight_norm") and norm > EXPLODED * ref["weight_norm"]:
        out.append(f"weights exploded ({norm / ref['weight_norm']:.3g}x retraining's norm)")
    return out


def _per_seed(c: dict[str, Any], ref: dict[str, Any] | None, method: str, whole_class: bool) -> dict[str, Any]:
    """One cell's ranked metrics against the same seed's retraining ``ref``, with the two times behind its RTE."""
    r = c["result"]
    out: dict[str, Any] = {
        "indiscernibility": indiscernibility(r, ref, whole_class),
        "degenerate": degenerate_reasons(r, ref),
    }
    if ref is not None:
        out["retention_deviation"] = statistics.fmean(retention_terms(r, ref, whole_class))
        # the untouched original takes no time; a ratio needs both times from one invocation on one machine
        if method != "none":
            same = (
                r.get("machine") is not None
                and r.get("machine") == ref.get("machine")
                and r.get("run_id") is not None
                and r.get("run_id") == ref.get("run_id")
            )
            if same:
                out["rte"] = ref["seconds"] / max(r["seconds"], 1e-9)
                out["times"] = (ref["seconds"], r["seconds"])
            else:
                out["rte_withheld"] = True
    return out


def _ranks(values: dict[str, float], higher: bool) -> dict[str, float]:
    """Rank 1 = best; tied values share the mean of their ranks."""
    order = sorted(values, key=lambda m: -values[m] if higher else values[m])
    out, i = {}, 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for m in order[i : j + 1]:
            out[m] = (i + j) / 2 + 1
        i = j + 1
    return out


def _average_ranks(
    per_seed: dict[str, dict[int, dict[str, Any]]],
    methods: list[str],
    seeds: list[int],
    factors: dict[tuple[str, int], tuple[float, float]] | None = None,
) -> tuple[dict[str, list[float]], dict[str, dict[str, list[float]]]]:
    """Per method: its average rank on each seed, and its rank per metric per seed, among ``methods``; with
    ``factors`` (method, seed) -> (retraining's, the method's time factor) the RTE is recomputed from scaled times."""
    averages: dict[str, list[float]] = {m: [] for m in methods}
    by_method: dict[str, dict[str, list[float]]] = {m: {} for m in methods}
    for seed in seeds:
        seed_ranks: dict[str, list[float]] = {m: [] for m in methods}
        for key, higher in RANKED.items():
            vals = {}
            for m in methods:
                v = per_seed[m][seed]
                if key == "rte" and factors is not None and "times" in v:
                    (ref_s, own_s), (fr, fm) = v["times"], factors[m, seed]
                    vals[m] = ref_s * fr / max(own_s * fm, 1e-9)
                elif key in v:
                    vals[m] = v[key]
            if len(vals) != len(methods):  # a metric some method lacks on this seed is not ranked there
                continue
            for m, rank in _ranks(vals, higher).items():
                by_method[m].setdefault(key, []).append(rank)
                seed_ranks[m].append(rank)
        for m, rs in seed_ranks.items():
            if rs:
                averages[m].append(statistics.fmean(rs))
    return averages, by_method


def rank_ranges(
    per_seed: dict[str, dict[int, dict[str, Any]]],
    methods: list[str],
    seeds: list[int],
    draws: int = TIME_DRAWS,
    seed: int = 0,
) -> list[dict[str, float]]:
    """The average rank of every method under ``draws`` seeded draws of timing noise (module docstring)."""
    rng = random.Random(seed)
    out = []
    for _ in range(draws):
        factors = {(m, s): (rng.uniform(*TIME_NOISE), rng.uniform(*TIME_NOISE)) for m in methods for s in seeds}
        averages, _ = _average_ranks(per_seed, methods, seeds, factors)
        out.append({m: statistics.fmean(v) for m, v in averages.items() if v})
    return out


def _quantile(values: list[float], q: float) -> float:
    v = sorted(values)
    pos = q * (len(v) - 1)
    lo = math.floor(pos)
    return v[lo] + (v[min(lo + 1, len(v) - 1)] - v[lo]) * (pos - lo)


def _points(table: dict[str, dict[str, Any]]) -> dict[str, tuple[float, float]]:
    """(RetDev, RTE) of the rows that have both figures."""
    return {
        m: (r["retention_deviation"], r["rte"])
        for m, r in table.items()
        if isinstance(r.get("retention_deviation"), float) and isinstance(r.get("rte"), float)
    }


def beaten_by(point: tuple[float, float], others: dict[str, tuple[float, float]]) -> list[str]:
    """The rows of ``others`` (RetDev, RTE) that beat ``point`` on both: at least as close to retraining and at
    least as fast, strictly better on one."""
    d, t = point
    return [n for n, (d2, t2) in others.items() if d2 <= d and t2 >= t and (d2 < d or t2 > t)]


def pareto_front(table: dict[str, dict[str, Any]]) -> list[str]:
    """The rows no other row beats on both RetDev (lower) and RTE (higher): at least as good on both and strictly
    better on one. Rows without both figures are left out."""
    pts = _points(table)
    return [m for m, p in pts.items() if not beaten_by(p, {n: q for n, q in pts.items() if n != m})]


def _some(beaten: list[str], points: dict[str, tuple[float, float]], shown: int = 3) -> str:
    """The rows that beat the default, closest to retraining first: all of them up to ``shown``, else a count."""
    closest = sorted(beaten, key=lambda m: (points[m][0], m))
    more = f" and {len(closest) - shown} more" if len(closest) > shown else ""
    return ", ".join(closest[:shown]) + more


def _twin(default: str, ranked: list[str], per_seed: dict[str, dict[int, dict[str, Any]]]) -> str | None:
    """The ranked row that is the same run as the default row: on every seed both have (at least one), the same
    retention deviation and indiscernibility (a seeded run of one method with one set of options gives bit-identical
    accuracies)."""
    mine = per_seed.get(default, {})
    keys = ("retention_deviation", "indiscernibility")
    for m in ranked:
        theirs = per_seed.get(m, {})
        common = set(mine) & set(theirs)
        if common and all(all(mine[s].get(k) == theirs[s].get(k) for k in keys) for s in common):
            return m
    return None


def _noisy_rte(times: dict[int, tuple[float, float]], rng: random.Random) -> float | None:
    """The mean over seeds of retraining's time over the method's, each time scaled by an independent factor drawn
    from ``TIME_NOISE`` (as the rank ranges draw them); None without a same-run pair of times."""
    vals = [ref * rng.uniform(*TIME_NOISE) / max(own * rng.uniform(*TIME_NOISE), 1e-9) for ref, own in times.values()]
    return statistics.fmean(vals) if vals else None


def _placement(
    row: dict[str, Any],
    twin: str | None,
    points: dict[str, tuple[float, float]],
    per_seed: dict[str, dict[int, dict[str, Any]]],
    draws: int = TIME_DRAWS,
) -> str:
    """Where the default row stands against the ranked rows' (RetDev, RTE) ``points`` (module docstring): decided
    only where the measured placement holds in at least 97.5% of ``draws`` of timing noise."""
    if row.get("degenerate"):
        return "not placed (degenerate)"
    if not points:
        return "not placed (no ranked row has both RetDev and RTE)"
    me = twin if twin in points else row["method"]  # a twin: the same run, timed beside every ranked row
    point = points.get(twin) or _points({row["method"]: row}).get(row["method"])
    if point is None:
        return "not placed (no RTE: its times and retraining's come from different runs)"
    others = {n: q for n, q in points.items() if n != twin}
    beaten = beaten_by(point, others)
    times = {m: {s: v["times"] for s, v in per_seed.get(m, {}).items() if "times" in v} for m in [*points, me]}
    rng, hits = random.Random(0), 0
    for _ in range(draws):  # is it beaten when every time moves by the machine's noise?
        rte = {m: _noisy_rte(t, rng) for m, t in times.items()}
        drawn = {n: (others[n][0], rte[n]) for n in others if rte[n] is not None}
        hits += bool(rte[me] is not None and beaten_by((point[0], rte[me]), drawn))
    share = hits / draws
    same = f" (as {twin}, the same run)" if twin in points else ""
    if beaten and share >= DECIDED:
        return f"beaten by {_some(beaten, points)}{same}"
    if not beaten and share <= 1 - DECIDED:
        return f"front{same}"
    at = f"beaten by {_some(beaten, points)}" if beaten else "front"
    return f"within timing noise: {at} at the measured times, beaten in {100 * share:.0f}% of timing draws{same}"


def _default_options(got: list[dict[str, Any]]) -> tuple[str, str]:
    """(options column, notes) of a ``policy = true`` row: what its cells ran and where it came from, as they
    recorded it, and the lines `unlearn` printed."""

    ran = {
        (
            c["result"].get("policy_method"),
            c["result"].get("retain_source"),
            c["result"].get("policy_source"),
            c["result"].get("tuned") is not None,
        )
        for c in got
    }
    said = " / ".join(
        (f"{where}: " if where else "")
        + f"{method}"
        + (f" ({retain})" if retain else "")
        + (" with its tuned file" if tuned else "")
        for method, retain, where, tuned in sorted(ran, key=str)
    )
    return said, "; ".join(dict.fromkeys(c["result"]["policy_line"] for c in got if c["result"].get("policy_line")))


def rows(exp: Experiment, cells: list[dict[str, Any]], references: tuple[str, ...]) -> list[dict[str, Any]]:
    """The table rows: ``references`` (the kind's reference methods, defined with the cells they decide) first,
    never ranked. Each ranked table also carries, on its first ranked row, the draws of timing noise
    (``_rank_draws``, ``_rank_draws_du``: average ranks per draw, for claims to be checked against; not written)."""
    rows = []
    for model in exp.spec["models"]:
        forget = exp.spec.get("forget", "random:0.1")
        retrain = {
            c["seed"]: c["result"] for c in cells if c["key"] == {"model": model, "forget": forget, "method": "retrain"}
        }
        table, per_seed = [], {}
        whole_class = ForgetSpec.parse(forget).whole_classes
        defaults = [m for m in exp.spec.get("methods", []) if follows_policy(exp, m)]  # shown after the references
        listed = [
            *references,
            *defaults,
            *[m for m in exp.spec.get("methods", []) if m not in (*references, *defaults)],
        ]
        in_cells = [c["key"]["method"] for c in cells if c["key"]["method"] not in listed]
        for m in listed + list(dict.fromkeys(in_cells)):  # then rows the kind adds (a policy's candidates)
            got = [c for c in cells if c["key"] == {"model": model, "forget": forget, "method": m}]
            if not got:
                continue
            row: dict[str, Any] = {
                "experiment": exp.name,
                "model": model,
                "forget": forget,
                "method": m,
                "seeds": len(got),
            }
            for key in ("retain_acc", "forget_acc", "val_acc", "test_acc", "mia"):
                row[key], row[key + "_std"] = mean_std([100 * c["result"][key] for c in got])
            row["l2_to_retrain"], row["l2_to_retrain_std"] = mean_std([c["result"]["l2_to_retrain"] for c in got])
            other = [c["result"].get("test_acc_other") for c in got]
            if all(v is not None for v in other):  # whole-class requests: TA on the classes kept
                row["test_acc_other"], row["test_acc_other_std"] = mean_std([100 * v for v in other])
            per_seed[m] = {c["seed"]: _per_seed(c, retrain.get(c["seed"]), m, whole_class) for c in got}
            row["indiscernibility"], row["indiscernibility_std"] = mean_std(
                [per_seed[m][c["seed"]]["indiscernibility"] for c in got]
            )
            if whole_class:
                row["indisc_target"] = "retrain"
            for key in ("retention_deviation", "rte"):
                vals = [v[key] for v in per_seed[m].values() if key in v]
                if vals:
                    row[key], row[key + "_std"] = mean_std(vals)
            withheld = sum(bool(v.get("rte_withheld")) for v in per_seed[m].values())
            if withheld:
                row["rte_withheld"] = withheld  # seeds whose two times come from different runs or machines
            reasons = {
                f"s{seed}: {'; '.join(v['degenerate'])}" for seed, v in sorted(per_seed[m].items()) if v["degenerate"]
            }
            if reasons and m not in references:
                row["degenerate"] = ", ".join(sorted(reasons))
            files = {c["result"].get("tuned") for c in got}
            row["tuned"] = "reference" if m in references else ("tuned" if files != {None} else "defaults")
            if any(c["result"].get("policy") for c in got):
                row["tuned"] = "policy (validation)"
            if follows_policy(exp, m):
                row["tuned"], row["extra"] = _default_options(got)
                row["default"] = True
            sources = {c["result"].get("retain_source") for c in got} - {None}
            if len(sources) == 1:
                row["retain_source"] = sources.pop()
            table.append(row)
        ranked_all = {r["method"]: r for r in table if r["method"] not in references and not r.get("default")}
        seeds = sorted(set.intersection(*(set(per_seed[m]) for m in ranked_all))) if ranked_all else []
        # Deep Unlearn's ranking: every method, wrecked ones included
        du_avg, _ = _average_ranks(per_seed, list(ranked_all), seeds)
        for m, r in ranked_all.items():
            if du_avg[m]:
                r["avg_rank_du"], r["avg_rank_du_std"] = mean_std(du_avg[m])
        # the toolkit's ranking: degenerate methods left out
        ranked = [m for m, r in ranked_all.items() if "degenerate" not in r]
        averages, by_method = _average_ranks(per_seed, ranked, seeds)
        for m in ranked:
            r = ranked_all[m]
            for key, rs in by_method[m].items():
                r[f"rank_{key}"] = statistics.fmean(rs)
            if averages[m]:
                r["avg_rank"], r["avg_rank_std"] = mean_std(averages[m])
                r["ranked_seeds"] = len(averages[m])
        for m in pareto_front({m: ranked_all[m] for m in ranked}):
            ranked_all[m]["pareto"] = "front"
        points = _points({m: ranked_all[m] for m in ranked})
        for row in table:  # the default as a user gets it, against the ranked rows (module docstring)
            if row.get("default"):
                row["pareto"] = _placement(row, _twin(row["method"], ranked, per_seed), points, per_seed)
        if ranked and seeds:
            draws = rank_ranges(per_seed, ranked, seeds)
            for m in ranked:
                vals = [d[m] for d in draws if m in d]
                if vals:
                    lo, hi = _quantile(vals, 0.025), _quantile(vals, 0.975)
                    ranked_all[m]["avg_rank_lo"], ranked_all[m]["avg_rank_hi"] = lo, hi
                    ranked_all[m]["avg_rank_range"] = f"{lo:.2f}-{hi:.2f}"
            du_draws = rank_ranges(per_seed, list(ranked_all), seeds)
            first = ranked_all[next(iter(ranked_all))]
            first["_rank_draws"], first["_rank_draws_du"] = draws, du_draws
        rows += table
    return rows
