"""PRMQ -- Prune, Retrain, (Mask), Quantise: the NeurIPS-2023 Kaggle entry "kgltop4" as Deep Unlearn ships it
(``munl/unlearning/kgltop4.py``; docs/reference/unlearning-methods.md §1.5 item 15).

1. Teacher = a frozen copy of the original (eval mode).
2. Global L1-unstructured pruning (``torch.nn.utils.prune.global_unstructured``) of ``prune_amount`` of all the
   weights AND biases of every ``nn.Conv2d`` and ``nn.Linear`` together (the ``round(prune_amount * n)`` entries of
   smallest magnitude are zeroed); the pruning reparametrisation is then removed (``prune.remove``), so the model
   keeps plain ``weight``/``bias`` parameters and no hooks.
3. Pruned WEIGHT entries are re-initialised U(-sqrt(1/fan_in), sqrt(1/fan_in)) (fan_in = in/groups * kh * kw for a
   conv, in for a linear layer); pruned biases stay 0 (as the reference).
4. Train on the retain set for ``int(epochs * batches per epoch)`` SGD steps (``epochs`` is a float; constant lr,
   model in train mode) with loss ``CE(student, y; class weights n_c^-0.1) + MSE(H(student), H(teacher))``,
   H the per-sample entropy of the softmax. CE uses PyTorch's weighted mean (sum w_y CE / sum w_y).
5. Cast the whole model to float16 and back (every floating parameter and buffer is rounded to fp16).

Defaults are ``KGLTop4.ORIGINAL_*``: prune_amount 0.99, epochs 3.2, batch 64, SGD lr 5e-4, momentum 0.9, weight decay
5e-4. Searched: prune_amount in [0, 1], epochs a FLOAT in [1, ceil(0.2 x the original's training epochs)]
(Deep Unlearn's ``num_epochs_float``; declared with ``FloatEpochs`` below, which resolves to a ``Float``), plus
the shared lr, weight decay, momentum and batch size.

Deviations from the reference (``reference_bug=true`` reproduces the first two):
- The reference stops when ``num_iters > max_iters``, i.e. after max_iters + 1 steps; we take max_iters.
- The reference re-initialises every weight equal to 0 after pruning (``mask = weight == 0``), which also catches
  weights that were exactly 0 before; we re-initialise exactly the pruned entries (the pruning mask).
- Class weights are indexed by class id (a class absent from R gets weight 0). The reference builds them for the
  classes present only and hands them to ``cross_entropy(weight=...)``, which fails when a class has no retain
  sample (class forgetting); with every class present both agree.

Architectures: every registered one has Conv2d and/or Linear layers; on an ``mlp`` the pruning covers its three
Linear layers (``ctx.extra["conv_layers_touched"] = 0``, ``linear_layers_touched = 3``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
import torch.nn.utils.prune as prune
from torch import nn

from dcforget.errors import ConfigError
from dcforget.runtime import seeded
from dcforget.space import Epochs, Float
from dcforget.train import TrainConfig, fit

from .base import UnlearnContext, register
from .common import num_batches, require


@dataclass(frozen=True)
class FloatEpochs(Epochs):
    """A float epoch count in [low, ceil(fraction x the original's training epochs)] (Deep Unlearn's
    ``num_epochs_float``); ``resolve`` turns it into a ``Float``."""

    def bounds(self, train_epochs: int) -> Float:  # type: ignore[override]
        return Float(float(self.low), float(max(self.low, math.ceil(self.fraction * train_epochs))))

    def to_dict(self) -> dict[str, Any]:
        return {**super().to_dict(), "float": True}


def _prunable(model: nn.Module) -> list[tuple[nn.Module, str]]:
    out = []
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            out.append((m, "weight"))
            if m.bias is not None:
                out.append((m, "bias"))
    return out


@torch.no_grad()
def prune_and_reinit(model: nn.Module, amount: float, zero_mask: bool = False) -> dict[str, int]:
    """Global L1-unstructured pruning of ``amount`` of all conv/linear weights and biases, the reparametrisation
    removed, pruned weight entries re-initialised U(+-sqrt(1/fan_in)) (global RNG: call inside ``seeded``).
    ``zero_mask``: re-initialise every weight that is 0 after pruning (the reference) instead of the pruned ones.
    Returns counts."""
    params = _prunable(model)
    if not params:
        raise ConfigError("prmq needs a model with Conv2d or Linear layers")
    total = sum(getattr(m, n).numel() for m, n in params)
    order = {id(m): list(m._parameters) for m, _ in params}
    with torch.enable_grad():  # prune computes the masked parameter through autograd-tracked ops
        prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=float(amount))
    masks = {(id(m), n): getattr(m, f"{n}_mask").detach().clone() for m, n in params}  # 1 = kept
    for m, n in params:
        prune.remove(m, n)
    for m, _ in params:  # prune.remove re-adds each parameter last: restore the original order (state_dict too)
        for k in order[id(m)]:
            m._parameters[k] = m._parameters.pop(k)
    reinit = 0
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            w = m.weight
            pruned = (w == 0) if zero_mask else (masks[(id(m), "weight")] == 0)
            bound = math.sqrt(1.0 / w[0].numel())
            fresh = (torch.rand_like(w) - 0.5) * 2 * bound
            w[pruned] = fresh[pruned]
            reinit += int(pruned.sum())
    pruned_total = int(sum(int((mk == 0).sum()) for mk in masks.values()))
    return {"prunable": total, "pruned": pruned_total, "reinitialised_weights": reinit}


def class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """count_c ** -0.1 by class id; 0 for a class with no sample."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    return torch.where(counts > 0, counts.clamp(min=1) ** -0.1, torch.zeros_like(counts))


def entropy(logits: torch.Tensor) -> torch.Tensor:
    logp = torch.log_softmax(logits, dim=1)
    return -(logp.exp() * logp).sum(1)


def _validate(o: dict[str, Any]) -> None:
    require(
        o,
        "prmq",
        positive_int=("batch_size",),
        positive=("lr", "epochs"),
        nonneg=("weight_decay",),
        momentum=("momentum",),
        fraction=("prune_amount",),
    )


@register(
    "prmq",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/kgltop4.py (NeurIPS-2023 unlearning challenge entry)",
    validate=_validate,
    space={"prune_amount": Float(0.0, 1.0), "epochs": FloatEpochs(0.2)},
    summary="Kaggle kgltop4: prune 99% (L1, global), re-init, retrain on retain with CE + entropy matching, fp16",
    epochs=3.2,
    batch_size=64,
    lr=5e-4,
    momentum=0.9,
    weight_decay=5e-4,
    prune_amount=0.99,
    reference_bug=False,
)
def prmq(ctx: UnlearnContext):
    o = ctx.options
    _validate(o)
    bug = bool(o["reference_bug"])
    teacher = ctx.copy_original().eval()
    model = ctx.copy_original()
    with seeded(ctx.seed, ctx.device):
        counts = prune_and_reinit(model, float(o["prune_amount"]), zero_mask=bug)
    xr, yr = ctx.retain()
    w = class_weights(yr, ctx.data.info.num_classes)
    n, bs = len(yr), int(o["batch_size"])
    per_epoch = num_batches(n, bs, TrainConfig.batches)  # fit's batches per epoch (its default cut)
    steps = max(1, int(per_epoch * float(o["epochs"])) + (1 if bug else 0))
    cfg = TrainConfig(
        epochs=math.ceil(steps / per_epoch),
        batch_size=bs,
        optimizer="sgd",
        lr=float(o["lr"]),
        momentum=float(o["momentum"]),
        weight_decay=float(o["weight_decay"]),
        schedule="constant",
        max_steps=steps,
    )

    def loss(logits, y, x):
        with torch.no_grad():
            target = entropy(teacher(x))
        return F.cross_entropy(logits, y, weight=w) + F.mse_loss(entropy(logits), target)

    hist = fit(model, xr, yr, cfg, device=ctx.device, seed=ctx.seed + 1, loss_fn=loss, quiet=ctx.quiet, desc="prmq")
    model = model.half().float()
    ctx.extra.update(
        {
            **counts,
            "steps": steps,
            "conv_layers_touched": sum(isinstance(m, nn.Conv2d) for m in model.modules()),
            "linear_layers_touched": sum(isinstance(m, nn.Linear) for m in model.modules()),
            "retain_loss": [r["loss"] for r in hist.epochs],
        }
    )
    return model
