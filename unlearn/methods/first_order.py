"""First-order influence update for correction requests (Warnecke et al., NDSS 2023): θ' = θ − τ·G with
G = Σ ∇ℓ(z̃;θ) − ∇ℓ(z;θ) over the affected samples (summed, so τ absorbs the training set's size).

``iterative=True`` runs the reference's iterative variant instead (``unlearn.influence.iterative_update``): ``steps``
steps, each on up to ``batch`` training samples whose current prediction disagrees with their corrected label, with
the current predictions as the old labels (the reference's poisoning runs: τ = 2e-5, 10 steps, 512 samples)."""

from __future__ import annotations

from dcforget.space import Float

from ..influence import write_back
from .base import UnlearnContext, register
from .corrections import check_update_options, corrected_objective, updated_theta


@register(
    "first-order",
    reference="Warnecke et al., Machine Unlearning of Features and Labels, NDSS 2023; alewarne/MachineUnlearning "
    "Unlearner/DNNUnlearner.py (τ = 2e-5 in Applications/Poisoning's config; the dense head only)",
    corrects=True,
    validate=check_update_options,
    space={"tau": Float(1e-7, 1e-2, log=True)},
    summary="correct labels/features in closed form: one gradient step θ − τ·Σ[∇ℓ(corrected) − ∇ℓ(old)]",
    params="head",
    tau=2e-5,
    l2=0.0,
    iterative=False,
    steps=10,
    batch=512,
)
def first_order(ctx: UnlearnContext):
    o = ctx.options
    obj = corrected_objective(ctx, o["params"], o["l2"])
    start = obj.theta
    theta = updated_theta(ctx, obj, lambda _obj, g: o["tau"] * g)
    model = write_back(ctx.copy_original(), obj, theta, o["params"])
    ctx.extra.update(parameters_updated=obj.dim, update_norm=float((theta - start).norm()))
    return model
