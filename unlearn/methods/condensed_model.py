"""DC-U's condensed-model mode (docs/reference/dcu.md §4), done properly.

The model is a ``convae`` (autoencoder databank + classifier) whose offline phase re-initialised its classifier
every iteration (``unlearn offline --option final_reinit_each_iter=true``), so the decoder learned to produce
images any fresh classifier can learn from the remembrance set alone. A request runs DC-U's modular unlearning on
it (the condensed-model settings: overture 10, beginning 2, final 50, final_thr 2, intermediate 5, Adam 1e-3),
then trains a *fresh* classifier of any registered architecture (``classifier``; default: the one it had) on the
remembrance set through the unlearned, frozen databank. The reference re-trained the same classifier object
instead, so "train an arbitrary model" was never exercised.
"""

from dcforget.errors import ConfigError
from dcforget.models import MODELS
from dcforget.models.autoencoder import AutoencoderClassifier, with_classifier
from dcforget.runtime import seeded
from dcforget.train import TrainConfig, fit

from .base import UnlearnContext, register
from .dcu_reference import check_quirks, modular_unlearning


@register(
    "condensed-model",
    reference="DC-U, arXiv 2402.00195, condensed-model mode (docs/reference/dcu.md §4)",
    needs_offline=True,
    trains_fresh=True,
    needs_condensed=True,
    validate=check_quirks,
    summary="DC-U's autoencoder databank unlearned modularly, then a fresh classifier trained through it",
    lr_overture=1e-3,
    lr_intermediate=1e-3,
    overture_epochs=10,
    beginning_epochs=2,
    final_epochs=50,
    intermediate_epochs=5,
    final_thr=2,
    batch_size=256,
    bf16=False,
    shared_adam=False,
    bn_train_mode=False,
    reference_quirks=False,
    classifier="",
    recondense_epochs=30,
    recondense_lr=1e-3,
)
def condensed_model(ctx: UnlearnContext):
    o = ctx.options
    if not isinstance(ctx.original, AutoencoderClassifier):
        raise ConfigError(
            "condensed-model mode needs a convae checkpoint (unlearn train DATASET --model convae, "
            "then unlearn offline --option final_reinit_each_iter=true)"
        )
    model = ctx.copy_original()
    modular_unlearning(ctx, model, o)
    arch = o["classifier"] or model.config["options"]["classifier"]
    MODELS.get(arch)
    with seeded(ctx.seed + 7):
        fresh = with_classifier(model, arch)
    fresh.beginning.requires_grad_(False)
    fresh.intermediate.requires_grad_(False)
    xs, ys = ctx.remembrance(keep_forgotten_classes=bool(o["reference_quirks"]))
    fit(
        fresh,
        xs,
        ys,
        TrainConfig(
            epochs=int(o["recondense_epochs"]), batch_size=32, lr=float(o["recondense_lr"]), bf16=bool(o["bf16"])
        ),
        device=ctx.device,
        seed=ctx.seed,
        train_modules=[fresh.final],
        quiet=ctx.quiet,
        desc="re-condensation",
    )
    fresh.requires_grad_(True)
    ctx.extra["classifier"] = arch
    return fresh.eval()
