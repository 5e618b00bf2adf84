"""What the correction methods (first-order, second-order, retrain-corrected) share: the affected samples as they
were and as corrected, the training set as corrected, and the option checks."""

from __future__ import annotations

import math
from typing import Any

import torch

from dcforget.errors import ConfigError

from ..influence import PARAM_SETS, SOLVERS, Objective, build_objective, correction_gradient, iterative_update
from .base import UnlearnContext


def affected(ctx: UnlearnContext) -> tuple[tuple[torch.Tensor, torch.Tensor], tuple[torch.Tensor, torch.Tensor]]:
    """((old images, old labels), (new images, new labels)) of the request's affected samples."""
    corr = ctx.split.correction
    if corr is None:  # the request refuses this before any work; a direct caller gets a typed error too
        raise ConfigError("a correction method needs a correction request (labels:FILE or features:EDIT:FILE)")
    idx = ctx.split.forget.to(ctx.data.train.labels.device)
    old = (ctx.data.train.images[idx], ctx.data.train.labels[idx])
    return old, corr.apply(*old)


def corrected_training_set(ctx: UnlearnContext) -> tuple[torch.Tensor, torch.Tensor]:
    """The whole training set with the affected samples replaced by their corrected versions (float [0,1] images
    where features change, else the uint8 images as stored)."""
    (_, _), (x_new, y_new) = affected(ctx)
    idx = ctx.split.forget.to(ctx.data.train.labels.device)
    images, labels = ctx.data.train.images, ctx.data.train.labels.clone()
    labels[idx] = y_new.to(labels.device)
    if ctx.split.correction.mask is not None:
        images = images.float() / 255.0 if images.dtype == torch.uint8 else images.clone()
        images[idx] = x_new.to(images.device)
    return images, labels


def corrected_objective(ctx: UnlearnContext, params: str, l2: float) -> Objective:
    """J over the corrected training set (unlearn.influence), of the original's ``params``. A checkpoint of the
    certified variant (``unlearn train-certified``) carries its objective's perturbation b and λ: J is then that
    objective (its λ, plus bᵀθ), the only one the certified model is the minimiser of."""
    images, labels = corrected_training_set(ctx)
    b, l2 = certified_objective(ctx, params, l2)
    return build_objective(ctx.copy_original(), params, images, labels, l2=l2, device=ctx.device, perturbation=b)


def updated_theta(ctx: UnlearnContext, obj: Objective, step) -> torch.Tensor:
    """θ after the update ``step(obj, G)`` -> the move (τG, or (H + dI)⁻¹G): once, from the request's affected
    samples as they were and as corrected; or, with option ``iterative``, the reference's iterative variant
    (``unlearn.influence.iterative_update``). Records what it did in ``ctx.extra``."""
    o = ctx.options
    if o["iterative"]:
        theta, info = iterative_update(
            obj, step, steps=o["steps"], batch=o["batch"], seed=ctx.derived_seed("iterative")
        )
        ctx.extra["iterative"] = info
        return theta
    old, new = affected(ctx)
    g = correction_gradient(obj, old, new)
    ctx.extra["gradient_norm"] = float(g.norm())
    return obj.theta - step(obj, g)


def certified_objective(ctx: UnlearnContext, params: str, l2: float) -> tuple[torch.Tensor | None, float]:
    """(b, λ) of a certified checkpoint's objective, or (None, ``l2``) for any other checkpoint."""
    if "objective_perturbation" not in ctx.artefacts:
        return None, l2
    own = float(ctx.artefacts["objective_l2"])
    if params != "head" or ctx.original.arch != "logreg":
        raise ConfigError("a certified checkpoint (logreg, objective perturbation) is updated with params=head")
    if l2 not in (0.0, own):
        raise ConfigError(f"this certified checkpoint was trained with l2={own:g}; option l2={l2:g} contradicts it")
    return ctx.artefacts["objective_perturbation"].to(ctx.device), own


def _number(opts: dict[str, Any], key: str, low: float, strict: bool = False) -> None:
    if key not in opts:
        return
    v = opts[key]
    ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if not ok or v < low or (strict and v == low):
        raise ConfigError(f"option {key} must be a number {'>' if strict else '>='} {low}, got {v!r}")


def check_update_options(opts: dict[str, Any]) -> None:
    """The checks the first- and second-order methods' options share."""
    if "params" in opts and opts["params"] not in PARAM_SETS:
        raise ConfigError(f"option params must be one of {', '.join(PARAM_SETS)}, not {opts['params']!r}")
    if "solver" in opts and opts["solver"] not in SOLVERS:
        raise ConfigError(f"option solver must be one of {', '.join(SOLVERS)}, not {opts['solver']!r}")
    _number(opts, "l2", 0.0)
    _number(opts, "tau", 0.0, strict=True)
    _number(opts, "damping", 0.0)
    _number(opts, "scale", 0.0)
    _number(opts, "tol", 0.0)
    _number(opts, "sigma", 0.0)
    if "iterative" in opts and not isinstance(opts["iterative"], bool):
        raise ConfigError(f"option iterative must be true or false, got {opts['iterative']!r}")
    for key in ("iterations", "lissa_batch", "steps", "batch"):
        if key in opts and not (isinstance(opts[key], int) and opts[key] >= 1):
            raise ConfigError(f"option {key} must be an integer >= 1, got {opts[key]!r}")
    if "hessian_samples" in opts and not (isinstance(opts["hessian_samples"], int) and opts["hessian_samples"] >= 0):
        raise ConfigError(f"option hessian_samples must be an integer >= 0, got {opts['hessian_samples']!r}")
    if "delta" in opts and not (isinstance(opts["delta"], float) and 0 < opts["delta"] < 1):
        raise ConfigError(f"option delta must be in (0, 1), got {opts['delta']!r}")
