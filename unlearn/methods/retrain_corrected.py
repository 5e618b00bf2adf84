"""Retraining from scratch on the corrected training set: the reference point of a correction request (labels:FILE,
features:...), as ``retrain`` is for a removal request."""

from dcforget.train import fit

from .base import UnlearnContext, register
from .corrections import corrected_training_set
from .retrain import RECIPE


@register(
    "retrain-corrected",
    reference="DC-U, arXiv 2402.00195, retraining recipe (Adam 1e-3, 30 epochs), on the corrected training set",
    trains_fresh=True,
    corrects=True,
    shared_space=False,
    summary="a fresh model trained on the whole training set with the request's corrections applied",
    **RECIPE,
)
def retrain_corrected(ctx: UnlearnContext):
    model = ctx.fresh_model()
    x, y = corrected_training_set(ctx)
    h = fit(model, x, y, ctx.train_config(), device=ctx.device, seed=ctx.seed, quiet=ctx.quiet, desc="retrain")
    ctx.extra["epochs"] = len(h.epochs)
    return model
