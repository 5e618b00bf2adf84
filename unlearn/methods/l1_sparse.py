"""Sparsity-aware unlearning (Jia et al., "l1-sparse"; docs/reference/dcu.md §3.3 S): fine-tune the original on the retain set
with CE + alpha_t * ||theta||_1, alpha_t = alpha * (1 - t / (E - no_l1_epochs)) for epochs t < E - no_l1_epochs,
then 0. DC-U: alpha 1e-4, 30 epochs of which the last 15 without the penalty, Adam 1e-3."""

import torch.nn.functional as F

from dcforget.space import Fixed, Float
from dcforget.train import fit

from .base import UnlearnContext, register


@register(
    "l1-sparse",
    reference='Jia et al., "Model Sparsity Can Simplify Machine Unlearning", NeurIPS 2023; settings of '
    "DC-U's baseline S (docs/reference/dcu.md §3.3)",
    summary="fine-tune on retain with a decaying L1 penalty on the weights",
    epochs=30,
    batch_size=256,
    optimizer="adam",
    lr=1e-3,
    schedule="constant",
    bf16=False,
    alpha=1e-4,
    no_l1_epochs=15,
    space={"alpha": Float(1e-6, 1e-2, log=True), "no_l1_epochs": Fixed(0)},
)  # the penalty decays over the whole (short) run
def l1_sparse(ctx: UnlearnContext):
    o = ctx.options
    model = ctx.copy_original()
    x, y = ctx.retain()
    state = {"alpha": 0.0}
    decay_epochs = int(o["epochs"]) - int(o["no_l1_epochs"])

    def on_epoch(t: int) -> None:
        state["alpha"] = float(o["alpha"]) * (1 - t / decay_epochs) if t < decay_epochs else 0.0

    def loss(logits, labels, inputs):
        ce = F.cross_entropy(logits, labels)
        if state["alpha"] == 0.0:
            return ce
        return ce + state["alpha"] * sum(p.abs().sum() for p in model.parameters())

    fit(
        model,
        x,
        y,
        ctx.train_config(),
        device=ctx.device,
        seed=ctx.seed,
        loss_fn=loss,
        on_epoch=on_epoch,
        quiet=ctx.quiet,
        desc="l1-sparse",
    )
    return model
