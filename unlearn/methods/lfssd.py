"""Loss-Free Selective Synaptic Dampening (Foster, Schoepf, Brintrup, "Loss-Free Machine Unlearning", ICLR 2024 Tiny
Paper, arXiv 2402.19308; the README of ``if-loops/selective-synaptic-dampening`` gives the change;
../shared/reference/more-methods.md §12). SSD (``ssd.py``) with a label-free importance: the gradient of the
batch-mean squared L2 norm of the logits, ``mean_b ||f(x_b)||_2^2``, taken in ABSOLUTE value instead of squared
(the reference: ``torch.norm(out, p="fro", dim=1).pow(2).mean()`` and ``p.grad.abs()``), averaged over batches.
Selection and dampening are SSD's, with SSD's defaults (alpha 10, lam 1, batches of 128) and search space, and
SSD's ``order`` variant: by default the importance batches are drawn from a seeded shuffle, as SUPREME 0.1.5's
loaders do; ``order="stored"`` / ``"classwise"`` reproduce the authors' unshuffled ``ConcatDataset((retain, forget))``,
whose forget-only batches cap ``I_Df / I_D`` near ``N / N_forget`` (about 10 on a CIFAR-10 class request, so at
alpha 10 it selected no parameter: issue #32; see ``ssd.py``).

It reads no label, but it is not zero-shot: the importance over D still reads the retain set (the paper says D or
a proxy of it)."""

from __future__ import annotations

import torch

from .base import UnlearnContext, register
from .ssd import SPACE, check, run_ssd


def logit_norm_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """The batch-mean squared L2 norm of the logits (labels unused)."""
    return logits.pow(2).sum(dim=1).mean()


@register(
    "lfssd",
    summary="Loss-Free SSD: SSD with label-free importances (gradient of the logits' squared norm, absolute)",
    space=SPACE,
    shared_space=False,
    validate=lambda o: check(o, "lfssd"),
    alpha=10.0,
    lam=1.0,
    exponent=1.0,
    batch_size=128,
    order="shuffled",
)
def lfssd(ctx: UnlearnContext):
    o = ctx.options
    check(o, "lfssd")
    return run_ssd(ctx, "lfssd", logit_norm_loss, "abs", float(o["alpha"]), float(o["exponent"]))
