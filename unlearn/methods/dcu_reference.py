"""DC-U's online modular unlearning (dcu.md §3.2), on an offline-phase checkpoint (``unlearn offline``).

for ep in range(overture_epochs):
    train Beginning on the reduced retain set for beginning_epochs          (lr_overture)
    if ep < overture_epochs - final_thr: train Final on the remembrance set for final_epochs, one full-batch
                                          step per epoch
train Intermediate on the reduced set for intermediate_epochs                (lr_intermediate)

Only cross-entropy; no augmentation; condensed images used as they are (no weighting). Defaults are the
reference's CIFAR-10 CNN random-forgetting settings. Reference quirks, each off by default and all on with
``reference_quirks``: ``shared_adam`` (one Adam state across stages, lr overwritten), ``bn_train_mode`` (every
module in train mode, so frozen modules' batch-norm statistics drift, even on 32-image remembrance batches).
The remembrance source (held-out by default, the test split in the reference) is chosen by ``unlearn offline``.
"""

import torch
import torch.nn.functional as F

from dcforget.errors import ConfigError
from dcforget.train import TrainConfig, fit

from .base import UnlearnContext, register


# DC-U's per-architecture settings of the online phase, random forgetting (cifar10_exps/<arch>/
# unlearn_relative_methods.py:74-83; dcu.md §1.5). The registered defaults are the CNN's.
ARCH_SETTINGS = {
    "cnn": {"lr_overture": 3e-3, "lr_intermediate": 3e-3, "final_epochs": 10, "final_thr": 25},
    "mlp": {"lr_overture": 1e-3, "lr_intermediate": 1e-4, "final_epochs": 15, "final_thr": 15},
    "resnet18": {"lr_overture": 1e-3, "lr_intermediate": 1e-4, "final_epochs": 15, "final_thr": 15},
    "vgg16": {"lr_overture": 1e-3, "lr_intermediate": 1e-4, "final_epochs": 10, "final_thr": 15},
}
SYN_BATCH = 32  # the reference's remembrance-loader batch (batch_syn)
DEFAULTS = dict(lr_overture=3e-3, lr_intermediate=3e-3, overture_epochs=30, beginning_epochs=1, final_epochs=10,
                intermediate_epochs=1, final_thr=25, batch_size=256, bf16=False, shared_adam=False,
                bn_train_mode=False, syn_batch_mean=False, settings="", reference_quirks=False)


def resolve_settings(o: dict, arch: str) -> dict:
    """``o`` with ``settings`` applied: the reference's values for an architecture replace the options still at
    their registered defaults ("" = auto under reference_quirks, else none; auto = the model's architecture)."""
    name = str(o.get("settings", "")) or ("auto" if o.get("reference_quirks") else "none")
    if name == "none":
        return dict(o)
    if name == "auto":
        name = arch
        if name not in ARCH_SETTINGS:
            return dict(o)
    if name not in ARCH_SETTINGS:
        raise ConfigError(f"settings must be auto, none or one of {', '.join(ARCH_SETTINGS)}, got {name!r}")
    return {**o, **{k: v for k, v in ARCH_SETTINGS[name].items() if o.get(k) == DEFAULTS[k]}}


def _batch_mean_ce(logits: torch.Tensor, y: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The reference's Final-stage loss: the mean over the (shuffled) batches of SYN_BATCH of each batch's mean CE,
    so the short last batch weighs as much as a full one (modular_forgetting.py:68-76)."""
    return torch.stack([F.cross_entropy(lg, t) for lg, t in zip(logits.split(SYN_BATCH), y.split(SYN_BATCH))]).mean()


def modular_unlearning(ctx: UnlearnContext, model, o) -> None:
    """The online procedure, in place on ``model``."""
    quirks = bool(o["reference_quirks"])
    xs, ys = ctx.remembrance(keep_forgotten_classes=quirks)
    shared, bn_train = quirks or bool(o["shared_adam"]), quirks or bool(o["bn_train_mode"])
    syn_mean = quirks or bool(o.get("syn_batch_mean", False))
    beginning, intermediate, final = model.split()
    x, y, _ = ctx.reduced_tensors()
    opt = torch.optim.Adam(model.parameters(), lr=float(o["lr_overture"])) if shared else None
    bs, bf16 = int(o["batch_size"]), bool(o["bf16"])
    calls = iter(range(1 << 30))

    def stage(module, images, labels, epochs, batch, lr, desc, loss_fn=None):
        model.requires_grad_(False)
        module.requires_grad_(True)
        # a new data order for every stage call (the reference's DataLoader reshuffles every epoch)
        fit(model, images, labels, TrainConfig(epochs=epochs, batch_size=batch, lr=lr, bf16=bf16), device=ctx.device,
            seed=ctx.seed * 100_003 + next(calls), optimizer=opt, train_modules=None if bn_train else [module],
            loss_fn=loss_fn, quiet=True, desc=desc)

    epochs = int(o["overture_epochs"])
    for ep in range(epochs):
        stage(beginning, x, y, int(o["beginning_epochs"]), bs, float(o["lr_overture"]), "beginning")
        if ep < epochs - int(o["final_thr"]):
            stage(final, xs, ys, int(o["final_epochs"]), len(ys), float(o["lr_overture"]), "final",
                  _batch_mean_ce if syn_mean else None)
    stage(intermediate, x, y, int(o["intermediate_epochs"]), bs, float(o["lr_intermediate"]), "intermediate")
    model.requires_grad_(True)


@register("dcu-reference", needs_condensed=True,
          summary="DC-U's modular unlearning (Beginning on the reduced set, Final on remembrance, Intermediate)",
          **DEFAULTS)
def dcu_reference(ctx: UnlearnContext):
    model = ctx.copy_original()
    o = resolve_settings(ctx.options, model.arch)
    ctx.extra["settings"] = {k: o[k] for k in ("lr_overture", "lr_intermediate", "final_epochs", "final_thr")}
    modular_unlearning(ctx, model, o)
    return model.eval()
