"""KDE, Kaggle "kgltop6": reset layers, then distil from the original (Deep Unlearn ``munl/unlearning/kgltop6.py``;
docs/reference/unlearning-methods.md §1.5 item 17).

1. Teacher = the original, frozen, eval mode. The student (a copy of the original) has its FIRST CONV and its HEAD
   reset (``reset_parameters``, under the request's seed; first conv first, as the reference's ``conv1`` then ``fc``):
   * first conv: the first ``nn.Conv2d`` in forward order (resnet18: the stem's conv1, as torchvision's ``conv1``;
     cnn / convnet / vgg16: the first conv of the first block). An MLP has no conv: its first ``nn.Linear`` (the
     input layer, ``beginning.2``, 96% of its parameters at 32x32x3) is reset instead (``ctx.extra["first_layer"]``
     says which layer and kind).
   * head: every layer of ``Classifier.final.head`` (resnet18 / convnet: the fc; cnn: both fc layers; vgg16: its three
     Linear layers; mlp: the output Linear).
2. Warm-up for ``epochs`` epochs: ``KL_T(teacher || student)`` (``F.kl_div(..., "batchmean")`` at temperature T,
   NOT multiplied by T^2, as the reference), unlabelled, model in train mode, SGD(lr, momentum, weight_decay), constant
   lr. Data (``warmup_data``): ``"retain"`` (default) = the retain images; ``"val"`` = the validation split, which is
   what the reference does (it warms up on the VALIDATION loader, so the evaluation population leaks into training:
   reproduce it only for comparison).
3. ``retain_epochs`` epochs on the retain set with ``softCE(teacher_T, student_T) + CE(student, y) + KL_T(teacher ||
   student)`` (softCE = -sum p_teacher,T log p_student,T; the reference's double log_softmax is the same thing),
   a fresh SGD(retain_lr, retain_momentum, retain_weight_decay), cosine annealing stepped per epoch
   (``CosineAnnealingLR(T_max=retain_epochs)``: epoch e at ``retain_lr * (1 + cos(pi e / retain_epochs)) / 2``).

Defaults are KGLTop6's ORIGINAL_* constants: warm-up 3 epochs, lr 9e-4, momentum 0.9, weight decay 5e-4; retain
3 epochs, lr 1e-3, momentum 0.9, weight decay 5e-4; T 5; batch 64. Searched (``HYPER_PARAMETERS``): temperature
[0, 5], retain_epochs, retain_lr, retain_momentum (fixed 0.9), retain_weight_decay, and the shared set, which
applies to the warm-up optimiser and epochs (``epochs`` is the reference's ``num_epochs``).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dcforget.errors import ConfigError
from dcforget.models import Classifier
from dcforget.runtime import seeded
from dcforget.space import Epochs, Fixed, Float
from dcforget.train import TrainConfig, fit

from .base import UnlearnContext, register
from .common import cosine_per_epoch, epoch_seeds, require, reset_head, sgd


def first_layer(model: Classifier) -> tuple[str, nn.Module]:
    """The first Conv2d in forward order; without one (MLP), the first Linear."""
    for kind in (nn.Conv2d, nn.Linear):
        for name, m in model.named_modules():
            if isinstance(m, kind):
                return name, m
    raise ConfigError(f"{model.arch}: no Conv2d or Linear layer to reset")


def reset_first_and_head(model: Classifier, seed: int, device: torch.device) -> dict:
    """Reset the first conv (or Linear) and every layer of the head, under ``seed``. Returns what was reset."""
    name, first = first_layer(model)
    with seeded(seed, device):
        first.reset_parameters()
        head = reset_head(model)
    return {"first_layer": name, "first_layer_kind": type(first).__name__, "head_layers_reset": head}


def kl_t(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """The reference's ``kl_loss``: KL(softmax(teacher/T) || softmax(student/T)), batch mean, no T^2."""
    return F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="batchmean")


@register(
    "kde",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/kgltop6.py (NeurIPS-2023 unlearning challenge entry)",
    summary="reset first conv + head, warm-up distillation from the original, then retain CE + KD",
    reads_validation=lambda o: o["warmup_data"] == "val",
    space={
        "temperature": Float(0.0, 5.0),
        "retain_epochs": Epochs(0.2),
        "retain_lr": Float(1e-5, 1e-1, log=True),
        "retain_momentum": Fixed(0.9),
        "retain_weight_decay": Float(1e-5, 1e-1, log=True),
    },
    epochs=3,
    lr=9e-4,
    momentum=0.9,
    weight_decay=5e-4,
    retain_epochs=3,
    retain_lr=1e-3,
    retain_momentum=0.9,
    retain_weight_decay=5e-4,
    temperature=5.0,
    batch_size=64,
    warmup_data="retain",
)
def kde(ctx: UnlearnContext):
    o = ctx.options
    require(
        o,
        "kde",
        nonneg_int=("epochs", "retain_epochs"),
        positive_int=("batch_size",),
        positive=("temperature", "lr", "retain_lr"),
        momentum=("momentum", "retain_momentum"),
        nonneg=("weight_decay", "retain_weight_decay"),
        choices={"warmup_data": ("retain", "val")},
    )
    warm_epochs, retain_epochs, bs = int(o["epochs"]), int(o["retain_epochs"]), int(o["batch_size"])
    t, lr, mom, wd = float(o["temperature"]), float(o["lr"]), float(o["momentum"]), float(o["weight_decay"])
    rmom, rwd = float(o["retain_momentum"]), float(o["retain_weight_decay"])
    teacher = ctx.copy_original().eval()
    student = ctx.copy_original()
    ctx.extra.update(reset_first_and_head(student, ctx.seed, ctx.device))
    xr, yr = ctx.retain()

    def teach(inputs: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return teacher(inputs).float()

    # 1. warm-up: unlabelled distillation (labels are zeros: the loss never reads them)
    if o["warmup_data"] == "val":
        if ctx.data.val is None or len(ctx.data.val.labels) == 0:
            raise ConfigError("warmup_data=val needs a validation split, and this data has none")
        xw = ctx.data.val.images.to(ctx.device)
    else:
        xw = xr
    ctx.extra.update({"warmup_data": o["warmup_data"], "warmup_size": len(xw)})
    if warm_epochs:
        cfg = TrainConfig(epochs=warm_epochs, batch_size=bs, optimizer="sgd", lr=lr, momentum=mom, weight_decay=wd)
        fit(
            student,
            xw,
            torch.zeros(len(xw), dtype=torch.long, device=xw.device),
            cfg,
            device=ctx.device,
            seed=ctx.seed,
            loss_fn=lambda logits, _y, x: kl_t(logits, teach(x), t),
            quiet=ctx.quiet,
            desc="kde warm-up",
        )

    # 2. retain epochs: CE + soft CE + KL to the teacher, one SGD, cosine annealing stepped per epoch
    def retain_loss(logits, y, x):
        tl = teach(x)
        soft = -(F.softmax(tl / t, 1) * F.log_softmax(logits / t, 1)).sum(1).mean()
        return soft + F.cross_entropy(logits, y) + kl_t(logits, tl, t)

    opt = sgd(student, o, "retain_")
    lrs = cosine_per_epoch(float(o["retain_lr"]), retain_epochs)
    for e, (lr_e, s) in enumerate(zip(lrs, epoch_seeds(ctx.seed + 1, retain_epochs))):
        cfg = TrainConfig(epochs=1, batch_size=bs, optimizer="sgd", lr=lr_e, momentum=rmom, weight_decay=rwd)
        fit(
            student,
            xr,
            yr,
            cfg,
            device=ctx.device,
            seed=s,
            optimizer=opt,
            loss_fn=retain_loss,
            quiet=ctx.quiet,
            desc=f"kde retain {e + 1}/{retain_epochs}",
        )
    ctx.extra["retain_lrs"] = lrs
    return student
