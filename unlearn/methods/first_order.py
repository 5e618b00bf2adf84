"""First-order influence update for correction requests (Warnecke et al., NDSS 2023): θ' = θ − τ·G with
G = Σ ∇ℓ(z̃;θ) − ∇ℓ(z;θ) over the affected samples (summed, so τ absorbs the training set's size)."""

from __future__ import annotations

from dcforget.space import Float

from ..influence import correction_gradient, write_back
from .base import UnlearnContext, register
from .corrections import affected, check_update_options, corrected_objective


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
)
def first_order(ctx: UnlearnContext):
    o = ctx.options
    obj = corrected_objective(ctx, o["params"], o["l2"])
    old, new = affected(ctx)
    g = correction_gradient(obj, old, new)
    model = write_back(ctx.copy_original(), obj, obj.theta - o["tau"] * g, o["params"])
    ctx.extra.update(parameters_updated=obj.dim, gradient_norm=float(g.norm()), update_norm=float(o["tau"] * g.norm()))
    return model
