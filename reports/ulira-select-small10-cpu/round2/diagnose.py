"""Diagnose one candidate of round 2 on the selection pool: where the unlearned models' confidences on their
forget examples sit in the never-seen fit (attacks.ulira.diagnosis: shift, spread, per-example mean correlation),
for `condensed`, `retrained` and `original`, and `condensed`'s per quartile of the never-seen mean (q0: the
examples a model that never saw them gets most wrong).

    PYTHONPATH=. python reports/ulira-select-small10-cpu/round2/diagnose.py STORE OUT.json [KEY=VALUE ...]

It builds the candidate's U-LiRA setup exactly as `attacks ulira cifar10 --preset cpu --pool-seed 1 --splits 24
--forget-size 10 --targets 100 --method condensed --untuned --option KEY=VALUE ...` does and reads its jobs back
from STORE (run that command first: a job missing from the store would be trained here)."""

import json
import sys

import torch

from attacks.request import UliraRequest
from attacks.ulira import Signals, _Fit, _gaussian, diagnosis, run
from dcforget.provenance import git_hash, machine

store, out, opts = sys.argv[1], sys.argv[2], tuple(sys.argv[3:])
req = UliraRequest("cifar10", out, methods=("condensed",), option_pairs=opts, tuned=False, forget_size=10,
                   targets=100, splits=24, pool_seed=1, data_dir="data", store=store, preset="cpu", force=True)  # fmt: skip
prepared = req.prepare()
grid = run(prepared.setup, store, data_dir="data")
sig = Signals.gather(grid.results, prepared.setup.variants)
res = {"command": "python " + " ".join(sys.argv), "git": git_hash(), "machine": machine(), "options": list(opts)}
res["jobs_computed_now"] = grid.computed  # 0: every job was read back
for v in ("retrained", "condensed", "original"):
    fit = _Fit(sig, v, 8)
    c_f = _gaussian(*fit.forgotten_moments, 8)[2]
    c_n = _gaussian(*fit.never_moments, 8)[2]
    s, _, i = fit.where
    ok = (c_f[s, i] > 0) & (c_n[s, i] > 0)
    res[v] = diagnosis(fit, ok, 8)
    if v != "condensed":
        continue
    mu_f, sd_f, _, _ = _gaussian(*fit.forgotten_moments, 8)
    mu_n, sd_n, _, _ = _gaussian(*fit.never_moments, 8)
    x, sf, mn, sn = fit.v[ok], sd_f[s, i][ok], mu_n[s, i][ok], sd_n[s, i][ok]
    edges = torch.quantile(mn, torch.tensor([0.25, 0.5, 0.75], dtype=mn.dtype))
    q = torch.bucketize(mn, edges)
    res[v]["quartiles"] = [
        {
            "never_mean": float(mn[q == k].mean()),
            "never_sd": float(sn[q == k].median()),
            "confidence": float(x[q == k].mean()),
            "sd": float(sf[q == k].median()),
            "shift": float(((x[q == k] - mn[q == k]) / sn[q == k]).mean()),
        }
        for k in range(4)
    ]
open(out, "w").write(json.dumps(res, indent=1) + "\n")
print(json.dumps({k: res[k] for k in ("retrained", "condensed")})[:600])
