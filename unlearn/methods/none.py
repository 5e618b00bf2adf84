"""No unlearning: the model as it was. The reference point of "nothing forgotten" for attacks and benchmarks."""

from .base import UnlearnContext, register


@register(
    "none",
    reference="no unlearning (the original)",
    zero_shot=True,
    summary="return the model unchanged (what an attack sees when nothing was unlearned)",
)
def none(ctx: UnlearnContext):
    return ctx.copy_original()
