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

from dcforget.train import TrainConfig, fit

from .base import UnlearnContext, register


def modular_unlearning(ctx: UnlearnContext, model, o) -> None:
    """The online procedure, in place on ``model``."""
    quirks = bool(o["reference_quirks"])
    xs, ys = ctx.remembrance(keep_forgotten_classes=quirks)
    shared, bn_train = quirks or bool(o["shared_adam"]), quirks or bool(o["bn_train_mode"])
    beginning, intermediate, final = model.split()
    x, y, _ = ctx.reduced_tensors()
    opt = torch.optim.Adam(model.parameters(), lr=float(o["lr_overture"])) if shared else None
    bs, bf16 = int(o["batch_size"]), bool(o["bf16"])

    def stage(module, images, labels, epochs, batch, lr, desc):
        model.requires_grad_(False)
        module.requires_grad_(True)
        fit(model, images, labels, TrainConfig(epochs=epochs, batch_size=batch, lr=lr, bf16=bf16), device=ctx.device,
            seed=ctx.seed, optimizer=opt, train_modules=None if bn_train else [module], quiet=True, desc=desc)

    epochs = int(o["overture_epochs"])
    for ep in range(epochs):
        stage(beginning, x, y, int(o["beginning_epochs"]), bs, float(o["lr_overture"]), "beginning")
        if ep < epochs - int(o["final_thr"]):
            stage(final, xs, ys, int(o["final_epochs"]), len(ys), float(o["lr_overture"]), "final")
    stage(intermediate, x, y, int(o["intermediate_epochs"]), bs, float(o["lr_intermediate"]), "intermediate")
    model.requires_grad_(True)


@register("dcu-reference", needs_condensed=True,
          summary="DC-U's modular unlearning (Beginning on the reduced set, Final on remembrance, Intermediate)",
          lr_overture=3e-3, lr_intermediate=3e-3, overture_epochs=30, beginning_epochs=1, final_epochs=10,
          intermediate_epochs=1, final_thr=25, batch_size=256, bf16=False, shared_adam=False, bn_train_mode=False,
          reference_quirks=False)
def dcu_reference(ctx: UnlearnContext):
    model = ctx.copy_original()
    modular_unlearning(ctx, model, ctx.options)
    return model.eval()
