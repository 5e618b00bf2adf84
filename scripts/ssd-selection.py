"""Why SSD leaves the benchmark's CNN untouched on class 2 (issue #17): how many parameters SSD's rule selects
(forget importance > alpha x training-set importance) on each seed's original, for several alphas, with the
quantiles of the ratio. Reads the originals the `benchmark` suite's cpu run made (cifar10-cnn-class).

    .venv/bin/python scripts/ssd-selection.py reports/benchmark-cpu > reports/benchmark-cpu/ssd-selection.json
"""

import json
import sys

import torch
from benchmark_cnn import ORIGINALS, benchmark_data, cnn_folder, load

from dcforget.provenance import run_meta
from dcforget.train import as_unit
from unlearn.methods.ssd import importances

ALPHAS = (100.0, 10.0, 5.0, 2.0, 1.0)


def main(out: str) -> None:
    d, folder = benchmark_data(), cnn_folder(out)
    x, y = d.train.images, d.train.labels
    f = y == 2
    rows = []
    for seed, name in enumerate(ORIGINALS):
        m = load(folder / name, d)
        with torch.no_grad():
            acc = float((m(as_unit(x[f])).argmax(1) == y[f]).float().mean())
        i_f = importances(m, x[f], y[f], 128)
        i_d = importances(m, torch.cat([x[~f], x[f]]), torch.cat([y[~f], y[f]]), 128)  # SSD's order
        r = torch.cat([(i_f[n] / i_d[n].clamp_min(1e-30)).flatten() for n in i_f])
        levels = ("0.5", "0.9", "0.99", "0.999", "0.9999")
        q = torch.tensor([float(v) for v in levels])
        rows.append(
            {
                "seed": seed,
                "forget_train_acc": acc,
                "parameters": r.numel(),
                "selected": {str(a): int((r > a).sum()) for a in ALPHAS},
                "ratio_quantiles": dict(
                    zip(
                        levels,
                        torch.quantile(
                            r[torch.randperm(r.numel(), generator=torch.Generator().manual_seed(0))[:1_000_000]], q
                        ).tolist(),
                    )
                ),
            }
        )
    print(
        json.dumps(
            {
                "meta": run_meta(torch.device("cpu"), seeds=[0, 1, 2]),
                "rule": "forget importance > alpha x "
                "training-set importance (squared batch-mean CE gradients, batches of 128)",
                "rows": rows,
            },
            indent=1,
        )
    )


if __name__ == "__main__":
    main(sys.argv[1])
