"""IU, Influence Unlearning with the WoodFisher approximation (Deep Unlearn ``munl/unlearning/iu.py``, from
Unlearn-Saliency ``unlearn/Wfisher.py``; docs/reference/unlearning-methods.md §1.5 item 9). No training step; it
reads the retain set (gradients), so it is not zero-shot.

Everything is computed with the model in eval mode (BatchNorm running statistics, no dropout), as the reference does
(``model.eval()`` before every gradient); the per-sample gradients are ``torch.func`` ``vmap(grad(functional_call))``
over chunks of ``chunk_size`` samples, with the model's buffers passed to ``functional_call`` in eval mode, so each
sample's gradient is exactly its batch-size-1 gradient.

1. Summed gradients of the cross-entropy over the forget set, g_F, and over the retain set, g_R (batched, in
   ``batch_size`` chunks; a sum, so the batching does not change it), n_F, n_R their sizes, and
   ``v = g_F / (n_F + n_R) - g_R * n_F / ((n_F + n_R) * n_R)``.
2. ``H^-1 v`` by the reference's recursion over per-sample retain gradients g_0, g_1, ... (``woodfisher``, damping
   N = ``damping``): ``k = v``; ``o = g_0``; for t >= 1: ``tmp = o.g_t``; ``k -= (k.g_t / (N + tmp)) o``;
   ``o -= (tmp / (N + tmp)) o``; stopping after sample index N + 1 (1002 samples for N = 1000:
   ``hessian_samples``). What that computes: ``o`` is only ever rescaled, so it stays ``c g_0``, and every update of
   ``k`` is along ``g_0``: the result is ``k = v - b g_0`` with two scalars, ``c_0 = 1, b_0 = 0`` and, with
   ``e_t = g_0.g_t`` and ``a_t = v.g_t``,
   ``b_t = b_{t-1} + c_{t-1} (a_t - b_{t-1} e_t) / (N + c_{t-1} e_t)``, ``c_t = c_{t-1} N / (N + c_{t-1} e_t)``.
   (A true WoodFisher inverse would need ``H_{t-1}^-1 g_t`` in place of ``o``; the reference's shortcut is a rank-one
   correction along the first sample's gradient.) This is reproduced exactly: only the dot products ``e_t`` and
   ``a_t`` of each per-sample gradient are needed, so the chunks of per-sample gradients are streamed and dropped
   (a flat gradient per sample of a ResNet-18 for 1000 samples would not fit), and the recursion runs on scalars.
3. ``theta <- theta + alpha (v - b g_0)``.

Sample order (``sample_order``): the reference walks the retain set in dataset order (``shuffle=False``) and takes
its FIRST samples, which on a class-sorted set means one or two classes; the default ``"random"`` takes a random
subset in random order (from the request's seed); ``"first"`` reproduces the reference.

Defaults are InfluenceUnlearning's ORIGINAL_* constants: alpha 0.2, batch 256; damping 1000 and 1002 samples are the
hard-coded values of ``woodfisher``. Searched: alpha [0, 1] (HP_NORMAL_SIGMA). The reference also searches batch
size, which cannot change the result (fixed here at 256), and ``num_epochs``, which it never reads (not an option).
``chunk_size`` only sets the memory of the vectorised per-sample pass (about chunk_size x the parameter count floats).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch.func import functional_call, grad, vmap

from dcforget.errors import ConfigError
from dcforget.progress import bar
from dcforget.runtime import generator
from dcforget.space import Fixed, Float
from dcforget.train import as_unit

from .base import UnlearnContext, register
from .common import require


def summed_gradient(
    model: torch.nn.Module, images: torch.Tensor, labels: torch.Tensor, batch_size: int, device: torch.device
) -> dict[str, torch.Tensor]:
    """Sum over the samples of d CE / d theta (model in eval mode), by name."""
    params = dict(model.named_parameters())
    total = {k: torch.zeros_like(p) for k, p in params.items()}
    for s in range(0, len(labels), batch_size):
        x, y = as_unit(images[s : s + batch_size].to(device)), labels[s : s + batch_size].to(device)
        gs = torch.autograd.grad(F.cross_entropy(model(x), y, reduction="sum"), list(params.values()))
        for k, g in zip(params, gs):
            total[k] += g
    return total


def woodfisher_coefficients(dots_v: torch.Tensor, dots_g0: torch.Tensor, damping: float) -> tuple[float, float]:
    """The reference recursion on scalars (module docstring): ``(b, c)`` after samples 1..T-1, given
    ``a_t = v.g_t`` and ``e_t = g_0.g_t`` for those samples. ``H^-1 v = v - b g_0``."""
    b, c = 0.0, 1.0
    for a, e in zip(dots_v.double().tolist(), dots_g0.double().tolist()):
        tmp = c * e
        b += c * (a - b * e) / (damping + tmp)
        c -= c * tmp / (damping + tmp)
    return b, c


@register(
    "iu",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/iu.py (from OPTML-Group/Unlearn-Saliency "
    "unlearn/Wfisher.py)",
    summary="influence unlearning: theta += alpha H^-1 v, H^-1 by the WoodFisher recursion on retain",
    space={"alpha": Float(0.0, 1.0), "batch_size": Fixed(256)},
    alpha=0.2,
    batch_size=256,
    damping=1000.0,
    hessian_samples=1002,
    chunk_size=32,
    sample_order="random",
)
def iu(ctx: UnlearnContext):
    o = ctx.options
    require(
        o,
        "iu",
        finite=("alpha",),
        positive_int=("batch_size", "chunk_size", "hessian_samples"),
        positive=("damping",),
        choices={"sample_order": ("random", "first")},
    )
    alpha, damping = float(o["alpha"]), float(o["damping"])
    bs, chunk, samples = int(o["batch_size"]), int(o["chunk_size"]), int(o["hessian_samples"])
    model = ctx.copy_original().eval()
    dev = ctx.device
    xr, yr = ctx.retain()
    xf, yf = ctx.forget()
    nf, nr = len(yf), len(yr)
    if nr == 0 or nf == 0:
        raise ConfigError("iu needs a non-empty forget set and a non-empty retain set")

    # 1. v from the summed forget and retain gradients
    gf = summed_gradient(model, xf, yf, bs, dev)
    gr = summed_gradient(model, xr, yr, bs, dev)
    v = {k: gf[k] / (nf + nr) - gr[k] * (nf / ((nf + nr) * nr)) for k in gf}
    del gf, gr

    # 2. per-sample retain gradients (eval mode, torch.func), streamed as their dot products with v and g_0
    t = min(samples, nr)
    order = torch.randperm(nr, generator=generator(ctx.seed))[:t] if o["sample_order"] == "random" else torch.arange(t)
    order = order.to(yr.device)
    params = {k: p.detach() for k, p in model.named_parameters()}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def loss_one(ps, x, y):
        return F.cross_entropy(functional_call(model, (ps, buffers), (x.unsqueeze(0),)), y.unsqueeze(0))

    per_sample = vmap(grad(loss_one), in_dims=(None, 0, 0))

    def dot(g: dict[str, torch.Tensor], u: dict[str, torch.Tensor]) -> torch.Tensor:  # [B] = g_b . u
        return sum((g[k] * u[k]).flatten(1).sum(1) for k in u)

    first = order[:1]
    g0 = {k: g[0] for k, g in per_sample(params, as_unit(xr[first].to(dev)), yr[first].to(dev)).items()}
    dots_v, dots_g0 = [], []
    for s in bar(range(1, t, chunk), desc="iu per-sample", quiet=ctx.quiet, unit="chunk"):
        idx = order[s : s + chunk]
        g = per_sample(params, as_unit(xr[idx].to(dev)), yr[idx].to(dev))
        dots_v.append(dot(g, v))
        dots_g0.append(dot(g, g0))
        del g
    cat = lambda xs: torch.cat(xs) if xs else torch.empty(0, device=dev)
    b, c = woodfisher_coefficients(cat(dots_v), cat(dots_g0), damping)

    # 3. theta <- theta + alpha (v - b g_0)
    with torch.no_grad():
        for k, p in model.named_parameters():
            p.add_(alpha * (v[k] - b * g0[k]))
    norm = lambda d: float(torch.sqrt(sum((x.double() ** 2).sum() for x in d.values())))
    ctx.extra.update(
        {
            "forget_size": nf,
            "retain_size": nr,
            "hessian_samples": t,
            "damping": damping,
            "sample_order": o["sample_order"],
            "b": b,
            "c": c,
            "v_norm": norm(v),
            "step_norm": abs(alpha) * norm({k: v[k] - b * g0[k] for k in v}),
        }
    )
    return model
