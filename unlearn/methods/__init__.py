"""Unlearning methods (one file each); importing the package registers them."""

from . import (  # noqa: F401  (registration side effects)
    bad_teacher, condensed, condensed_model, dcu_reference, distill, finetune, fisher, gradient_ascent, l1_sparse,
    neggrad_plus, none, retrain, synflow_prune,
)
from .base import METHODS, Method, UnlearnContext

DEFAULT_METHOD = "condensed"

__all__ = ["METHODS", "Method", "UnlearnContext", "DEFAULT_METHOD"]
