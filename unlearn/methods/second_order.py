"""Second-order influence update for correction requests (Warnecke et al., NDSS 2023): θ' = θ − (H + dI)⁻¹G with
H the Hessian of the summed training loss (+ the L2 term) over the corrected training set, by conjugate gradient,
LiSSA or a direct solve (unlearn.influence). On a checkpoint of the certified variant (``unlearn train-certified``:
logreg, objective perturbation) the objective is that checkpoint's and the report carries the (ε, δ) certificate of
the gradient residual; ``sigma`` > 0 on another checkpoint gives the same figure, marked as no certificate.

``iterative=True`` runs the reference's iterative variant (``unlearn.influence.iterative_update``): ``steps`` steps,
each solving at the current θ for up to ``batch`` training samples whose current prediction disagrees with their
corrected label (the reference couples this batch to its HVP batch, 1024)."""

from __future__ import annotations

from dcforget.space import Float

from ..influence import certificate, inverse_hvp, write_back
from .base import UnlearnContext, register
from .corrections import check_update_options, corrected_objective, updated_theta


@register(
    "second-order",
    reference="Warnecke et al., Machine Unlearning of Features and Labels, NDSS 2023; alewarne/MachineUnlearning "
    "Unlearner/DNNUnlearner.py (LiSSA: scale 2e5 for 50,000 summed losses, damping 1e-4, batch 1024, 100 "
    "iterations; the dense head only) and DPLRUnlearner.py (the certified logistic regression)",
    corrects=True,
    validate=check_update_options,
    space={"damping": Float(1e-2, 1e4, log=True)},
    summary="correct labels/features in closed form: θ − (H + dI)⁻¹·Σ[∇ℓ(corrected) − ∇ℓ(old)] (CG, LiSSA or direct)",
    params="head",
    solver="cg",
    l2=0.0,
    damping=1.0,
    iterations=100,
    tol=1e-6,
    scale=0.0,
    lissa_batch=1024,
    hessian_samples=0,
    sigma=0.0,
    delta=1e-4,
    iterative=False,
    steps=10,
    batch=1024,
)
def second_order(ctx: UnlearnContext):
    o = ctx.options
    obj = corrected_objective(ctx, o["params"], o["l2"])
    start = obj.theta
    solves: list[dict] = []

    def solve(obj, g):
        step, info = inverse_hvp(
            obj,
            g,
            solver=o["solver"],
            damping=o["damping"],
            iterations=o["iterations"],
            tol=o["tol"],
            scale=o["scale"],
            lissa_batch=o["lissa_batch"],
            hessian_samples=o["hessian_samples"],
            seed=ctx.derived_seed(f"lissa{len(solves)}" if solves else "lissa"),
        )
        solves.append(info)
        return step

    theta = updated_theta(ctx, obj, solve)
    model = write_back(ctx.copy_original(), obj, theta, o["params"])
    residual = float(obj.gradient(theta).norm())
    ctx.extra.update(
        parameters_updated=obj.dim,
        update_norm=float((theta - start).norm()),
        solve=solves[0] if len(solves) == 1 else solves,
        hessian_vector_products=obj.stats.get("hvps", 0),
        gradient_residual=residual,  # ‖∇J(θ')‖ on the corrected training set (0 at its exact minimiser)
    )
    if "objective_sigma" in ctx.artefacts:  # a certified checkpoint: its own σ
        ctx.extra["certificate"] = {
            **certificate(residual, float(ctx.artefacts["objective_sigma"]), o["delta"]),
            "holds": "for a checkpoint trained by `unlearn train-certified` (the minimiser of the perturbed objective)",
        }
    elif o["sigma"] > 0:
        ctx.extra["certificate"] = {
            **certificate(residual, o["sigma"], o["delta"]),
            "holds": "only if the original was the minimiser of a perturbed objective with this sigma; this "
            "checkpoint carries no perturbation, so this is the figure, not a certificate",
        }
    return model
