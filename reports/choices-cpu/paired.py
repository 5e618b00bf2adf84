"""Paired-by-seed differences of each choice's val gap to retraining against the default's, from the finished
cells of a `choices` run (default: `unlearn reproduce choices --preset cpu --data-dir data --out reports/choices-cpu`).

    .venv/bin/python reports/choices-cpu/paired.py                 # writes reports/choices-cpu/paired.json
    .venv/bin/python reports/choices-cpu/paired.py reports/choices-explore-cpu   # another run's folder

Reads validation figures only (the val gap: RA, FA, VA, val MIA); time is each request's over the same seed's
retraining. Mean and sample std over seeds 0-2."""
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[1]))

from dcforget.provenance import run_meta  # noqa: E402
from experiments.report import mean_std  # noqa: E402
from experiments.kinds.unlearn_grid import VAL_GAP_METRICS, val_gap  # noqa: E402

run = Path(sys.argv[1]).resolve() if len(sys.argv) > 1 else HERE
rep = json.loads((run / "report.json").read_text())
out = {"meta": run_meta(seeds=[0, 1, 2], source=str(run.relative_to(HERE.parents[1]) / "report.json"),
                        source_git=rep["meta"].get("git")), "rows": []}
for (exp, cells), model in ((e, m) for e in rep["cells"].items() for m in ("mlp", "cnn")):
    of = lambda m: {c["seed"]: c["result"] for c in cells if c["key"]["model"] == model and c["key"]["method"] == m}
    retrain, default = of("retrain"), of("condensed")
    if not retrain:  # this experiment ran on other models
        continue
    for m in dict.fromkeys(c["key"]["method"] for c in cells):
        if m == "retrain":
            continue
        got = of(m)
        diffs = [val_gap(got[s], retrain[s]) - val_gap(default[s], retrain[s]) for s in sorted(got)]
        times = [got[s]["seconds"] / retrain[s]["seconds"] for s in sorted(got)]
        (d, dsd), (t, tsd) = mean_std(diffs), mean_std(times)
        # each validation metric's signed distance to retraining (points), mean over seeds: what a gap is made of
        parts = {k: mean_std([100 * (got[s][k] - retrain[s][k]) for s in sorted(got)])[0] for k in VAL_GAP_METRICS}
        out["rows"].append({"experiment": exp, "model": model, "choice": m, "seeds": len(diffs), "gap_diff": d,
                            "gap_diff_std": dsd, "time_ratio": t, "time_ratio_std": tsd,
                            "gap": mean_std([val_gap(got[s], retrain[s]) for s in sorted(got)])[0],
                            "minus_retrain": parts})
        print(f"{exp} {model} {m:26s} gap diff {d:+6.1f} ± {dsd:4.1f}  time/retrain {t:.2f} ± {tsd:.2f}  "
              + " ".join(f"{k} {v:+.1f}" for k, v in parts.items()))
(run / "paired.json").write_text(json.dumps(out, indent=1))
