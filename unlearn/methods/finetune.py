"""Fine-tuning the original on the retain set ("catastrophic forgetting", DC-U's CF / Deep Unlearn's FT)."""

from dcforget.train import fit

from .base import UnlearnContext, register


@register("finetune", summary="the original fine-tuned on the retain set (DC-U CF: Adam 1e-3, 30 epochs)",
          epochs=30, batch_size=256, optimizer="adam", lr=1e-3, schedule="constant", bf16=False)
def finetune(ctx: UnlearnContext):
    model = ctx.copy_original()
    x, y = ctx.retain()
    fit(model, x, y, ctx.train_config(), device=ctx.device, seed=ctx.seed, quiet=ctx.quiet, desc="finetune")
    return model
