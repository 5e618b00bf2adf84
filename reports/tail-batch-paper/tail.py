"""Does an epoch's tiny last batch slow DC-U's MLP recipe? Train it (Adam 1e-3, constant, batch 256, 30 epochs,
no augmentation) at the paper preset's data (CIFAR-10, 5,000 per class, 15% held out for validation: 42,500
images) three ways, printing the training-set accuracy after every epoch and each epoch's mean training loss:

- ``partial``: the original's data, cut as before the fix (166 x 256 + a 4-image batch: PyTorch's DataLoader cut);
- ``even``: the original's data, cut evenly (167 batches of 254-255: the toolkit's default since the fix);
- ``retrain``: 10 random images fewer (42,490 = 165 x 256 + 250: no tiny batch either way), as retraining.

    PYTHONPATH=. python reports/tail-batch-paper/tail.py partial,even,retrain 0,1,2 > reports/tail-batch-paper/log.txt
"""

import json
import sys
import time

import torch

import dcforget.tv  # noqa: F401  (torchvision's CPU-build fix, before anything imports torchvision)
from dcforget.datasets import load_data
from dcforget.provenance import git_hash, machine
from dcforget.train import TrainConfig, batch_bounds, build_model, fit

torch.set_num_threads(2)
dev = torch.device("cpu")
data = load_data("cifar10", "data", 5000, seed=0, val_fraction=0.15).to(dev)
X, Y = data.train.images, data.train.labels
keep = torch.randperm(len(Y), generator=torch.Generator().manual_seed(1))[10:].sort().values
print(json.dumps({"argv": sys.argv[1:], "git": git_hash(), "machine": machine(), "images": len(Y)}), flush=True)
for which in sys.argv[1].split(","):
    x, y = (X[keep], Y[keep]) if which == "retrain" else (X, Y)
    cut = "partial" if which == "partial" else "even"
    sizes = [b - a for a, b in zip(batch_bounds(len(y), 256, cut)[:-1], batch_bounds(len(y), 256, cut)[1:])]
    for seed in [int(s) for s in sys.argv[2].split(",")]:
        t = time.time()
        m = build_model("mlp", data, seed)  # DC-U's MLP, 3072-512-128-10, as the paper preset's originals
        h = fit(
            m, x, y, TrainConfig(batches=cut, eval_every=1), device=dev, seed=seed, evals={"train": (x, y)}, quiet=True
        )
        row = {
            "run": which,
            "seed": seed,
            "images": len(y),
            "batches": len(sizes),
            "smallest": min(sizes),
            "seconds": round(time.time() - t),
            "train_acc": [round(100 * e["train_acc"], 2) for e in h.epochs],
            "loss": [round(e["loss"], 4) for e in h.epochs],
        }
        print(json.dumps(row), flush=True)
