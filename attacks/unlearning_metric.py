"""DC-U's unlearning metric (docs/reference/dcu.md §5.5, the VGG/ResNet version): how differently the forget and retain samples
of each class pull on the model.

For every class c present in the forget set: g_F = gradient of the mean cross-entropy over the forget samples of
class c, g_R = the same over the retain samples of class c (accumulated batch-wise over all of them). Per weight
tensor (1-D parameters, i.e. biases and norm scales, are ignored), 1 - cos between corresponding output rows,
averaged over rows (Zhao et al.'s gradient-matching distance); averaged over layers and classes; x100. Higher
means the forget data behaves less like retain data, i.e. more unlearned.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dcforget.train import as_unit


def _mean_grad(model, images, labels, params, batch: int, device) -> list[torch.Tensor]:
    total = [torch.zeros_like(p) for p in params]
    n = len(labels)
    for s in range(0, n, batch):
        x = as_unit(images[s : s + batch].to(device))
        y = labels[s : s + batch].to(device)
        loss = F.cross_entropy(model(x), y, reduction="sum") / n
        for acc, g in zip(total, torch.autograd.grad(loss, params)):
            acc += g
    return total


def layer_distance(a: torch.Tensor, b: torch.Tensor) -> float:
    """Mean over output rows of 1 - cos. Rows where either gradient is zero (e.g. dead ReLU units) carry no
    direction and are skipped; DC's formula would count them as distance 1, even for identical gradients."""
    a, b = a.flatten(1), b.flatten(1)
    live = (a.norm(dim=1) > 0) & (b.norm(dim=1) > 0)
    if not bool(live.any()):
        return 0.0
    return float((1 - F.cosine_similarity(a[live], b[live], dim=1)).mean())


def unlearning_metric(model, images, labels, forget: torch.Tensor, retain: torch.Tensor, *, batch: int = 512) -> dict:
    device = next(model.parameters()).device
    was = model.training
    model.eval()
    params = [p for p in model.parameters() if p.dim() > 1]
    per_class = {}
    try:
        for c in torch.unique(labels[forget]).tolist():
            f = forget[labels[forget] == c]
            r = retain[labels[retain] == c]
            if len(r) == 0:
                continue  # a class forgotten entirely has no retain gradient to compare with
            gf = _mean_grad(model, images[f], labels[f], params, batch, device)
            gr = _mean_grad(model, images[r], labels[r], params, batch, device)
            per_class[int(c)] = 100.0 * sum(layer_distance(a, b) for a, b in zip(gf, gr)) / len(params)
    finally:
        model.train(was)
    value = sum(per_class.values()) / len(per_class) if per_class else None  # undefined: every class forgotten whole
    return {"unlearning_metric": value, "per_class": per_class}
