"""ARU, Attack-and-Reset for Unlearning (Jung, Cho, Hsu, Hockenmaier, "Attack and Reset for Unlearning: Exploiting
Adversarial Noise toward Machine Unlearning through Parameter Re-initialization", arXiv 2401.08998;
../shared/reference/more-methods.md §3). The paper's code was never published ("available at tbd") and its filter
score and threshold cannot be read from it: this is OUR RECONSTRUCTION of its three stages, and its report says so.
(torchunlearn's "ARU", Adversarial Retain-free Unlearning, is a different method.)

1. Attack: untargeted L-inf PGD on each forget image (maximise CE of its label), radius ``eps``, ``pgd_steps`` steps
   of size ``pgd_alpha`` from a uniform random start, images kept in [0, 1].
2. Reset: score every convolutional filter k by ``||d CE(f(x_f + delta), y_f) / d W_k||_1 / numel(W_k)`` (the batch-mean
   loss's gradient, averaged over forget batches), rank all filters of all Conv2d layers together, and re-initialise
   the top ``reset_fraction`` (at least one) -- weight slice and bias entry -- from a freshly initialised model of
   the architecture (a seed derived from the request's, as EU-k's). A network without Conv2d (the MLP) has its
   hidden Linear units scored and reset the same way (rows of every Linear but the classifier's last).
3. Post-unlearning: fine-tune on the retain set (SGD, ``epochs``, constant lr, shuffled batches).

Defaults (ours; the benchmark tunes them on validation): eps 8/255, 10 steps of 2/255, reset 5% of the filters, 2
epochs of SGD lr 0.01 momentum 0.9 weight decay 5e-4, batch 128. Searched: reset_fraction and eps, plus the
shared lr, momentum, weight decay, batch size and epochs.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dcforget.runtime import generator
from dcforget.space import Fixed, Float
from dcforget.train import as_unit

from .base import UnlearnContext, register
from .common import conv_layers, require, sgd, train_epochs


def check(o: dict) -> None:
    require(
        o,
        "aru",
        positive_int=("pgd_steps", "batch_size", "epochs"),
        positive=("eps", "pgd_alpha", "lr"),
        nonneg=("weight_decay",),
        momentum=("momentum",),
        fraction=("reset_fraction",),
    )


def pgd(
    model: nn.Module, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int, gen: torch.Generator
) -> torch.Tensor:
    """Untargeted L-inf PGD (unit-space images), model in eval mode, parameters untouched."""
    delta = (torch.rand(x.shape, generator=gen).to(x.device) * 2 - 1) * eps
    adv = (x + delta).clamp(0, 1)
    for _ in range(steps):
        adv.requires_grad_(True)
        (g,) = torch.autograd.grad(F.cross_entropy(model(adv), y), adv)
        adv = torch.min(torch.max(adv.detach() + alpha * g.sign(), x - eps), x + eps).clamp(0, 1)
    return adv.detach()


def reset_units(model: nn.Module) -> list[tuple[str, nn.Module]]:
    """What ARU scores and resets: every Conv2d (its filters), or, without any, every Linear but the last."""
    convs = conv_layers(model)
    if convs:
        return convs
    linears = [(n, m) for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    return linears[:-1]


@register(
    "aru",
    reference="Jung et al., arXiv 2401.08998 (no code published: our reconstruction; defaults ours where "
    "the paper is silent)",
    validate=check,
    summary="ARU: PGD noise on the forget set scores conv filters, the most forget-specific are re-initialised, "
    "then fine-tuning on the retain set (our reconstruction; no published code)",
    space={
        "reset_fraction": Float(0.005, 0.3, log=True),
        "eps": Float(1 / 255, 16 / 255, log=True),
        "pgd_steps": Fixed(10),
        "pgd_alpha": Fixed(2 / 255),
    },
    eps=8 / 255,
    pgd_steps=10,
    pgd_alpha=2 / 255,
    reset_fraction=0.05,
    epochs=2,
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    batch_size=128,
)
def aru(ctx: UnlearnContext):
    o = ctx.options
    check(o)
    model = ctx.copy_original().eval()
    layers = reset_units(model)
    xf, yf = ctx.forget()
    bs = int(o["batch_size"])
    gen = generator(ctx.derived_seed("aru-pgd"))
    scores = {n: torch.zeros(m.weight.shape[0], device=ctx.device) for n, m in layers}
    batches = 0
    for lo in range(0, len(yf), bs):
        x, y = as_unit(xf[lo : lo + bs]).to(ctx.device), yf[lo : lo + bs]
        adv = pgd(model, x, y, float(o["eps"]), float(o["pgd_alpha"]), int(o["pgd_steps"]), gen)
        grads = torch.autograd.grad(F.cross_entropy(model(adv), y), [m.weight for _, m in layers])
        for (n, m), g in zip(layers, grads):
            scores[n] += g.abs().flatten(1).sum(1) / g[0].numel()
        batches += 1
    flat = torch.cat([s / max(batches, 1) for s in scores.values()])
    k = max(1, round(float(o["reset_fraction"]) * len(flat)))
    chosen = torch.zeros(len(flat), dtype=torch.bool, device=flat.device)
    chosen[torch.topk(flat, k).indices] = True
    fresh = ctx.fresh_model(ctx.derived_seed("aru-reset"))
    reset, at = {}, 0
    with torch.no_grad():
        for n, m in layers:
            rows = torch.nonzero(chosen[at : at + m.weight.shape[0]]).flatten()
            at += m.weight.shape[0]
            if len(rows):
                src = fresh.get_submodule(n)
                m.weight[rows] = src.weight[rows]
                if m.bias is not None:
                    m.bias[rows] = src.bias[rows]
                reset[n] = len(rows)
    xr, yr = ctx.retain()
    train_epochs(
        model,
        xr,
        yr,
        sgd(model, o),
        [float(o["lr"])] * int(o["epochs"]),
        batch_size=bs,
        seed=ctx.seed,
        device=ctx.device,
        quiet=ctx.quiet,
        desc="aru fine-tune",
    )
    ctx.extra.update(
        reconstruction=True,
        units="filters" if conv_layers(model) else "linear units",
        reset=reset,
        reset_total=k,
        scored=len(flat),
    )
    return model
