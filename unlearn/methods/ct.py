"""CT -- Convolution Transpose, the NeurIPS-2023 Kaggle entry "kgltop5" as Deep Unlearn ships it
(``munl/unlearning/kgltop5.py``; docs/reference/unlearning-methods.md §1.5 item 16).

1. Every ``nn.Conv2d`` weight W [out, in, kh, kw] becomes ``W.swapaxes(2, 3)``: each kernel is transposed
   spatially (1x1 kernels are unchanged). No noise, no saliency.
2. Fine-tune on the retain set R with CE, SGD (lr, momentum, weight decay) and cosine annealing stepped once per
   epoch (``CosineAnnealingLR(T_max=epochs)``: epoch e runs at ``lr * (1 + cos(pi e / E)) / 2``), model in train
   mode.

The forget set is never used. CT is therefore not zero-shot: it needs the retain data (and only that).

Defaults are ``KGLTop5.ORIGINAL_*``: 3 epochs, batch 64, SGD lr 1e-3, momentum 0.9, weight decay 5e-4. Searched: the
shared set only (lr, weight decay, momentum fixed 0.9, batch size, epochs).

Architectures: on cnn, convnet, resnet18 and vgg16 every Conv2d is transposed (resnet18's 1x1 downsample convs are
counted but unchanged by the transposition). An ``mlp`` has no Conv2d: nothing is transposed and CT reduces to
cosine fine-tuning on R (``ctx.extra["conv_layers_touched"] = 0``). A Conv2d with a non-square kernel (none in the
registered architectures) is refused: its transposed kernel would not fit the layer's geometry.

The weight is transposed in place (same Parameter, contiguous) instead of the reference's
``module.weight = Parameter(W.swapaxes(2, 3))`` (a non-contiguous new Parameter); the values are identical.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from dcforget.errors import ConfigError

from .base import UnlearnContext, register
from .common import check_sgd_options, conv_layers, cosine_per_epoch, sgd, train_epochs


@torch.no_grad()
def transpose_conv_kernels(model: nn.Module) -> int:
    """``W <- W.swapaxes(2, 3)`` for every Conv2d, in place; returns how many Conv2d layers there are."""
    convs = conv_layers(model)
    for name, m in convs:
        if m.weight.shape[2] != m.weight.shape[3]:
            raise ConfigError(f"ct transposes square kernels only; {name} has kernel {tuple(m.weight.shape[2:])}")
    for _, m in convs:
        m.weight.copy_(m.weight.transpose(2, 3).clone())
    return len(convs)


def _validate(o: dict[str, Any]) -> None:
    check_sgd_options(o, "ct")


@register(
    "ct",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/kgltop5.py (NeurIPS-2023 unlearning challenge entry)",
    validate=_validate,
    summary="Kaggle kgltop5: transpose every conv kernel spatially, then cosine SGD fine-tuning on retain",
    epochs=3,
    batch_size=64,
    lr=1e-3,
    momentum=0.9,
    weight_decay=5e-4,
)
def ct(ctx: UnlearnContext):
    o = ctx.options
    _validate(o)
    model = ctx.copy_original()
    touched = transpose_conv_kernels(model)
    xr, yr = ctx.retain()
    losses = train_epochs(
        model,
        xr,
        yr,
        sgd(model, o),
        cosine_per_epoch(float(o["lr"]), int(o["epochs"])),
        batch_size=int(o["batch_size"]),
        seed=ctx.seed,
        device=ctx.device,
        quiet=ctx.quiet,
        desc="ct",
    )
    ctx.extra.update({"conv_layers_touched": touched, "retain_loss": losses})
    return model
