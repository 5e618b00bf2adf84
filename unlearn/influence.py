"""Closed-form updates for correction requests (Warnecke et al., "Machine Unlearning of Features and Labels", NDSS
2023; code alewarne/MachineUnlearning): first- and second-order influence updates of a trained model's parameters,
Hessian-vector products through ``torch.func``, and the certified variant for convex models.

The objective, everywhere in this module, is the training set's **summed** loss, as in the reference::

    J(θ) = Σ_i CE(f_θ(x_i), y_i) + (λ/2)‖θ‖² (+ bᵀθ, the certified variant's objective perturbation)

over the training set *as corrected* (the affected samples replaced by their corrected versions), θ being the
selected parameters (``params``: ``head`` = the model's final block, the reference's "last 6 trainable tensors";
``last`` = the last linear layer only, in which J is convex; ``all``). The model is read in eval mode (dropout off,
BatchNorm's running statistics), and everything before the selected parameters is fixed, so with ``head``/``last``
the training set is embedded once and every Hessian-vector product runs on the head alone.

Correcting samples Z to Z̃ moves the minimiser by about ``-H⁻¹G`` with ``G = Σ_(z,z̃) ∇ℓ(z̃;θ) − ∇ℓ(z;θ)`` and H
the Hessian of J: the second-order update is θ' = θ − H⁻¹G, the first-order one θ' = θ − τG. Summed gradients
make τ absorb the training set's size (the reference's poisoning config: τ = 2e-5 for 50,000 images).

Solvers of (H + dI)u = G: ``cg`` (conjugate gradient; a direction of non-positive curvature raises
:class:`SolverDivergedError`), ``lissa`` (u ← G + (1−d)u − H_B u / s over random batches B, the Hessian of a batch
scaled to the training set, returning u/s: it solves (H + d·s·I)u = G; a growing or non-finite iterate raises
:class:`SolverDivergedError`), ``direct`` (the dense Hessian, for small parameter sets).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, grad, jvp

from dcforget.errors import ConfigError, DivergedError
from dcforget.models import Classifier

PARAM_SETS = ("head", "last", "all")
SOLVERS = ("cg", "lissa", "direct")
DIRECT_MAX_PARAMS = 12_000  # a dense float64 Hessian of this many parameters is about 1.1 GB


class SolverDivergedError(DivergedError):
    """An iterative inverse-Hessian solve diverged (LiSSA with too small a scale, CG meeting negative curvature):
    raised instead of returning non-finite or meaningless parameters."""


def _as_float(images: torch.Tensor) -> torch.Tensor:
    return images.float() / 255.0 if images.dtype == torch.uint8 else images.float()


@dataclass
class Objective:
    """J over a training set, as a function of the selected parameters (a flat vector ``theta``)."""

    module: nn.Module  # the part of the model the selected parameters live in, applied to ``inputs``
    names: list[str]  # the selected parameters' names in ``module``
    shapes: list[torch.Size]
    fixed: dict[str, torch.Tensor]  # the module's other parameters and its buffers
    theta: torch.Tensor  # flat, the trained values
    inputs: torch.Tensor  # the training set as the module sees it (embedded for head/last)
    labels: torch.Tensor
    l2: float = 0.0
    perturbation: torch.Tensor | None = None  # b of the certified variant's objective
    batch_size: int = 512
    embed_fn: Any = None  # images -> module inputs
    stats: dict[str, Any] = field(default_factory=dict)

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    @property
    def dim(self) -> int:
        return int(self.theta.numel())

    def unflatten(self, theta: torch.Tensor) -> dict[str, torch.Tensor]:
        out, i = {}, 0
        for name, shape in zip(self.names, self.shapes):
            k = math.prod(shape)
            out[name] = theta[i : i + k].view(shape)
            i += k
        return out

    def logits(self, theta: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        return functional_call(self.module, {**self.fixed, **self.unflatten(theta)}, (x,))

    def data_loss(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ CE over (x, y): the data term, without the L2 and perturbation terms."""
        return F.cross_entropy(self.logits(theta, x), y, reduction="sum")

    def _batches(self, rows: torch.Tensor | None):
        idx = torch.arange(self.n, device=self.labels.device) if rows is None else rows
        for s in range(0, len(idx), self.batch_size):
            b = idx[s : s + self.batch_size]
            yield self.inputs[b], self.labels[b]

    def value(self, theta: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            total = sum(self.data_loss(theta, x, y) for x, y in self._batches(None))
        return total + 0.5 * self.l2 * theta.dot(theta) + (self.perturbation.dot(theta) if self._b else 0.0)

    @property
    def _b(self) -> bool:
        return self.perturbation is not None

    def sample_gradient(self, theta: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """Σ ∇ℓ over (x, y) (module inputs), in batches."""
        g = torch.zeros_like(theta)
        for s in range(0, len(y), self.batch_size):
            g += grad(self.data_loss)(theta, x[s : s + self.batch_size], y[s : s + self.batch_size])
        return g

    def gradient(self, theta: torch.Tensor) -> torch.Tensor:
        """∇J(θ) over the whole training set (the certified variant's residual)."""
        g = self.sample_gradient(theta, self.inputs, self.labels) + self.l2 * theta
        return g + self.perturbation if self._b else g

    def hvp(self, v: torch.Tensor, rows: torch.Tensor | None = None, theta: torch.Tensor | None = None) -> torch.Tensor:
        """(∇²J) v: the data term's Hessian over ``rows`` (all rows: exact; a subset: scaled by n/len(rows), an
        unbiased estimate), by forward-over-reverse differentiation, plus λv."""
        theta = self.theta if theta is None else theta
        out = torch.zeros_like(v)
        for x, y in self._batches(rows):
            out += jvp(lambda t: grad(self.data_loss)(t, x, y), (theta,), (v,))[1]
        if rows is not None:
            out *= self.n / len(rows)
        self.stats["hvps"] = self.stats.get("hvps", 0) + 1
        return out + self.l2 * v

    def hessian(self, theta: torch.Tensor | None = None) -> torch.Tensor:
        """The dense Hessian of J (float64), for small parameter sets (``solver=direct``)."""
        theta = self.theta if theta is None else theta
        if self.dim > DIRECT_MAX_PARAMS:
            raise ConfigError(
                f"solver=direct builds a dense Hessian; {self.dim} parameters are over its limit of "
                f"{DIRECT_MAX_PARAMS} (use solver=cg or lissa, or params=last)"
            )
        t64 = theta.double()
        h = torch.zeros(self.dim, self.dim, dtype=torch.float64, device=theta.device)
        for x, y in self._batches(None):
            h += torch.func.hessian(lambda t: self._loss64(t, x, y))(t64)
        return h + self.l2 * torch.eye(self.dim, dtype=torch.float64, device=theta.device)

    def _loss64(self, t: torch.Tensor, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        params = {k: v.double() for k, v in self.fixed.items() if v.is_floating_point()}
        params.update({k: v for k, v in self.fixed.items() if not v.is_floating_point()})
        params.update(self.unflatten(t))
        return F.cross_entropy(functional_call(self.module, params, (x.double(),)), y, reduction="sum")

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return self.embed_fn(images)


def _last_linear(module: nn.Module) -> str:
    names = [n for n, m in module.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ConfigError("params=last needs a model whose head ends in a linear layer")
    return names[-1]


def build_objective(
    model: Classifier,
    params: str,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    l2: float = 0.0,
    batch_size: int = 512,
    device: torch.device | None = None,
    perturbation: torch.Tensor | None = None,
) -> Objective:
    """J of ``model`` (read in eval mode) over (images, labels) -- the training set as corrected -- as a function
    of the parameter set ``params`` (head, last, all)."""
    if params not in PARAM_SETS:
        raise ConfigError(f"params must be one of {', '.join(PARAM_SETS)}, not {params!r}")
    device = device or next(model.parameters()).device
    model = model.to(device).eval()
    if params == "all":
        module = model

        def embed_fn(x: torch.Tensor) -> torch.Tensor:
            return _as_float(x).to(device)

    else:
        module = model.final
        before = nn.Sequential(model.beginning, model.intermediate)

        @torch.no_grad()
        def embed_fn(x: torch.Tensor) -> torch.Tensor:
            out = [before(_as_float(x[s : s + batch_size]).to(device)) for s in range(0, len(x), batch_size)]
            return torch.cat(out) if out else torch.zeros(0, device=device)

    selected = dict(module.named_parameters())
    if params == "last":
        prefix = _last_linear(module) + "."
        selected = {k: v for k, v in selected.items() if k.startswith(prefix)}
    names = list(selected)
    fixed = {k: v.detach() for k, v in module.named_parameters() if k not in selected}
    fixed.update({k: v.detach() for k, v in module.named_buffers()})
    theta = torch.cat([selected[k].detach().flatten() for k in names])
    obj = Objective(
        module,
        names,
        [selected[k].shape for k in names],
        fixed,
        theta,
        embed_fn(images),
        labels.to(device),
        float(l2),
        None if perturbation is None else perturbation.to(device),
        batch_size,
        embed_fn,
    )
    return obj


def write_back(model: Classifier, obj: Objective, theta: torch.Tensor, params: str) -> Classifier:
    """``model`` with the selected parameters set to ``theta`` (in place; returns it)."""
    module = model if params == "all" else model.final
    values = obj.unflatten(theta)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name in values:
                p.copy_(values[name])
    return model


def correction_gradient(
    obj: Objective, old: tuple[torch.Tensor, torch.Tensor], new: tuple[torch.Tensor, torch.Tensor]
) -> torch.Tensor:
    """G = Σ ∇ℓ(z̃;θ) − ∇ℓ(z;θ) over the affected samples: ``old`` and ``new`` are (images, labels)."""
    dev = obj.theta.device
    g_new = obj.sample_gradient(obj.theta, obj.embed(new[0]), new[1].to(dev))
    g_old = obj.sample_gradient(obj.theta, obj.embed(old[0]), old[1].to(dev))
    return g_new - g_old


def predictions(obj: Objective, theta: torch.Tensor) -> torch.Tensor:
    """The model's predicted class of every training row (as corrected) at ``theta``."""
    with torch.no_grad():
        out = [obj.logits(theta, x).argmax(1) for x, _ in obj._batches(None)]
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long, device=obj.labels.device)


def iterative_update(
    obj: Objective, step, *, steps: int, batch: int, seed: int = 0
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The reference's iterative variant (alewarne/MachineUnlearning, Applications/Poisoning/unlearn/common.py,
    ``iter_approx_retraining`` with one inner step): at each of ``steps`` steps, draw up to ``batch`` training rows
    (as corrected) whose current prediction disagrees with their label, take the model's *current predictions* as
    their "old" labels and their corrected labels as the new ones, and move θ by ``step(obj, G)`` with
    G = Σ ∇ℓ(x, y_corrected; θ) − ∇ℓ(x, y_predicted; θ). Stops early once every row is fitted. ``obj.theta`` is
    moved along (the second-order step's Hessian is taken at the current θ, as the reference's is)."""
    gen = torch.Generator().manual_seed(seed)
    theta = obj.theta
    log: list[dict[str, Any]] = []
    for _ in range(steps):
        pred = predictions(obj, theta)
        wrong = torch.nonzero(pred != obj.labels).flatten()
        if len(wrong) == 0:
            break
        pick = wrong[torch.randperm(len(wrong), generator=gen)[:batch].to(wrong.device)]
        x, y_new, y_old = obj.inputs[pick], obj.labels[pick], pred[pick]
        g = obj.sample_gradient(theta, x, y_new) - obj.sample_gradient(theta, x, y_old)
        obj.theta = theta
        theta = theta - step(obj, g)
        log.append({"disagreeing": int(len(wrong)), "updated_on": int(len(pick)), "gradient_norm": float(g.norm())})
    obj.theta = theta
    remaining = int((predictions(obj, theta) != obj.labels).sum())
    return theta, {
        "steps_taken": len(log),
        "disagreeing_before": log[0]["disagreeing"] if log else 0,
        "disagreeing_after": remaining,
        "steps": log,
    }


def power_iteration(obj: Objective, iterations: int = 20, seed: int = 0, rows: torch.Tensor | None = None) -> float:
    """The largest |eigenvalue| of ∇²J, estimated by power iteration (LiSSA's scale must exceed it)."""
    gen = torch.Generator().manual_seed(seed)
    v = torch.randn(obj.dim, generator=gen).to(obj.theta)
    v /= v.norm()
    lam = 0.0
    for _ in range(iterations):
        w = obj.hvp(v, rows)
        lam = float(v.dot(w))
        nrm = float(w.norm())
        if not math.isfinite(nrm) or nrm == 0.0:
            break
        v = w / nrm
    return abs(lam)


def conjugate_gradient(
    obj: Objective, g: torch.Tensor, *, damping: float, iterations: int, tol: float, rows: torch.Tensor | None = None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """Solve (H + dI)u = g by conjugate gradient."""
    x = torch.zeros_like(g)
    r = g.clone()
    p = r.clone()
    rs = float(r.dot(r))
    g_norm = math.sqrt(rs) or 1.0
    it = 0
    for it in range(1, iterations + 1):
        ap = obj.hvp(p, rows) + damping * p
        pap = float(p.dot(ap))
        if not math.isfinite(pap) or pap <= 0:
            raise SolverDivergedError(
                f"conjugate gradient met non-positive curvature (pᵀ(H+dI)p = {pap:.3g}) at iteration {it}: the "
                f"Hessian is not positive definite here; raise damping (now {damping:g})"
            )
        alpha = rs / pap
        x += alpha * p
        r -= alpha * ap
        rs_new = float(r.dot(r))
        if math.sqrt(rs_new) <= tol * g_norm:
            rs = rs_new
            break
        p = r + (rs_new / rs) * p
        rs = rs_new
    return x, {"iterations": it, "relative_residual": math.sqrt(rs) / g_norm}


def lissa(
    obj: Objective,
    g: torch.Tensor,
    *,
    damping: float,
    scale: float,
    iterations: int,
    batch: int,
    tol: float,
    seed: int,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """LiSSA as the reference runs it: u₀ = g; u ← g + (1−d)u − H_B u / s; return u/s, which solves
    (H + d·s·I)u = g when the iteration converges (s above H's largest eigenvalue). ``scale`` 0: s = 1.5 x the
    power-iteration estimate of that eigenvalue."""
    gen = torch.Generator().manual_seed(seed)
    info: dict[str, Any] = {}
    if scale <= 0:
        lam = power_iteration(obj, seed=seed)
        scale = 1.5 * lam if lam > 0 else 1.0
        info["largest_eigenvalue"] = lam
    info["scale"] = scale
    u = g.clone()
    g_norm = float(g.norm()) or 1.0
    dev = g.device
    it = 0
    change = float("nan")
    for it in range(1, iterations + 1):
        rows = torch.randperm(obj.n, generator=gen)[: min(batch, obj.n)].to(dev)
        new = g + (1.0 - damping) * u - obj.hvp(u, rows) / scale
        nrm = float(new.norm())
        if not math.isfinite(nrm) or nrm > 1e6 * g_norm:
            raise SolverDivergedError(
                f"LiSSA diverged at iteration {it} (|u| = {nrm:.3g}, |G| = {g_norm:.3g}): the scale s = {scale:g} is "
                "below the Hessian's largest eigenvalue, or damping is too small for its negative curvature; raise "
                "scale (or give scale=0 to estimate it) or damping"
            )
        change = float((new - u).norm()) / max(nrm, 1e-30)
        u = new
        if change <= tol:
            break
    info.update(iterations=it, last_relative_change=change)
    return u / scale, info


def direct_solve(obj: Objective, g: torch.Tensor, *, damping: float) -> tuple[torch.Tensor, dict[str, Any]]:
    """Solve (H + dI)u = g with the dense Hessian (float64)."""
    h = obj.hessian()
    h += damping * torch.eye(obj.dim, dtype=h.dtype, device=h.device)
    try:
        u = torch.linalg.solve(h, g.double())
    except RuntimeError as err:  # singular
        raise SolverDivergedError(f"the Hessian is singular: {err}; raise damping or l2") from None
    eig_min = float(torch.linalg.eigvalsh(h)[0]) if obj.dim <= 4000 else None
    return u.to(g.dtype), {"smallest_eigenvalue": eig_min}


def inverse_hvp(
    obj: Objective,
    g: torch.Tensor,
    *,
    solver: str,
    damping: float = 0.0,
    iterations: int = 100,
    tol: float = 1e-6,
    scale: float = 0.0,
    lissa_batch: int = 1024,
    hessian_samples: int = 0,
    seed: int = 0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """u ≈ (H + damping·I)⁻¹ g by ``solver`` (for LiSSA the damping is d·s, see :func:`lissa`)."""
    if solver not in SOLVERS:
        raise ConfigError(f"solver must be one of {', '.join(SOLVERS)}, not {solver!r}")
    if solver == "direct":
        u, info = direct_solve(obj, g, damping=damping)
    elif solver == "cg":
        rows = None
        if 0 < hessian_samples < obj.n:
            gen = torch.Generator().manual_seed(seed)
            rows = torch.randperm(obj.n, generator=gen)[:hessian_samples].to(g.device)
        u, info = conjugate_gradient(obj, g, damping=damping, iterations=iterations, tol=tol, rows=rows)
    else:
        u, info = lissa(
            obj, g, damping=damping, scale=scale, iterations=iterations, batch=lissa_batch, tol=tol, seed=seed
        )
    if not bool(torch.isfinite(u).all()):
        raise SolverDivergedError(f"the {solver} solve returned non-finite values; raise damping")
    return u, {"solver": solver, **info}


# ------------------------------------------------------------------------------------ the certified variant
def fit_convex(obj: Objective, *, max_iter: int = 500, tol: float = 1e-10) -> torch.Tensor:
    """Minimise J (convex: params=last, or a logreg model, with l2 > 0) to convergence by full-batch L-BFGS, from
    the objective's current θ; returns the minimiser (float64 steps, cast back)."""
    theta = obj.theta.clone().double().requires_grad_(True)

    def full(t: torch.Tensor) -> torch.Tensor:
        total = sum(obj._loss64(t, x, y) for x, y in obj._batches(None))
        reg = 0.5 * obj.l2 * t.dot(t)
        return total + reg + (obj.perturbation.double().dot(t) if obj._b else 0.0)

    opt = torch.optim.LBFGS(
        [theta], lr=1.0, max_iter=max_iter, tolerance_grad=tol, tolerance_change=1e-14, line_search_fn="strong_wolfe"
    )

    def closure():
        opt.zero_grad()
        loss = full(theta)
        loss.backward()
        return loss

    opt.step(closure)
    return theta.detach().to(obj.theta.dtype)


def certificate(residual: float, sigma: float, delta: float) -> dict[str, Any]:
    """The (ε, δ) a gradient residual ‖∇J(θ')‖ certifies under objective perturbation b ~ N(0, σ²I) (Guo et al.,
    "Certified Data Removal", ICML 2020, Theorem 3; the certified variant of Warnecke et al.): removal is (ε, δ)-
    certified for ε = ‖∇J(θ')‖ · sqrt(2 log(1.5/δ)) / σ, so a request meets a target ε when the residual is at most
    ε·σ / sqrt(2 log(1.5/δ))."""
    if sigma <= 0 or not 0 < delta < 1:
        raise ConfigError("a certificate needs sigma > 0 and delta in (0, 1)")
    c = math.sqrt(2.0 * math.log(1.5 / delta))
    return {"gradient_residual": residual, "sigma": sigma, "delta": delta, "epsilon": residual * c / sigma}


CERTIFIED_TENSORS = ("objective_perturbation", "objective_l2", "objective_sigma")


def train_certified(
    model: Classifier,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    l2: float,
    sigma: float,
    seed: int,
    device: torch.device,
    max_iter: int = 500,
) -> tuple[Classifier, dict[str, torch.Tensor], dict[str, Any]]:
    """The certified variant's training: ``model`` (a ``logreg``: J is convex in its one linear layer) fitted to
    the minimum of Σℓ + (λ/2)‖θ‖² + bᵀθ with b ~ N(0, σ²I) drawn from ``seed``, by L-BFGS. Returns the model, the
    tensors a checkpoint must carry for the certified update (b, λ, σ: :data:`CERTIFIED_TENSORS`), and what the fit
    reached (its gradient residual, which the certificate of a later update starts from)."""
    if model.arch != "logreg":
        raise ConfigError(f"the certified variant trains a logreg model (convex), not {model.arch!r}")
    if not (l2 > 0 and sigma > 0):
        raise ConfigError("the certified variant needs l2 > 0 (strict convexity) and sigma > 0")
    dim = sum(p.numel() for p in model.final.parameters())
    b = torch.randn(dim, generator=torch.Generator().manual_seed(seed)) * sigma
    obj = build_objective(model, "head", images, labels, l2=l2, device=device, perturbation=b)
    theta = fit_convex(obj, max_iter=max_iter)
    write_back(model, obj, theta, "head")
    info = {"l2": l2, "sigma": sigma, "gradient_residual": float(obj.gradient(theta).norm()), "parameters": dim}
    tensors = {
        "objective_perturbation": b.cpu(),
        "objective_l2": torch.tensor(float(l2)),
        "objective_sigma": torch.tensor(float(sigma)),
    }
    return model, tensors, info
