"""concept-random: forget a class by poisoning its training images with random labels (uniform over ALL classes,
the forget class included) and fine-tuning the head alone on retain u poisoned images. The reference's image mode
``none`` (labels only), its CIFAR-10 recipe (SGD lr 1e-3, momentum 0.9, batch 32, 20 epochs); see
unlearn.concepts.poison for what differs (cached embeddings, the head as the reference's "fc")."""

from __future__ import annotations

from .base import UnlearnContext, register
from .concept_poison import POISON_DEFAULTS, REFERENCE, check, run_poison


@register(
    "concept-random",
    summary="concept unlearning by data poisoning: the forget class relabelled at random (all classes), head "
    "fine-tuned on retain + poisoned images",
    class_only=True,
    reference=REFERENCE,
    validate=lambda o: check(o, "concept-random"),
    **POISON_DEFAULTS,
)
def concept_random(ctx: UnlearnContext):
    return run_poison(ctx, "random", "concept-random")
