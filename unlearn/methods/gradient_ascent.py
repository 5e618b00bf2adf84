"""Gradient ascent on the forget set only (Deep Unlearn's GA: SGD lr 0.01, momentum 0.9, wd 5e-4, 10 epochs)."""

import torch.nn.functional as F

from dcforget.train import fit

from .base import UnlearnContext, register


@register(
    "gradient-ascent",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/gradient ascent (GA: SGD 0.01, momentum 0.9, "
    "wd 5e-4, 10 epochs)",
    zero_shot=True,
    summary="minimise -CE on the forget set (no retain term)",
    epochs=10,
    batch_size=256,
    optimizer="sgd",
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    schedule="constant",
)
def gradient_ascent(ctx: UnlearnContext):
    model = ctx.copy_original()
    x, y = ctx.forget()
    fit(
        model,
        x,
        y,
        ctx.train_config(),
        device=ctx.device,
        seed=ctx.seed,
        quiet=ctx.quiet,
        loss_fn=lambda logits, t, x: -F.cross_entropy(logits, t),
        desc="gradient-ascent",
    )
    return model
