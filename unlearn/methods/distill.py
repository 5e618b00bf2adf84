"""DC-U's "distillation" baseline (docs/reference/dcu.md §3.3 D; not SCRUB): a fresh student trained on the retain set with
1 * CE + 0.1 * KL_T(student || teacher = the original), T = 4, Adam 1e-3, 30 epochs."""

import torch
import torch.nn.functional as F

from dcforget.space import Float
from dcforget.train import fit

from .base import UnlearnContext, register


def kd_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, t: float) -> torch.Tensor:
    """KL(teacher_T || student_T) * T^2, batch mean (Hinton's distillation term)."""
    return (
        F.kl_div(F.log_softmax(student_logits / t, 1), F.softmax(teacher_logits / t, 1), reduction="batchmean") * t * t
    )


@register(
    "distill",
    reference="DC-U, arXiv 2402.00195, distillation baseline D (docs/reference/dcu.md §3.3)",
    trains_fresh=True,
    summary="a fresh student: CE + 0.1 KL(T=4) to the original, on the retain set",
    epochs=30,
    batch_size=256,
    optimizer="adam",
    lr=1e-3,
    schedule="constant",
    bf16=False,
    hard_weight=1.0,
    soft_weight=0.1,
    temperature=4.0,
    space={"soft_weight": Float(0.0, 1.0), "temperature": Float(0.5, 5.0)},
)
def distill(ctx: UnlearnContext):
    o = ctx.options
    teacher = ctx.copy_original().eval()
    student = ctx.fresh_model()
    x, y = ctx.retain()

    def loss(logits, labels, inputs):
        with torch.no_grad():
            t_logits = teacher(inputs)
        return float(o["hard_weight"]) * F.cross_entropy(logits, labels) + float(o["soft_weight"]) * kd_kl(
            logits, t_logits, float(o["temperature"])
        )

    fit(
        student,
        x,
        y,
        ctx.train_config(),
        device=ctx.device,
        seed=ctx.seed,
        loss_fn=loss,
        quiet=ctx.quiet,
        desc="distill",
    )
    return student
