"""CFW -- Confuse, Fine-tune, Weight: the NeurIPS-2023 Kaggle entry "kgltop3" as Deep Unlearn ships it
(``munl/unlearning/kgltop3.py``; docs/reference/unlearning-methods.md §1.5 item 14).

1. "Vision confuser": ``W <- W + N(0, sigma_start)`` on the weight of the network's stem convolution.
2. Fine-tune on the retain set R with class-weighted CE (``balanced`` weights, w_c = |R| / (C_R * n_c) over the
   C_R classes present in R, as sklearn's ``compute_class_weight``), SGD (lr, momentum, weight decay), model in
   train mode, cosine annealing stepped once per epoch (``CosineAnnealingLR(T_max=epochs)``).
3. After epoch E-2, i.e. before the last epoch, the confuser runs again with ``sigma_final`` (with E = 1 there is no
   such point and, as in the reference, no second noise).

Which layers get noise. The reference noises the weight of every *top-level child* whose name contains "conv"; on
torchvision's ResNet-18 (the Kaggle model) that is ``conv1`` only, the stem conv (``bn1`` and ``fc`` have weights but
no "conv" in their name; the convs inside ``layer1..4`` are not top-level children). Our Classifier wraps layers in
``beginning/intermediate/final``, so the literal rule would match nothing; we follow its intent, the stem conv = the
FIRST ``nn.Conv2d`` of the network in module order, its weight only (not its bias, as the reference):
resnet18 -> ``beginning.1`` (torchvision's ``conv1``); cnn -> ``beginning.1`` (block 1's conv); convnet ->
``beginning.1`` (block 1's conv); vgg16 -> ``beginning.1`` (``features[0]``). An ``mlp`` has no conv: no noise is
added and CFW reduces to class-weighted cosine fine-tuning on R (``ctx.extra["conv_layers_touched"] = 0``).

Defaults are ``KGLTop3.ORIGINAL_*``: sigma_start 0.6, sigma_final 0.005, 4 epochs, batch 64, SGD lr 7e-4, momentum
0.9, weight decay 5e-4 (``class_weight`` 0.05 is unused by the reference and omitted). Searched: sigma_start and
sigma_final in [0, 1] plus the shared set.

Deviations from the reference:
- Class weighting. The reference computes the batch-MEAN CE and multiplies it by the mean weight of the batch's
  labels (``mean(mean_CE * w_batch)``), which is not a per-sample weighting. By default each sample's CE is weighted
  by its class weight: ``mean_i(w_{y_i} * CE_i)``. ``reference_bug=true`` reproduces ``mean(w_batch) * mean(CE)``.
- Weights are indexed by class id (0 for a class absent from R). The reference indexes its array of weights of the
  classes PRESENT by the label, which misaligns (or fails) when a class has no retain sample (class forgetting);
  with every class present both agree.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dcforget.runtime import seeded
from dcforget.space import Float

from .base import UnlearnContext, register
from .common import check_sgd_options, conv_layers, cosine_per_epoch, sgd, train_epochs


def stem_conv(model: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The first Conv2d in module order (the layer the reference's top-level "conv" rule reaches on ResNet-18)."""
    convs = conv_layers(model)
    return convs[0] if convs else None


@torch.no_grad()
def confuse(layer: nn.Conv2d | None, std: float) -> None:
    """``W <- W + N(0, std)`` on the layer's weight (global RNG: call inside ``seeded``)."""
    if layer is not None and std > 0:
        layer.weight.add_(torch.randn_like(layer.weight) * std)


def balanced_class_weights(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """sklearn's ``balanced`` weights by class id: n / (classes present * n_c); 0 for an absent class."""
    counts = torch.bincount(labels, minlength=num_classes).float()
    present = counts > 0
    w = torch.zeros(num_classes, device=labels.device)
    w[present] = len(labels) / (int(present.sum()) * counts[present])
    return w


def class_weighted_ce(
    logits: torch.Tensor, y: torch.Tensor, weights: torch.Tensor, reference_bug: bool = False
) -> torch.Tensor:
    """mean_i w_{y_i} CE_i; with ``reference_bug`` the reference's mean(w_{y_i}) * mean_i CE_i."""
    if reference_bug:
        return F.cross_entropy(logits, y) * weights[y].mean()
    return (F.cross_entropy(logits, y, reduction="none") * weights[y]).mean()


def _validate(o: dict[str, Any]) -> None:
    check_sgd_options(o, "cfw", nonneg=("sigma_start", "sigma_final"))


@register(
    "cfw",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/kgltop3.py (NeurIPS-2023 unlearning challenge entry)",
    validate=_validate,
    space={"sigma_start": Float(0.0, 1.0), "sigma_final": Float(0.0, 1.0)},
    summary="Kaggle kgltop3: noise on the stem conv, class-weighted cosine fine-tuning on retain, noise again",
    epochs=4,
    batch_size=64,
    lr=7e-4,
    momentum=0.9,
    weight_decay=5e-4,
    sigma_start=0.6,
    sigma_final=0.005,
    reference_bug=False,
)
def cfw(ctx: UnlearnContext):
    o = ctx.options
    _validate(o)
    model = ctx.copy_original()
    stem = stem_conv(model)
    layer = stem[1] if stem else None
    epochs = int(o["epochs"])
    with seeded(ctx.seed, ctx.device):
        confuse(layer, float(o["sigma_start"]))
    xr, yr = ctx.retain()
    weights = balanced_class_weights(yr, ctx.data.info.num_classes)
    bug = bool(o["reference_bug"])

    def after_epoch(e: int) -> None:
        if e == epochs - 2:  # before the last epoch; runs inside train_epochs' seeded block
            confuse(layer, float(o["sigma_final"]))

    losses = train_epochs(
        model,
        xr,
        yr,
        sgd(model, o),
        cosine_per_epoch(float(o["lr"]), epochs),
        batch_size=int(o["batch_size"]),
        seed=ctx.seed + 1,
        device=ctx.device,
        loss_fn=lambda logits, y, x: class_weighted_ce(logits, y, weights, bug),
        after_epoch=after_epoch,
        quiet=ctx.quiet,
        desc="cfw",
    )
    ctx.extra.update(
        {
            "noised_layers": [stem[0]] if stem else [],
            "conv_layers_touched": 1 if stem else 0,
            "final_noise_applied": epochs >= 2,
            "class_weights": [round(float(v), 6) for v in weights],
            "retain_loss": losses,
        }
    )
    return model
