"""Why the stream reports' original has 3-4 points less retain accuracy than retraining: train DC-U's MLP recipe
(Adam 1e-3, constant, 30 epochs, batch 256) at the paper preset's data (CIFAR-10, 5,000 per class, 15% validation)
as the original (all 42,500 images) and as retraining (10 random images fewer), printing the training-set accuracy
after every epoch and each epoch's mean loss.

    PYTHONPATH=. THREADS=2 python reports/original-ra-noise-paper/gap.py orig 0,1,2
    PYTHONPATH=. THREADS=2 python reports/original-ra-noise-paper/gap.py retrain 0,1,2
"""

import os
import sys
import time

import dcforget.tv  # noqa: F401  (torchvision's CPU-build fix, before anything imports torchvision)
import torch

from dcforget.checkpoint import load_checkpoint
from dcforget.datasets import load_data
from dcforget.models import model_from_config
from dcforget.runtime import seeded
from dcforget.train import TrainConfig, evaluate, fit

torch.set_num_threads(int(os.environ.get("THREADS", "1")))
dev = torch.device("cpu")
data = load_data("cifar10", "data", 5000, seed=0, val_fraction=0.15).to(dev)
X, Y = data.train.images, data.train.labels
saved = "reports/stream-10-paper/artefacts/mlp-5f61550d/original.pt"  # the streams' original (seed 0), git-ignored
orig = load_checkpoint(saved, fingerprint=data.fingerprint()).model
print("saved original train acc", evaluate(orig, X, Y, device=dev).accuracy, flush=True)
which, seeds = sys.argv[1], [int(s) for s in sys.argv[2].split(",")]
keep = torch.randperm(len(Y), generator=torch.Generator().manual_seed(1))[10:].sort().values
x, y = (X, Y) if which == "orig" else (X[keep], Y[keep])
for seed in seeds:
    t = time.time()
    with seeded(seed):
        m = model_from_config(orig.config)
    h = fit(m, x, y, TrainConfig(eval_every=1), device=dev, seed=seed, evals={"train": (x, y)}, quiet=True)
    print(h.epochs[-1])
    accs = [round(100 * ep["train_acc"], 1) for ep in h.epochs]
    print(which, seed, f"{time.time() - t:.0f}s", accs, [round(ep["loss"], 3) for ep in h.epochs], flush=True)
