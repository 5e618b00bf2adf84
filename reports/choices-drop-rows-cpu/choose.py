"""Validation choices of condensed's whole-class start: each class policy setting's condensed (full) candidate rerun
with each variant (argv[3]: drop_rows false and true; or whole_epochs 0 and 12 with drop_rows on), every seed, against the same retraining; our objective on
validation (|dRA|, |dFA|, |dVA|, |d val MIA| against retraining of the same seed), mean over seeds. Rule fixed before
the run: the registered default is the value whose norm is the smaller on at least two of the three settings."""

import json
import sys
from pathlib import Path

from experiments.hpsearch import recheck
from dcforget.provenance import run_meta
import torch

store, out, which = sys.argv[1], sys.argv[2], sys.argv[3]
VARIANTS = {
    "drop_rows": [{"drop_rows": False}, {"drop_rows": True}],
    "whole_epochs": [{"drop_rows": True, "whole_epochs": 0}, {"drop_rows": True, "whole_epochs": 12}],
}[which]
ctx = {"root": str(Path(store) / "artefacts"), "data_dir": "data", "device": "cpu"}
rows = []
for f in ("cifar10-cnn", "cifar10-mlp", "mnist-mlp"):
    entry = json.loads(Path(f"configs/policy/cpu/{f}.json").read_text())["entries"]["class"]
    [cand] = [c for c in entry["candidates"] if (c["method"], c["retain"]) == ("condensed", "full")]
    setup = {**entry["setup"], "validation": cand["validation"]}
    setup.pop("retain", None)  # full, the default
    for variant in VARIANTS:
        doc = {
            "setup": setup,
            "method": "condensed",
            "options": {**cand["options"], **variant},
            "defaults": cand["defaults"],
            "objective": "ours",
            "objectives": cand["objectives"],
            "norm": cand["norm"],
        }
        r = recheck(doc, store=store, context=ctx)
        rows.append(
            {
                "setting": f,
                **variant,
                "norm": r["recomputed_norm"],
                "objectives": {k: v["recomputed"] for k, v in r["objectives"].items()},
                "per_seed": r["per_seed"],
                "time_ratio": r["time_ratio"]["recomputed"],
            }
        )
        print(
            f,
            variant,
            round(r["recomputed_norm"], 4),
            {k: round(v["recomputed"], 4) for k, v in r["objectives"].items()},
            round(r["time_ratio"]["recomputed"], 4),
            flush=True,
        )
Path(out).write_text(
    json.dumps({"meta": run_meta(torch.device("cpu")), "command": " ".join(sys.argv), "rows": rows}, indent=1)
)
