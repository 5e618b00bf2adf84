"""concept-targeted: forget a class by poisoning its training images with one donor class's label and fine-tuning
the head alone on retain u poisoned images. ``donor``: a class index, or -1 (default) for the class the original
confuses the forget class with most; the reference picks it by hand from its concept ranking, which
``unlearn concepts rank`` computes (its suggested donor is the class whose concept profile is closest). Recipe as
concept-random (unlearn.concepts.poison)."""

from __future__ import annotations

from .base import UnlearnContext, register
from .concept_poison import POISON_DEFAULTS, REFERENCE, check, run_poison


@register(
    "concept-targeted",
    summary="concept unlearning by data poisoning: the forget class relabelled as a donor class, head fine-tuned "
    "on retain + poisoned images",
    class_only=True,
    reference=REFERENCE,
    validate=lambda o: check(o, "concept-targeted"),
    donor=-1,
    **POISON_DEFAULTS,
)
def concept_targeted(ctx: UnlearnContext):
    return run_poison(ctx, "targeted", "concept-targeted")
