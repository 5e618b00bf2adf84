"""Fisher forgetting (Golatkar et al., "Eternal Sunshine of the Spotless Net", CVPR 2020), with the variance rule of
Unlearn-Sparse's ``fisher_new`` as Deep Unlearn ships it (``munl/unlearning/fisher.py``; docs/reference/unlearning-methods.md
§1.5 item 8; docs/reference/dcu.md row "FF"). No training step.

1. Diagonal Fisher over the retain set, model in eval mode, from PER-SAMPLE gradients (Golatkar's and DC-U's
   batch size 1; Deep Unlearn squares batch-mean gradients, which underestimates F):
   ``F_p = mean_x sum_y p_y(x) * (d CE(f(x), y) / d p)^2`` over all classes y, p_y(x) the (detached) softmax.
2. Per parameter p: ``var = 1 / (F + 1e-8)`` clamped at 1e3, and at 1e2 when ``p.shape[0] == num_classes`` (the
   class-row rule: classifier weight and bias, and any other parameter whose first dimension happens to equal the
   number of classes, exactly as the reference tests it); THEN ``var = alpha * var``; for ``p.ndim > 1`` var is
   averaged over dimension 1 (the input dimension) and broadcast back; ``var *= 10`` for class-row and 1-D
   parameters.
3. ``theta = theta0 + sqrt(var) * N(0, 1)``, drawn in parameter order under the request's seed.

Defaults: ``alpha = 1e-7`` follows Golatkar's code and DC-U's FF baseline (Deep Unlearn/Unlearn-Sparse use 0.2 with
batch 64). ``batch_size`` is only how many samples one vectorised chunk holds (each chunk materialises about
``batch_size`` x (number of parameters) floats a few times); F does not depend on it.

F depends only on the original and the retain images, not on ``alpha``, so the last few are kept in memory, keyed
by a SHA-256 of both: a hyperparameter search (``experiments tune``: 20 alphas x 3 originals in one process)
computes three Fishers instead of sixty. A single request computes it once as before; a request that read it back
says so (``fisher_reused`` in its method report), since its time then leaves the Fisher out.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, vjp, vmap

from dcforget.errors import ConfigError, ForgetSpecError
from dcforget.progress import bar
from dcforget.runtime import seeded
from dcforget.train import as_unit

from dcforget.space import Float

from .base import UnlearnContext, register


def fisher_diagonal(model: nn.Module, images: torch.Tensor, *, batch_size: int = 32,
                    device: torch.device | None = None, quiet: bool = True) -> dict[str, torch.Tensor]:
    """The diagonal Fisher of every trainable parameter of ``model`` (by name) over ``images`` (uint8 or [0,1]
    float, NCHW): ``mean_x sum_y p_y(x) (d CE(f(x), y)/d theta)^2`` with per-sample gradients (``torch.func``:
    one forward and one vector-Jacobian product per class for each sample, vmapped over chunks of
    ``batch_size`` samples). The model is evaluated in eval mode (BatchNorm running statistics, no dropout) and
    left in the mode it came in."""
    if batch_size < 1:
        raise ConfigError(f"fisher batch_size must be >= 1, got {batch_size}")
    n = len(images)
    if n == 0:
        raise ForgetSpecError("fisher needs a non-empty retain set")
    device = device or next(model.parameters()).device
    was = model.training
    model.eval()
    params = {k: p.detach() for k, p in model.named_parameters() if p.requires_grad}
    buffers = {k: b.detach() for k, b in model.named_buffers()}

    def per_sample(ps: dict[str, torch.Tensor], x: torch.Tensor) -> dict[str, torch.Tensor]:
        def log_probs(q: dict[str, torch.Tensor]) -> torch.Tensor:
            return F.log_softmax(functional_call(model, (q, buffers), (x.unsqueeze(0),)), dim=-1).squeeze(0)

        out, pullback = vjp(log_probs, ps)
        prob = out.detach().exp()
        acc = {k: torch.zeros_like(v) for k, v in ps.items()}
        for y in range(out.shape[-1]):  # CE(f(x), y) = -log p_y(x)
            (g,) = pullback(-F.one_hot(torch.tensor(y, device=out.device), out.shape[-1]).to(out.dtype))
            acc = {k: acc[k] + prob[y] * g[k].square() for k in acc}
        return acc

    chunked = vmap(per_sample, in_dims=(None, 0))
    total = {k: torch.zeros_like(v) for k, v in params.items()}
    try:
        for s in bar(range(0, n, batch_size), desc="fisher", quiet=quiet, unit="chunk"):
            xb = as_unit(images[s:s + batch_size].to(device))
            part = chunked(params, xb)
            for k in total:
                total[k] += part[k].sum(0)
    finally:
        model.train(was)
    return {k: v / n for k, v in total.items()}


_CACHE: "OrderedDict[str, dict[str, torch.Tensor]]" = OrderedDict()
CACHE_SIZE = 4


def _digest(model: nn.Module, images: torch.Tensor) -> str:
    h = hashlib.sha256()
    for name, t in [*model.state_dict().items(), ("<images>", images)]:
        t = t.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def cached_fisher(model: nn.Module, images: torch.Tensor, *, batch_size: int, device: torch.device,
                  quiet: bool = True) -> tuple[dict[str, torch.Tensor], bool]:
    """(``fisher_diagonal``, whether it was read back from memory: this model and these images seen recently)."""
    key = _digest(model, images)
    reused = key in _CACHE
    if not reused:
        _CACHE[key] = fisher_diagonal(model, images, batch_size=batch_size, device=device, quiet=quiet)
        while len(_CACHE) > CACHE_SIZE:
            _CACHE.popitem(last=False)
    _CACHE.move_to_end(key)
    return _CACHE[key], reused


def fisher_variance(shape: torch.Size, fisher: torch.Tensor, num_classes: int, alpha: float) -> torch.Tensor:
    """The noise variance of one parameter of ``shape`` from its Fisher diagonal (the rule of ``get_mean_var``)."""
    var = (1.0 / (fisher + 1e-8)).clamp(max=1e3)
    class_rows = len(shape) > 0 and shape[0] == num_classes
    if class_rows:
        var = var.clamp(max=1e2)
    var = alpha * var
    if len(shape) > 1:
        var = var.mean(dim=1, keepdim=True).expand(shape).clone()
    if class_rows or len(shape) == 1:
        var = var * 10
    return var


@register("fisher", summary="add noise scaled by the inverse diagonal Fisher of the retain set (alpha 1e-7)",
          alpha=1e-7, batch_size=32,
          space={"alpha": Float(1e-9, 1.0, log=True)})  # Deep Unlearn searched [0, 1]; the reference rule's 1e-7 is inside
def fisher(ctx: UnlearnContext):
    o = ctx.options
    try:
        alpha, bs = float(o["alpha"]), int(o["batch_size"])
    except (TypeError, ValueError) as err:
        raise ConfigError(f"fisher: bad option value ({err})") from None
    if not alpha >= 0:
        raise ConfigError(f"fisher alpha must be >= 0, got {alpha}")
    model = ctx.copy_original().eval()
    x, _ = ctx.retain()
    fish, ctx.extra["fisher_reused"] = cached_fisher(model, x, batch_size=bs, device=ctx.device, quiet=ctx.quiet)
    k = ctx.data.info.num_classes
    with torch.no_grad(), seeded(ctx.seed, ctx.device):
        for name, p in model.named_parameters():
            if name in fish:
                p.add_(fisher_variance(p.shape, fish[name], k, alpha).sqrt() * torch.randn_like(p))
    return model
