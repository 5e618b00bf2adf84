"""Selective Synaptic Dampening (Foster, Schoepf, Brintrup, "Fast Machine Unlearning Without Retraining Through
Selective Synaptic Dampening", AAAI 2024; authors' code ``if-loops/selective-synaptic-dampening``, ``src/ssd.py``
``ParameterPerturber`` and ``ssd_tuning`` in ``src/forget_*_strategies.py``; SUPREME 0.1.5's ``ssd``;
../shared/reference/unlearning-methods.md §2.4). No training step: one pass over the forget set and one over the
training set.

1. Importances, model in eval mode, every trainable parameter: for each batch B (batch ``batch_size``, the last one
   smaller), the SQUARED gradient of the batch-mean cross-entropy, averaged over the batches:
   ``I_S = mean_B (d mean_{b in B} CE(f(x_b), y_b) / d theta)^2``. This is the reference's estimate (not a
   per-sample Fisher), so it depends on the batch size (an option, the reference's 128) and on which images share
   a batch (``order``, below). ``I_Df`` on the forget set; ``I_D`` on the whole training set (retain + forget).
2. Selection and dampening: where ``I_Df > alpha * I_D``, ``theta *= min((lam * I_D / I_Df) ** exponent, 1)``;
   every other parameter (and every buffer) is left as it is.

Batch composition (``order``), a named variant. A squared batch-mean gradient only estimates a mean squared gradient
when each batch is a random draw of its set. ``order="shuffled"`` (default) draws the batches of both loaders from a
seeded permutation (``ctx.derived_seed("ssd-order")``; ``"lfssd-order"`` for LFSSD), as SUPREME 0.1.5's loaders do
(``shuffle=True``). The authors' scripts do not shuffle: ``full_train_dl = DataLoader(ConcatDataset((retain, forget)))`` puts the forget set, in
whole batches, at the end of the ``I_D`` pass. Those forget-only batches add ``(forget batches / all batches) * I_Df``
to ``I_D``, so ``I_Df / I_D`` can never exceed about ``N / N_forget``: 100 on the authors' CIFAR-100 class requests
(1% of the data), but about 10 on a CIFAR-10 class request (10%), where alpha 10 then selects almost nothing and the
class is not forgotten (issue #32: FA 92.9% against SUPREME's 1.6% on a 500-per-class CIFAR-10 MLP). That is a
defect of the unshuffled loader, not of the method, so the default shuffles. ``order="stored"`` reproduces the
authors' concatenation: retain then forget, each in stored order (the toolkit's behaviour before the fix);
``order="classwise"`` also sorts the retain set by class (stable), as the authors' ``build_retain_forget_sets`` builds
it for class requests, so each retain batch holds one class too. In every order the last batch may be smaller.

Defaults are the reference's for every scenario (random, sub-class and full-class, ResNet-18): ``alpha``
(``selection_weighting``) 10, ``lam`` (``dampening_constant``) 1, ``exponent`` 1, batches of 128. Searched:
alpha and lam, log-uniform (the paper tunes both; Deep Unlearn has no SSD). Works on every architecture (it only
reads gradients) and for every forget spec. Not zero-shot: I_D reads the retain set.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dcforget.space import Fixed, Float
from dcforget.train import as_unit

from .base import UnlearnContext, register
from .common import require

ImportanceLoss = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels) -> scalar loss


def ce_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y)


def importances(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    batch_size: int,
    loss: ImportanceLoss = ce_loss,
    power: str = "square",
) -> dict[str, torch.Tensor]:
    """Per-parameter importance over ``x`` (uint8 or [0,1] float): the gradient of ``loss`` on each batch (in
    order, ``batch_size`` each, the last one smaller), squared (``power="square"``: SSD) or absolute (``"abs"``:
    LFSSD), averaged over the batches. Evaluated in eval mode; the model's mode and gradients are restored."""
    was = model.training
    model.eval()
    params = {n: p for n, p in model.named_parameters() if p.requires_grad}
    total = {n: torch.zeros_like(p) for n, p in params.items()}
    bounds = list(range(0, len(y), batch_size)) + [len(y)]  # the reference's DataLoader: a last batch of 1 stays
    try:
        for lo, hi in zip(bounds[:-1], bounds[1:]):
            grads = torch.autograd.grad(
                loss(model(as_unit(x[lo:hi])), y[lo:hi]), list(params.values()), allow_unused=True
            )
            for (n, _), g in zip(params.items(), grads):
                if g is not None:
                    total[n] += g.pow(2) if power == "square" else g.abs()
    finally:
        model.train(was)
    batches = max(len(bounds) - 1, 1)
    return {n: t / batches for n, t in total.items()}


@torch.no_grad()
def dampen(
    model: nn.Module,
    full: dict[str, torch.Tensor],
    forget: dict[str, torch.Tensor],
    alpha: float,
    lam: float,
    exponent: float = 1.0,
) -> dict[str, int]:
    """SSD's rule in place: where ``forget > alpha * full``, multiply the parameter by
    ``min((lam * full / forget) ** exponent, 1)``. Returns how many parameters were selected, per name."""
    selected = {}
    for n, p in model.named_parameters():
        if n not in full:
            continue
        where = forget[n] > alpha * full[n]
        factor = (lam * full[n][where] / forget[n][where]).pow(exponent).clamp(max=1.0)
        p[where] = p[where] * factor
        selected[n] = int(where.sum())
    return selected


ORDERS = ("shuffled", "stored", "classwise")  # how the importance passes batch their sets (module docstring)


def check(o: dict, name: str = "ssd") -> None:
    require(o, name, positive_int=("batch_size",), positive=("alpha", "lam", "exponent"), choices={"order": ORDERS})


def importance_sets(
    xr: torch.Tensor, yr: torch.Tensor, xf: torch.Tensor, yf: torch.Tensor, order: str, seed: int
) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """(forget, full) sets in the order the two importance passes batch them (see ``order`` in the module
    docstring): ``"shuffled"`` permutes each with a generator seeded by ``seed``; ``"stored"`` is the forget set
    as stored and the full set as retain then forget; ``"classwise"`` is ``"stored"`` with the retain set sorted by
    class (stable)."""
    if order not in ORDERS:
        raise ValueError(f"order must be one of {ORDERS}, not {order!r}")
    if order == "classwise":
        by_class = torch.sort(yr, stable=True).indices
        xr, yr = xr[by_class], yr[by_class]
    xd, yd = torch.cat([xr, xf]), torch.cat([yr, yf])
    if order == "shuffled":
        g = torch.Generator().manual_seed(int(seed))
        pf = torch.randperm(len(yf), generator=g).to(yf.device)
        pd = torch.randperm(len(yd), generator=g).to(yd.device)
        xf, yf, xd, yd = xf[pf], yf[pf], xd[pd], yd[pd]
    return (xf, yf), (xd, yd)


Threshold = Callable[[dict[str, torch.Tensor], dict[str, torch.Tensor], float], float]


def run_ssd(
    ctx: UnlearnContext, name: str, loss: ImportanceLoss, power: str, alpha: float | Threshold, exponent: float = 1.0
) -> nn.Module:
    """SSD and its variants, on options their method has checked: LFSSD differs in the importance's loss and power;
    ASSD reads ``alpha`` from the checkpoint, ``alpha(I_D, I_Df, share)`` with ``share`` the forget set's share of
    the full set the passes read (the report's extra records both)."""
    o = ctx.options
    model = ctx.copy_original()
    xf, yf = ctx.forget()
    xr, yr = ctx.retain()
    bs = int(o["batch_size"])
    (xf, yf), (xd, yd) = importance_sets(xr, yr, xf, yf, str(o["order"]), ctx.derived_seed(f"{name}-order"))
    imp_forget = importances(model, xf, yf, bs, loss, power)
    imp_full = importances(model, xd, yd, bs, loss, power)
    if callable(alpha):
        share = len(yf) / len(yd)
        alpha = alpha(imp_full, imp_forget, share)
        ctx.extra.update(alpha=alpha, forget_share=share)
    selected = dampen(model, imp_full, imp_forget, alpha, float(o["lam"]), exponent)
    total = sum(p.numel() for n, p in model.named_parameters() if n in imp_full)
    ctx.extra.update(
        selected_parameters=sum(selected.values()),
        parameters=total,
        order=str(o["order"]),
        selected_fraction=sum(selected.values()) / max(total, 1),
    )
    return model


SPACE = {
    "alpha": Float(1.0, 100.0, log=True),
    "lam": Float(0.1, 10.0, log=True),
    "exponent": Fixed(1.0),
    "batch_size": Fixed(128),
    "order": Fixed("shuffled"),
}


@register(
    "ssd",
    summary="Selective Synaptic Dampening: dampen parameters far more important to the forget set than "
    "to the training set (no training)",
    space=SPACE,
    shared_space=False,
    validate=check,
    alpha=10.0,
    lam=1.0,
    exponent=1.0,
    batch_size=128,
    order="shuffled",
)
def ssd(ctx: UnlearnContext):
    o = ctx.options
    check(o)
    return run_ssd(ctx, "ssd", ce_loss, "square", float(o["alpha"]), float(o["exponent"]))
