"""Per candidate, from the jobs in the store (read back; computed by run.sh): the forget examples' z = (x - mu_n) / sd_n
against the never-seen fit of the same example, the unlearned models' final cross-entropy on their forget images,
the original's confidence and how far the unlearning moved it. Usage (from a checkout at the commit of the
candidate's JSON): PYTHONPATH=. python finals.py STORE [KEY=VALUE ...]. finals.txt holds its output, one run after
each candidate's `attacks ulira` line (the rounds' logs, .wt/roundN.log, concatenated)."""

import collections
import sys

import torch

from attacks.request import UliraRequest
from attacks.ulira import Signals, _Fit, _gaussian, run

Q = torch.tensor([0.05, 0.25, 0.5, 0.75, 0.95], dtype=torch.float64)


def quantiles(v: torch.Tensor) -> list[float]:
    return [round(float(q), 2) for q in torch.quantile(v.double(), Q)]


def main() -> None:
    store, opts = sys.argv[1], tuple(sys.argv[2:])
    req = UliraRequest(
        "cifar10", "/tmp/diag-out.json", methods=("condensed",), option_pairs=opts, tuned=False, forget_size=10,
        targets=100, splits=24, pool_seed=1, data_dir="data", store=store, preset="cpu", force=True,
    )  # fmt: skip
    p = req.prepare()
    grid = run(p.setup, store, data_dir="data")
    sig = Signals.gather(grid.results, p.setup.variants)
    fit = _Fit(sig, "condensed", 8)
    mu_n, sd_n, _, _ = _gaussian(*fit.never_moments, 8)
    s, f, i = fit.where
    x, mn, sn = fit.v, mu_n[s, i], sd_n[s, i]
    orig = sig.conf["original"][s, f, i]
    z = (x - mn) / sn
    print("n", len(x))
    print("z quantiles 5/25/50/75/95:", quantiles(z))
    print("x quantiles:", quantiles(x))
    print("orig quantiles:", quantiles(orig))
    print("drop orig-x quantiles:", quantiles(orig - x))
    print("z hist [-6,6] 16 bins:", torch.histc(z.float(), bins=16, min=-6, max=6).int().tolist())
    print("final CE quantiles:", quantiles(torch.nn.functional.softplus(-x)))  # x is log(p / (1 - p))
    print("corr(z, orig)", float(torch.corrcoef(torch.stack([z, orig]))[0, 1]))
    per_set = collections.defaultdict(list)
    for a, b, zz in zip(s.tolist(), f.tolist(), z.tolist()):
        per_set[(a, b)].append(zz)
    means = torch.tensor([sum(v) / len(v) for v in per_set.values()])
    spread = [round(float(q), 2) for q in torch.quantile(means, torch.tensor([0.1, 0.5, 0.9]))]
    print("per forget-set mean z: sd", float(means.std()), "quantiles", spread)


if __name__ == "__main__":
    main()
