"""Fine-tuning the original on the retain set ("catastrophic forgetting", DC-U's CF / Deep Unlearn's FT)."""

from dcforget.space import Fixed
from dcforget.train import fit

from .base import UnlearnContext, register


@register(
    "finetune",
    reference="DC-U, arXiv 2402.00195, baseline CF (docs/reference/dcu.md §3.3); Deep Unlearn's FT",
    summary="the original fine-tuned on the retain set (DC-U CF: Adam 1e-3, 30 epochs)",
    epochs=30,
    batch_size=256,
    optimizer="adam",
    lr=1e-3,
    momentum=0.9,
    weight_decay=0.0,
    schedule="constant",
    bf16=False,
    space={"optimizer": Fixed("sgd"), "schedule": Fixed("cosine")},
)  # searched as Deep Unlearn's FT: SGD, cosine
def finetune(ctx: UnlearnContext):
    model = ctx.copy_original()
    x, y = ctx.retain()
    fit(model, x, y, ctx.train_config(), device=ctx.device, seed=ctx.seed, quiet=ctx.quiet, desc="finetune")
    return model
