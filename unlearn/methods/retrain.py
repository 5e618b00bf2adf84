"""Retraining from scratch on the retain set: the reference point every method is judged against."""

from dcforget.train import fit

from .base import UnlearnContext, register

# DC-U's retraining recipe, shared by every from-scratch reference (retrain, retrain-corrected)
RECIPE = dict(
    epochs=30,
    batch_size=256,
    optimizer="adam",
    lr=1e-3,
    momentum=0.9,
    weight_decay=0.0,
    schedule="constant",
    bf16=False,
)


@register(
    "retrain",
    reference="DC-U, arXiv 2402.00195, retraining recipe (Adam 1e-3, 30 epochs)",
    trains_fresh=True,
    shared_space=False,
    summary="a fresh model trained on the retain set (DC-U recipe: Adam 1e-3, 30 epochs)",
    **RECIPE,
)
def retrain(ctx: UnlearnContext):
    model = ctx.fresh_model()
    x, y = ctx.retain()
    h = fit(model, x, y, ctx.train_config(), device=ctx.device, seed=ctx.seed, quiet=ctx.quiet, desc="retrain")
    ctx.extra["epochs"] = len(h.epochs)
    return model
