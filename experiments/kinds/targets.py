"""The ``targets`` experiment kind: targets of a method, checked against figures read off committed reports. It
runs nothing: each cell reads one source report's cells (per seed) and compares the method with retraining of the
same seed; its digest includes the source report's bytes, so a cell is recomputed when its source is re-run.

An experiment file names the bounds and the sources::

    kind = "targets"
    sample = { retain_acc = 3.0, forget_acc = 2.0, test_acc = 1.0, mia = 2.0 }  # |method - retrain| (points)
    whole_class = { forget_acc_class = 1.0, test_acc_other = 1.0 }  # FA (%) and |d TA on the kept classes|
    time = 0.1                                                       # method seconds / retraining's, same run
    [[sources]]
    setting = "..."; request = "random 10%"; report = "reports/..."; experiment = "..."; model = "mlp"
    forget = "random:0.1"      # or "successive" (one comparison per request of a successive-requests cell)
    method = "condensed"       # the row label of the method in that report
    [[ulira]]
    setting = "..."; report = "reports/ulira-..."; method = "condensed"; overlaps = "retrained"; clear_of = "finetune"

A source may carry its own ``time`` bound (a stream of 10-image requests: 0.02x; of 100-image requests: 0.05x) and,
for ``forget = "successive"``, ``fa_from = N``: FA is bounded from request N on and only reported before (FA over
10 or 50 images moves in steps too coarse to bound). A successive source compares the requests after which its
report retrained (a stream retrains at its ``reference_at`` requests only). A U-LiRA entry may carry ``max_auc``: the
method's AUC must also be at most that.

A target is met on the mean if the mean over seeds is within it, on every seed if each seed's value is; a cell whose
mean misses, or where a seed misses, lists the per-seed values. Where the source row is a leaderboard's default row
(``policy = true``), its Pareto placement (RetDev against RTE) is shown and the row is met only on the front (a
default not placed, e.g. without an RTE, is a miss). Report paths are relative to the working directory
(a clone's root)."""

from __future__ import annotations

import hashlib
import json
import statistics
from pathlib import Path
from typing import Any

from dcforget.errors import ConfigError
from dcforget.forget import ForgetSpec

from ..workspace import KINDS, Cell, Experiment, Kind, Workspace

NEEDED = ("setting", "request", "report", "experiment", "model", "forget", "method")
SOURCE_KEYS = (*NEEDED, "time", "fa_from")
ULIRA_NEEDED = ("setting", "report", "method", "overlaps", "clear_of")
ULIRA_KEYS = (*ULIRA_NEEDED, "request", "max_auc")


def _sources(exp: Experiment) -> list[dict[str, Any]]:
    src = exp.spec.get("sources", [])
    for i, s in enumerate(src):
        where = f"experiment {exp.name}: source {i + 1}"
        missing = [k for k in NEEDED if k not in s]
        if missing:
            raise ConfigError(f"{where} lacks {', '.join(missing)}")
        unknown = sorted(set(s) - set(SOURCE_KEYS))
        if unknown:  # a misspelt bound would otherwise vanish
            raise ConfigError(f"{where} has unknown keys {', '.join(unknown)} (known: {', '.join(SOURCE_KEYS)})")
        if "time" in s and not (_positive(s["time"])):
            raise ConfigError(f"{where}'s time must be a number > 0, not {s['time']!r}")
        if "fa_from" in s:
            if s["forget"] != "successive":
                raise ConfigError(f'{where}: fa_from needs a successive source (forget = "successive")')
            if not (isinstance(s["fa_from"], int) and not isinstance(s["fa_from"], bool) and s["fa_from"] >= 1):
                raise ConfigError(f"{where}'s fa_from must be a request number >= 1, not {s['fa_from']!r}")
    for i, u in enumerate(exp.spec.get("ulira", [])):
        where = f"experiment {exp.name}: ulira entry {i + 1}"
        missing = [k for k in ULIRA_NEEDED if k not in u]
        if missing:
            raise ConfigError(f"{where} lacks {', '.join(missing)}")
        unknown = sorted(set(u) - set(ULIRA_KEYS))
        if unknown:
            raise ConfigError(f"{where} has unknown keys {', '.join(unknown)} (known: {', '.join(ULIRA_KEYS)})")
        if "max_auc" in u and not (_positive(u["max_auc"]) and u["max_auc"] <= 1):
            raise ConfigError(f"{where}'s max_auc must be in (0, 1], not {u['max_auc']!r}")
    return src


def _positive(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and v == v and 0 < v < float("inf")


def _cells(exp: Experiment, seeds: int) -> list[Cell]:
    """One cell per source, then one per U-LiRA entry, numbered on from the sources: a cell's file is named by its
    key's values, so {"source": 2} and {"ulira": 2} would share one file and overwrite each other."""
    n = len(_sources(exp))
    return [Cell(exp.name, {"source": i + 1}, 0) for i in range(n)] + [
        Cell(exp.name, {"ulira": n + i + 1}, 0) for i in range(len(exp.spec.get("ulira", [])))
    ]


def _entry(cell: Cell, exp: Experiment) -> dict[str, Any]:
    if "source" in cell.key:
        return _sources(exp)[cell.key["source"] - 1]
    return exp.spec["ulira"][cell.key["ulira"] - len(_sources(exp)) - 1]


def _inputs(cell: Cell, exp: Experiment, preset: dict[str, Any]) -> str:
    path = Path(_entry(cell, exp)["report"]) / "report.json"
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "missing"


ROUNDING = 1e-6  # a delta this close to its bound meets it: float32 accuracies are off by ~1e-7 points


def _check(
    deltas: dict[str, list[float]], bounds: dict[str, float | None], spread: dict[str, float] | None = None
) -> dict[str, dict[str, Any]]:
    """Each delta against its bound; a bound of None reports the delta without bounding it. ``spread``: per
    target, retraining's own sample standard deviation over the seeds (points), the noise a delta is read against.
    Accuracies are float32 fractions, so a delta of exactly the bound (FA 48 against 53 of 100 images) comes out a
    few 1e-7 points over it: within ``ROUNDING`` of the bound meets it (a real step of an accuracy over even
    100,000 images is 1e-3 points)."""
    out = {}
    for k, bound in bounds.items():
        vals = deltas[k]
        mean = statistics.fmean(vals)
        size = (lambda v: v) if k in ("time_ratio", "forget_acc_class") else abs  # an upper bound, or a +- band
        out[k] = {
            "mean": mean,
            "per_seed": vals,
            "bound": bound,  # None: reported, not bounded (and neither met nor missed)
            "met_on_mean": None if bound is None else size(mean) <= bound + ROUNDING,
            "met_on_every_seed": None if bound is None else all(size(v) <= bound + ROUNDING for v in vals),
            "missed_by": None if bound is None else (0.0 if size(mean) <= bound + ROUNDING else size(mean) - bound),
        }
        if spread and k in spread:
            out[k]["retrain_sd"] = spread[k]
    return out


def _compare(
    method: dict[int, dict],
    retrain: dict[int, dict],
    whole: bool,
    spec: dict[str, Any],
    unbounded: tuple[str, ...] = (),
) -> dict[str, Any]:
    """``unbounded``: sample targets reported here without their bound."""
    seeds = sorted(set(method) & set(retrain))
    time_ratio = [method[s]["seconds"] / retrain[s]["seconds"] for s in seeds]
    if whole:
        deltas = {
            "forget_acc_class": [100 * method[s]["forget_acc"] for s in seeds],
            "test_acc_other": [100 * (method[s]["test_acc_other"] - retrain[s]["test_acc_other"]) for s in seeds],
        }
        bounds = dict(spec["whole_class"])
    else:
        bounds = {k: (None if k in unbounded else v) for k, v in spec["sample"].items()}
        deltas = {k: [100 * (method[s][k] - retrain[s][k]) for s in seeds] for k in bounds}
    spread = {}
    if len(seeds) >= 2:  # retraining's own scatter over seeds: a delta far inside it is noise, not a miss or a hit
        spread = {k: 100 * statistics.stdev(retrain[s][k] for s in seeds) for k in deltas if k in retrain[seeds[0]]}
    deltas["time_ratio"] = time_ratio
    bounds["time_ratio"] = float(spec["time"])
    return {"seeds": seeds, "targets": _check(deltas, bounds, spread)}


def _run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    e = _entry(cell, exp)
    path = Path(e["report"]) / "report.json"
    try:
        rep = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        return {
            "rows": [
                {
                    "setting": e["setting"],
                    "request": e.get("request", ""),
                    "source": e["report"],
                    "missing": f"{path} cannot be read ({type(err).__name__})",
                }
            ]
        }
    base = {
        "setting": e["setting"],
        "source": e["report"],
        "source_git": rep["meta"].get("git"),
        "model": e.get("model", ""),
        "method": e["method"],
    }
    if "ulira" in cell.key:
        a = rep["attacks"]
        ci = {k: a[k]["auc_ci"] for k in (e["method"], e["overlaps"], e["clear_of"])}
        overlap = lambda x, y: x[0] <= y[1] and y[0] <= x[1]  # noqa: E731
        row = {
            **base,
            "request": e.get("request", "U-LiRA"),
            "auc": {k: a[k]["auc"] for k in ci},
            "auc_ci": ci,
            "overlaps_reference": overlap(ci[e["method"]], ci[e["overlaps"]]),
            "clear_of_baseline": not overlap(ci[e["method"]], ci[e["clear_of"]]),
        }
        if "max_auc" in e:
            row["max_auc"] = float(e["max_auc"])
            row["under_max_auc"] = a[e["method"]]["auc"] <= row["max_auc"]
        return {"rows": [row]}
    cells = rep.get("cells", {}).get(e["experiment"], [])
    successive = e["forget"] == "successive"

    def of(method: str) -> dict[int, dict]:
        return {
            c["seed"]: c["result"]
            for c in cells
            if c["key"]["model"] == e["model"]
            and c["key"]["method"] == method
            and (successive or c["key"].get("forget") == e["forget"])
        }

    retrain, mine = of("retrain"), of(e["method"])
    if not retrain or not mine:
        return {"rows": [{**base, "request": e["request"], "missing": "no cells for the method or retraining"}]}
    spec = {**exp.spec, **({"time": e["time"]} if "time" in e else {})}
    if successive:
        n = min(len(r["cycles"]) for r in (*mine.values(), *retrain.values()))
        at = lambda runs, i: {s: r["cycles"][i] for s, r in runs.items() if r["cycles"][i] is not None}  # noqa: E731
        rows = []
        for i in range(n):  # the requests after which some seed retrained (a stream: its reference_at)
            method_i, retrain_i = at(mine, i), at(retrain, i)
            if not retrain_i:
                continue
            row = {**base, "request": f"{e['request']}, request {i + 1}", "seeds_all": len(mine)}
            if not set(method_i) & set(retrain_i):
                rows.append({**row, "missing": "no seed has both the method and retraining at this request"})
                continue
            unbounded = ("forget_acc",) if i + 1 < e.get("fa_from", 1) else ()
            rows.append({**row, **_compare(method_i, retrain_i, False, spec, unbounded)})
        return {"rows": rows}
    if not set(mine) & set(retrain):
        return {"rows": [{**base, "request": e["request"], "missing": "no seed has both the method and retraining"}]}
    placed = [  # a leaderboard's default row says where it sits against the ranked rows' Pareto front
        r.get("pareto", "not placed")
        for r in rep.get("rows", [])
        if r.get("experiment") == e["experiment"]
        and r.get("model") == e["model"]
        and r.get("method") == e["method"]
        and r.get("forget") == e["forget"]
        and r.get("default")
    ]
    if placed:
        base["pareto"] = placed[0]
    whole = ForgetSpec.parse(e["forget"]).kind == "class"
    if whole and any("test_acc_other" not in r for r in (*mine.values(), *retrain.values())):
        return {
            "rows": [{**base, "request": e["request"], "missing": "cells computed before other-class TA was recorded"}]
        }
    return {"rows": [{**base, "request": e["request"], **_compare(mine, retrain, whole, spec)}]}


def _fmt(t: dict[str, Any] | None, signed: bool = True) -> str:
    if t is None:
        return ""
    f = (lambda x: f"{x:+.1f}") if signed else (lambda x: f"{x:.2f}")
    v = f(t["mean"])
    if t.get("bound", 0) is None:
        return f"{v} (not bounded)"
    noisy = "retrain_sd" in t and t["retrain_sd"] >= t["bound"]  # retraining's own sd is no narrower than the bound
    if t["met_on_every_seed"] or len(t["per_seed"]) < 2:
        return (v if t["met_on_mean"] else f"**{v}**") + (f" (R's sd {t['retrain_sd']:.1f})" if noisy else "")
    seeds = ", ".join(f(x) for x in t["per_seed"])
    if noisy:
        seeds += f"; R's sd {t['retrain_sd']:.1f}"
    return f"{v} (a seed misses: {seeds})" if t["met_on_mean"] else f"**{v}** (seeds: {seeds})"


def _rows(exp: Experiment, results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per comparison, in the experiment file's order: each target's mean with its verdict (bold: the mean
    misses; "(a seed misses)": the mean meets it and a seed does not)."""
    rows = []
    for rec in sorted(results, key=lambda r: (("ulira" in r["key"]), r["key"].get("source", r["key"].get("ulira")))):
        for r in rec["result"]["rows"]:
            row = {
                "experiment": exp.name,
                "model": r.get("model", ""),
                "method": r.get("method", ""),
                "request": r["request"],
                "setting": r["setting"],
                "source": f"{r['source']} ({str(r.get('source_git') or '')[:7]})",
                "seeds": 1,
            }
            if "seeds" in r:
                row["seeds"] = len(r["seeds"])
                if r.get("seeds_all", len(r["seeds"])) != len(r["seeds"]):
                    row["request"] += f" ({len(r['seeds'])} of {r['seeds_all']} seeds)"
            if "missing" in r:
                row["extra"] = f"not measured: {r['missing']}"
            elif "auc" in r:
                ci = {k: f"{r['auc'][k]:.3f} [{v[0]:.3f}, {v[1]:.3f}]" for k, v in r["auc_ci"].items()}
                row["extra"] = (
                    "; ".join(f"{k} AUC {v}" for k, v in ci.items())
                    + f"; overlaps the reference's: {r['overlaps_reference']}; clear of the baseline's: "
                    f"{r['clear_of_baseline']}"
                    + (f"; AUC at most {r['max_auc']}: {r['under_max_auc']}" if "max_auc" in r else "")
                )
                met = r["overlaps_reference"] and r["clear_of_baseline"] and r.get("under_max_auc", True)
                row["met"] = "yes" if met else "no"
            else:
                t = r["targets"]
                for k in ("retain_acc", "forget_acc", "test_acc", "mia", "test_acc_other"):
                    if k in t:
                        row[f"d_{k}"] = _fmt(t[k])
                if "forget_acc_class" in t:
                    row["fa_class"] = _fmt(t["forget_acc_class"], signed=False)
                row["time"] = _fmt(t["time_ratio"], signed=False)
                met = all(v["met_on_mean"] for v in t.values() if v["bound"] is not None)
                if "pareto" in r:  # "front", or "front (as ROW, the same run)": no ranked row beats it
                    front = r["pareto"].startswith("front")
                    row["pareto"] = r["pareto"] if front else f"**{r['pareto']}**"
                    met = met and front
                row["met"] = "yes" if met else "no"
                row["targets"] = t
            rows.append(row)
    return rows


COLUMNS = (
    ("request", "request", "s"),
    ("setting", "setting", "s"),
    ("source", "report", "s"),
    ("d_retain_acc", "dRA", "s"),
    ("d_forget_acc", "dFA", "s"),
    ("d_test_acc", "dTA", "s"),
    ("d_mia", "dMIA", "s"),
    ("fa_class", "FA (class)", "s"),
    ("d_test_acc_other", "d TA other", "s"),
    ("time", "time / R", "s"),
    ("pareto", "Pareto (RetDev vs RTE)", "s"),
    ("met", "all met (mean)", "s"),
)

KINDS.register("targets")(Kind(_cells, _run, _rows, columns=COLUMNS, inputs=_inputs))
