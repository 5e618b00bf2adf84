"""DC-U's overfitting metric (docs/reference/dcu.md §5.4), which the ``overfit`` forget spec (forget.py) thresholds.

Per sample: O(x) = | CE(f(x), y) - mean_j (dCE/dtheta_j)^2 |, with per-sample gradients from ``torch.func``
(vmap over grad, in chunks) instead of the reference's batch-of-one loop. The reference runs the model in train
mode; here it is eval mode by default (``train_mode=True`` reproduces it: batch-norm then uses the statistics of
a batch of one, which is undefined for BatchNorm1d and noisy for BatchNorm2d). Otsu's threshold t on O splits the
training set: forget = {O <= t} (low loss and low gradient: "memorised"), retain = the rest.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from .train import as_unit


def otsu_threshold(values: torch.Tensor, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample: the histogram cut maximising the between-class variance."""
    v = values.detach().double().cpu().numpy()
    if v.size < 2 or float(v.max()) == float(v.min()):
        raise ValueError("Otsu's threshold needs at least two distinct values")
    hist, edges = np.histogram(v, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(hist)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    mean0 = m0 / np.maximum(w0, 1)
    mean1 = (m0[-1] - m0) / np.maximum(w1, 1)
    between = w0 * w1 * (mean0 - mean1) ** 2
    return float(edges[1:][int(np.argmax(between[:-1]))])


def overfitting_scores(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, *, chunk: int = 64, train_mode: bool = False
) -> torch.Tensor:
    """O(x) for every image: float32 [N] on the CPU."""
    device = next(model.parameters()).device
    was = model.training
    model.train(train_mode)
    params = {k: v.detach() for k, v in model.named_parameters()}
    buffers = {k: v.detach() for k, v in model.named_buffers()}
    n_params = sum(p.numel() for p in params.values())

    def loss_one(p, x, y):
        out = functional_call(model, (p, buffers), (x.unsqueeze(0),))
        return F.cross_entropy(out, y.unsqueeze(0))

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0), randomness="different")
    scores = []
    try:
        for s in range(0, len(labels), chunk):
            x = as_unit(images[s : s + chunk].to(device))
            y = labels[s : s + chunk].to(device)
            g = per_sample(params, x, y)
            sq = sum((t.flatten(1) ** 2).sum(1) for t in g.values()) / n_params
            with torch.no_grad():
                ce = F.cross_entropy(model(x), y, reduction="none")
            scores.append((ce - sq).abs().float().cpu())
    finally:
        model.train(was)
    return torch.cat(scores)
