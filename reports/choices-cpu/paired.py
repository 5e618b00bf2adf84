"""Paired-by-seed differences of each choice's val gap to retraining against the default's, from the finished
cells of `unlearn reproduce choices --preset cpu --data-dir data --out reports/choices-cpu`.

    .venv/bin/python reports/choices-cpu/paired.py   # writes reports/choices-cpu/paired.json

Reads validation figures only (the val gap: RA, FA, VA, val MIA); time is each request's over the same seed's
retraining. Mean and sample std over seeds 0-2."""
import json
import statistics as st
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from dcforget.provenance import run_meta  # noqa: E402
from experiments.report import mean_std  # noqa: E402
from experiments.kinds.unlearn_grid import val_gap  # noqa: E402

rep = json.loads((HERE / "report.json").read_text())
cells = rep["cells"]["default-random"]
out = {"meta": run_meta(seeds=[0, 1, 2], source="reports/choices-cpu/report.json",
                        source_git=rep["meta"].get("git")), "rows": []}
for model in ("mlp", "cnn"):
    of = lambda m: {c["seed"]: c["result"] for c in cells if c["key"]["model"] == model and c["key"]["method"] == m}
    retrain, default = of("retrain"), of("condensed")
    for m in dict.fromkeys(c["key"]["method"] for c in cells):
        if m == "retrain":
            continue
        got = of(m)
        diffs = [val_gap(got[s], retrain[s]) - val_gap(default[s], retrain[s]) for s in sorted(got)]
        times = [got[s]["seconds"] / retrain[s]["seconds"] for s in sorted(got)]
        (d, dsd), (t, tsd) = mean_std(diffs), mean_std(times)
        out["rows"].append({"model": model, "choice": m, "seeds": len(diffs), "gap_diff": d, "gap_diff_std": dsd,
                            "time_ratio": t, "time_ratio_std": tsd})
        print(f"{model} {m:26s} gap diff {d:+6.1f} ± {dsd:4.1f}  time/retrain {t:.2f} ± {tsd:.2f}")
(HERE / "paired.json").write_text(json.dumps(out, indent=1))
