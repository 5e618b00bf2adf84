"""Unlearning methods (one file each); importing the package registers them."""

from . import (  # noqa: F401  (registration side effects)
    aru,
    assd,
    bad_teacher,
    cf_k,
    cfw,
    concept_random,
    concept_targeted,
    condensed,
    condensed_model,
    ct,
    dcu_reference,
    distill,
    eu_k,
    fcs,
    finetune,
    first_order,
    fisher,
    gradient_ascent,
    iu,
    jit,
    kde,
    l1_sparse,
    lfssd,
    lrp_npp,
    mia_guided,
    msg,
    neggrad_plus,
    none,
    prmq,
    retrain,
    retrain_corrected,
    rni,
    salun,
    scrub,
    second_order,
    srl,
    ssd,
    synflow_prune,
    topk_perturb,
    unsir,
)
from .base import METHODS, Method, UnlearnContext, ZeroShotAccessError, zero_shot_view

DEFAULT_METHOD = "condensed"

__all__ = ["METHODS", "Method", "UnlearnContext", "ZeroShotAccessError", "zero_shot_view", "DEFAULT_METHOD"]
