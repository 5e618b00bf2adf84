"""Issue #16's targets, read off committed runs: does the default (`condensed`) meet them, by how much does it miss?

    .venv/bin/python scripts/issue16-targets.py        # writes reports/default-targets.json, prints a table

Every figure comes from a committed report.json (its cells, per seed) named in the output with the commit that
computed it; nothing is run here. Targets, against retraining of the same seed (points; a seed's time is the
whole online request over that seed's retraining in the same run):

- per-sample forgetting (random 10%, index files of 500 and 5,000, each of five successive requests):
  |dRA| <= 3, |dFA| <= 2, |dTA| <= 1 (test split), |dMIA| <= 2 (population MIA, test split), time <= 0.1x;
- whole-class forgetting: FA <= 1 (%), |d other-class TA| <= 1 (test split, the classes that remain), time <= 0.1x;
- U-LiRA (the many-model engine's cpu preset): the default's 95% AUC interval overlaps retraining's and does not
  overlap fine-tuning's.

A target is met on the mean if the mean over seeds is within it, on every seed if each seed's value is. The
printed tables: bold where the mean misses, "(a seed misses)" where the mean meets it and a seed does not.
"""
from __future__ import annotations

import json
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dcforget.provenance import run_meta  # noqa: E402

SAMPLE = {"retain_acc": 3.0, "forget_acc": 2.0, "test_acc": 1.0, "mia": 2.0}  # |method - retrain| <= bound
TIME = 0.1

# (setting, request, report folder, experiment, model, forget key, default's method label)
SOURCES = [
    ("DC-U's MLP settings (paper preset: 42,500 images, K=450)", "random 10%", "reports/default-dcu-mlp",
     "default-comparison", "mlp", "random:0.1", "condensed"),
    ("DC-U's MLP settings (paper preset: 42,500 images, K=450)", "indices: 500", "reports/default-dcu-mlp-requests",
     "default-requests", "mlp", "indices:experiments/dcu/forget-500.txt", "condensed"),
    ("DC-U's MLP settings (paper preset: 42,500 images, K=450)", "indices: 5,000", "reports/default-dcu-mlp-requests",
     "default-requests", "mlp", "indices:experiments/dcu/forget-5000.txt", "condensed"),
    ("DC-U's MLP settings (paper preset: 42,500 images, K=450)", "class 2", "reports/default-dcu-mlp-requests",
     "default-requests", "mlp", "class:2", "condensed"),
    ("DC-U's MLP settings (paper preset: 42,500 images, K=450)", "successive", "reports/default-dcu-mlp-requests",
     "default-successive", "mlp", None, "condensed"),
    ("DC-U's CNN, 1,000 images per class (bench suite, cpu preset)", "random 10%", "reports/bench-cpu", "unlearn",
     "cnn", "random:0.1", "condensed"),
    ("DC-U's CNN, 1,000 images per class (bench suite, cpu preset)", "class 2", "reports/bench-cpu", "unlearn",
     "cnn", "class:2", "condensed"),
    ("reproduction's cpu preset, MLP (250 images per class; issue #16 round 4)", "random 10%",
     "reports/choices-tau-cpu", "default-explore-tau", "mlp", "random:0.1", "keep=0.8,forget_ce=1val,min_steps=40"),
    ("reproduction's cpu preset, CNN (250 images per class; issue #16 round 4)", "random 10%",
     "reports/choices-tau-cpu", "default-explore-tau", "cnn", "random:0.1", "keep=0.8,forget_ce=1val,min_steps=40"),
    ("cpu preset, MLP (250 images per class; benchmark's class table)", "class 2", "reports/benchmark-cpu",
     "cifar10-class", "mlp", "class:2", "condensed"),
]


def _check(deltas: dict[str, list[float]], bounds: dict[str, float]) -> dict[str, dict]:
    out = {}
    for k, bound in bounds.items():
        vals = deltas[k]
        mean = statistics.fmean(vals)
        size = (lambda v: v) if k in ("time_ratio", "forget_acc_class") else abs  # an upper bound, or a +- band
        ok_mean, ok_all = size(mean) <= bound, all(size(v) <= bound for v in vals)
        miss = max(0.0, size(mean) - bound)
        out[k] = {"mean": round(mean, 3), "per_seed": [round(v, 3) for v in vals], "bound": bound,
                  "met_on_mean": ok_mean, "met_on_every_seed": ok_all, "missed_by": round(miss, 3)}
    return out


def _compare(method: dict[int, dict], retrain: dict[int, dict], whole_class: bool) -> dict[str, dict]:
    seeds = sorted(set(method) & set(retrain))
    if whole_class:
        deltas = {"forget_acc_class": [100 * method[s]["forget_acc"] for s in seeds],
                  "test_acc_other": [100 * (method[s]["test_acc_other"] - retrain[s]["test_acc_other"]) for s in seeds],
                  "time_ratio": [method[s]["seconds"] / retrain[s]["seconds"] for s in seeds]}
        bounds = {"forget_acc_class": 1.0, "test_acc_other": 1.0, "time_ratio": TIME}
    else:
        deltas = {k: [100 * (method[s][k] - retrain[s][k]) for s in seeds] for k in SAMPLE}
        deltas["time_ratio"] = [method[s]["seconds"] / retrain[s]["seconds"] for s in seeds]
        bounds = {**SAMPLE, "time_ratio": TIME}
    return {"seeds": seeds, "targets": _check(deltas, bounds)}


def main() -> None:
    rows, sources = [], {}
    for setting, request, folder, exp, model, forget, label in SOURCES:
        path = ROOT / folder / "report.json"
        if not path.is_file():
            rows.append({"setting": setting, "request": request, "source": folder, "missing": "no report.json"})
            continue
        rep = json.loads(path.read_text())
        sources[folder] = rep["meta"].get("git")
        cells = rep["cells"].get(exp, [])

        def of(method: str) -> dict[int, dict]:
            return {c["seed"]: c["result"] for c in cells if c["key"]["model"] == model and c["key"]["method"] == method
                    and (forget is None or c["key"].get("forget") == forget)}

        retrain, default = of("retrain"), of(label)
        if not retrain or not default:
            rows.append({"setting": setting, "request": request, "source": folder, "missing": "no cells"})
            continue
        if forget is None:  # successive: one comparison per cycle
            for i in range(len(next(iter(default.values()))["cycles"])):
                cyc = lambda d: {s: r["cycles"][i] for s, r in d.items()}
                rows.append({"setting": setting, "request": f"successive, request {i + 1}", "source": folder,
                             "experiment": exp, **_compare(cyc(default), cyc(retrain), False)})
            continue
        whole = forget.startswith("class:")
        if whole and any("test_acc_other" not in r for r in (*default.values(), *retrain.values())):
            rows.append({"setting": setting, "request": request, "source": folder,
                         "missing": "cells computed before other-class TA was recorded"})
            continue
        rows.append({"setting": setting, "request": request, "source": folder, "experiment": exp,
                     **_compare(default, retrain, whole)})
    ulira = json.loads((ROOT / "reports/ulira-benchmark-cpu/report.json").read_text())
    sources["reports/ulira-benchmark-cpu"] = ulira["meta"]["git"]
    a = ulira["attacks"]
    ci = {k: a[k]["auc_ci"] for k in ("retrained", "finetune", "condensed")}
    overlap = lambda x, y: x[0] <= y[1] and y[0] <= x[1]
    rows.append({"setting": "U-LiRA, the many-model engine's cpu preset (64 splits x 4 forget sets, MLP)",
                 "request": "random 10% of each split", "source": "reports/ulira-benchmark-cpu",
                 "auc": {k: a[k]["auc"] for k in ci}, "auc_ci": ci,
                 "targets": {"overlaps_retraining": overlap(ci["condensed"], ci["retrained"]),
                             "clear_of_finetune": not overlap(ci["condensed"], ci["finetune"])}})
    out = {"meta": run_meta(seeds=[0, 1, 2], sources=sources), "rows": rows}
    (ROOT / "reports" / "default-targets.json").write_text(json.dumps(out, indent=1) + "\n")
    print(markdown(rows))


def _fmt(t: dict, signed: bool = True) -> str:
    v = f"{t['mean']:+.1f}" if signed else f"{t['mean']:.2f}"
    return v if t["met_on_every_seed"] else (f"{v} (a seed misses)" if t["met_on_mean"] else f"**{v}**")


def markdown(rows: list[dict]) -> str:
    """Two tables (per-sample requests; whole-class requests) and the U-LiRA line. Bold: the mean misses the
    target; "(a seed misses)": the mean meets it, at least one seed does not."""
    out = ["| setting | request | dRA (<= 3) | dFA (<= 2) | dTA (<= 1) | dMIA (<= 2) | time / R (<= 0.1) |",
           "|---|---|---|---|---|---|---|"]
    cls = ["| setting | request | FA (<= 1) | d other-class TA (<= 1) | time / R (<= 0.1) |", "|---|---|---|---|---|"]
    tail = []
    for r in rows:
        if "missing" in r:
            tail.append(f"- {r['setting']}, {r['request']}: not measured ({r['missing']})")
        elif "auc" in r:
            ci = {k: f"{r['auc'][k]:.3f} [{v[0]:.3f}, {v[1]:.3f}]" for k, v in r["auc_ci"].items()}
            tail.append(f"- {r['setting']}: the default's AUC {ci['condensed']}, retraining's {ci['retrained']}, "
                        f"fine-tuning's {ci['finetune']}: overlaps retraining's: {r['targets']['overlaps_retraining']}; "
                        f"clear of fine-tuning's: {r['targets']['clear_of_finetune']}")
        elif "forget_acc_class" in r["targets"]:
            t = r["targets"]
            cls.append(f"| {r['setting']} | {r['request']} | {_fmt(t['forget_acc_class'], False)} | "
                       f"{_fmt(t['test_acc_other'])} | {_fmt(t['time_ratio'], False)} |")
        else:
            t = r["targets"]
            out.append(f"| {r['setting']} | {r['request']} | " + " | ".join(
                _fmt(t[k]) for k in ("retain_acc", "forget_acc", "test_acc", "mia")) + f" | {_fmt(t['time_ratio'], False)} |")
    return "\n".join(out + [""] + cls + [""] + tail)

if __name__ == "__main__":
    main()
