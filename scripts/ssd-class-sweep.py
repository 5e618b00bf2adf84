"""Can SSD forget class 2 of the benchmark's CNN and keep the other classes, at any alpha and lambda? (issue #17)

SSD's paper reports, for full-class forgetting, FA near 0 with the retain accuracy close to the original's. Here
SSD's rule (``unlearn.methods.ssd``: importances over the forget set and the training set, then ``dampen``) is
applied on a grid of (alpha, lambda) to each seed's CNN original that the `benchmark` suite's cpu run made
(cifar10-cnn-class), and read on the training and *validation* splits only (never test): FA and RA on the
training split's forget class and other classes, and the validation accuracy on the other classes (VA-other).
The importances are computed once per original; each grid point dampens a fresh copy.

    .venv/bin/python scripts/ssd-class-sweep.py reports/benchmark-cpu > reports/benchmark-cpu/ssd-class-sweep.json
"""

import copy
import json
import sys

import torch
from benchmark_cnn import ORIGINALS, benchmark_data, cnn_folder, load

from dcforget.provenance import run_meta
from dcforget.train import as_unit
from unlearn.methods.ssd import dampen, importances

ALPHAS = (1.0, 1.5, 2.0, 3.0, 5.0, 7.0, 10.0)
LAMS = (0.1, 0.3, 1.0, 2.0, 3.0, 4.0, 6.0, 10.0)
FORGET = 2


@torch.no_grad()
def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    out = torch.cat([model(as_unit(x[i : i + 512])).argmax(1) for i in range(0, len(x), 512)])
    return float((out == y).float().mean()) if len(y) else float("nan")


def scores(model: torch.nn.Module, d) -> dict[str, float]:
    x, y, vx, vy = d.train.images, d.train.labels, d.val.images, d.val.labels
    f, vf = y == FORGET, vy == FORGET
    return {
        "fa": accuracy(model, x[f], y[f]),
        "ra": accuracy(model, x[~f], y[~f]),
        "va_other": accuracy(model, vx[~vf], vy[~vf]),
        "va_forget": accuracy(model, vx[vf], vy[vf]),
    }


def main(out: str) -> None:
    d, folder = benchmark_data(), cnn_folder(out)
    x, y = d.train.images, d.train.labels
    f = y == FORGET
    seeds = []
    for seed, name in enumerate(ORIGINALS):
        m = load(folder / name, d)
        retrain = sorted(folder.glob(f"retrain-class_{FORGET}-*-s{seed}.pt"))
        r = load(retrain[0], d) if len(retrain) == 1 else None
        i_f = importances(m, x[f], y[f], 128)
        i_d = importances(m, torch.cat([x[~f], x[f]]), torch.cat([y[~f], y[f]]), 128)  # SSD's order, batches of 128
        grid = []
        for a in ALPHAS:
            for lam in LAMS:
                c = copy.deepcopy(m)
                sel = dampen(c, i_d, i_f, a, lam)
                grid.append({"alpha": a, "lam": lam, "selected": sum(sel.values()), **scores(c.eval(), d)})
        seeds.append(
            {"seed": seed, "original": scores(m, d), "retrain": scores(r, d) if r is not None else None, "grid": grid}
        )
    mean = []
    for i, g in enumerate(seeds[0]["grid"]):
        pts = [s["grid"][i] for s in seeds]
        mean.append(
            {
                "alpha": g["alpha"],
                "lam": g["lam"],
                **{k: sum(p[k] for p in pts) / len(pts) for k in ("fa", "ra", "va_other", "va_forget")},
                "fa_per_seed": [p["fa"] for p in pts],
                "va_other_per_seed": [p["va_other"] for p in pts],
            }
        )
    orig_va = sum(s["original"]["va_other"] for s in seeds) / len(seeds)
    # the reading: among grid points that forget (mean FA <= 5%), the best validation accuracy on the other classes
    forgetting = [p for p in mean if p["fa"] <= 0.05]
    best = max(forgetting, key=lambda p: p["va_other"]) if forgetting else None
    keeping = [p for p in mean if p["va_other"] >= orig_va - 0.03]
    print(
        json.dumps(
            {
                "meta": run_meta(torch.device("cpu"), seeds=[0, 1, 2]),
                "command": "python scripts/ssd-class-sweep.py " + out,
                "rule": "SSD's dampen(): where forget importance > alpha x training-set importance, multiply by "
                "min(lam x training-set importance / forget importance, 1); importances are squared "
                "batch-mean CE gradients, batches of 128; training and validation splits only",
                "original_va_other_mean": orig_va,
                "best_forgetting_point": best,
                "lowest_fa_keeping_va_other_within_3_points": min(keeping, key=lambda p: p["fa"]) if keeping else None,
                "mean": mean,
                "seeds": seeds,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
