"""Adaptive Selective Synaptic Dampening (Schoepf, Foster, Brintrup, "Parameter-tuning-free data entry error
unlearning with adaptive selective synaptic dampening", arXiv 2402.10098, 2024; authors' code
``if-loops/towards_poison_unlearning``, ``src/utils.py`` ``assd_tuning`` and ``ParameterPerturber.modify_weight``
with ``adaptive=True``; ../shared/reference/unlearning-methods.md §2.4 names it). SSD (``ssd.py``) whose selection
threshold is read from the checkpoint instead of being set by hand:

1. Importances as SSD's: ``I_Df`` on the forget set, ``I_D`` on the full set (retain + forget), the squared
   gradient of each batch's mean cross-entropy averaged over batches (``batch_size``, ``order`` as SSD's).
2. The threshold: over every parameter whose ratio ``I_Df / I_D`` is finite (the reference drops NaN and inf),
   ``alpha`` is the ``p``-th percentile of the ratios (numpy's linear interpolation, the reference's
   ``np.nanpercentile``), with ``p = 100 - ln(1 + 100 * share)`` and ``share = |D_f| / |D|``, the forget set's share
   of the full set the importance passes read. A class request of CIFAR-10 (share 0.1) selects the top 2.4% of
   ratios; a 10-image request of 2,125 the top 0.4%.
3. SSD's dampening with ``lam`` 1 (the reference fixes it: "constant from ASSD paper"): where ``I_Df > alpha *
   I_D``, ``theta *= min(lam * I_D / I_Df, 1)``.

Why it is here: SSD's ``alpha`` is an absolute ratio, and the ratios a checkpoint produces move with its training:
on DC-U's CNN at the cpu preset, the ``alpha`` SSD's class study chose on validation sits near the ratio's ceiling
(about ``1 / share^2`` for shuffled batches) and selects thousands of parameters on two seeds' originals and almost
none on the third, which keeps the class (reports/benchmark-cpu). A percentile selects the same share of parameters
on every checkpoint. It does not make a checkpoint forgettable by dampening, though: on that third original ASSD's
selection does not remove the class either (its threshold is far lower there), nor does any SSD-family method.

Searched: ``lam`` only, log-uniform around the reference's 1 (the method is tuning-free; its search starts at the
reference's point). With ``share`` from the sets the method is served, a reduced retain set (``--retain reduced``)
raises the share and so selects more parameters; the importance over it is SSD's, unweighted. Not zero-shot: I_D
reads the retain set."""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from dcforget.space import Fixed, Float

from .base import UnlearnContext, register
from .common import require
from .ssd import ORDERS, ce_loss, run_ssd


def percentile(share: float) -> float:
    """The reference's percentile of the ratios that becomes the threshold: ``100 - ln(1 + 100 * share)``."""
    if not 0.0 < share <= 1.0:
        raise ValueError(f"the forget set's share of the full set must be in (0, 1], not {share}")
    return 100.0 - math.log1p(100.0 * share)


@torch.no_grad()
def threshold(full: dict[str, torch.Tensor], forget: dict[str, torch.Tensor], share: float) -> float:
    """``alpha``: the ``percentile(share)``-th percentile of ``forget / full`` over every parameter where the ratio
    is finite (0/0 and x/0 left out, as the reference does)."""
    ratios = torch.cat([(forget[n] / full[n]).reshape(-1) for n in full]).float()
    ratios = ratios[torch.isfinite(ratios)]
    if ratios.numel() == 0:
        raise ValueError("no parameter has a finite importance ratio: the full set's importances are all zero")
    return float(np.percentile(ratios.cpu().numpy(), percentile(share)))


def check(o: dict) -> None:
    require(o, "assd", positive_int=("batch_size",), positive=("lam",), choices={"order": ORDERS})


@register(
    "assd",
    summary="Adaptive SSD: SSD whose selection threshold is a percentile of the checkpoint's own importance "
    "ratios, set by the forget set's share (no training, tuning-free)",
    reference="Schoepf, Foster, Brintrup, arXiv 2402.10098 (2024); if-loops/towards_poison_unlearning src/utils.py "
    "assd_tuning (lambda 1, percentile 100 - ln(1 + 100 share))",
    space={"lam": Float(0.1, 10.0, log=True), "batch_size": Fixed(128), "order": Fixed("shuffled")},
    shared_space=False,
    validate=check,
    lam=1.0,
    batch_size=128,
    order="shuffled",
)
def assd(ctx: UnlearnContext) -> nn.Module:
    check(ctx.options)
    model = run_ssd(ctx, "assd", ce_loss, "square", threshold)
    ctx.extra["percentile"] = percentile(ctx.extra["forget_share"])
    return model
