"""Unlearning methods (one file each); importing the package registers them."""

from . import (  # noqa: F401  (registration side effects)
    bad_teacher, cf_k, cfw, condensed, condensed_model, ct, dcu_reference, distill, eu_k, fcs, finetune, fisher,
    gradient_ascent, iu, kde, l1_sparse, msg, neggrad_plus, none, prmq, retrain, rni, salun, scrub, srl,
    synflow_prune,
)
from .base import METHODS, Method, UnlearnContext

DEFAULT_METHOD = "condensed"

__all__ = ["METHODS", "Method", "UnlearnContext", "DEFAULT_METHOD"]
