"""Top-K / Random-k fine-grained parameter perturbation (Zuo, Tang, Li, Datta, "Machine Unlearning Through
Fine-Grained Model Parameters Perturbation", IEEE TKDE 2025, arXiv 2401.04385; ../shared/reference/more-methods.md
§7). No code was published: this is OUR RECONSTRUCTION from the abstract (perturb only the Top-K, or k random,
parameters rather than all), and its report says so. Zero-shot: it reads the forget set and the model only.

1. Mask: g = the gradient of the mean cross-entropy over the whole forget set at the original weights (computed in
   chunks of ``batch_size``). ``selection="topk"`` keeps the ``fraction`` of entries with the largest |g| --
   ``scope="layer"``: that fraction of every parameter tensor (global Top-K piles into the last layers),
   ``"global"``: over all parameters at once; ``selection="random"`` keeps the same number of entries drawn
   uniformly (the control the paper compares against; same k, same scope).
2. Masked gradient ascent: ``theta <- theta + lr * (M * g)``, g recomputed on the forget set each step, for at most
   ``steps`` steps, stopping early once forget accuracy is at most ``target_forget_acc`` (default 0: run every step).
   Only masked entries ever change.

Defaults (ours, to be replaced by the benchmark's validation tuning): fraction 0.01, layer scope, lr 0.01, 20 steps.
Searched: fraction, lr and steps.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dcforget.runtime import generator
from dcforget.space import Choice, Fixed, Float, Int
from dcforget.train import as_unit

from .base import UnlearnContext, register
from .common import require


def check(o: dict) -> None:
    require(
        o,
        "topk-perturb",
        positive_int=("steps", "batch_size"),
        positive=("lr",),
        fraction=("target_forget_acc",),
        choices={"selection": ("topk", "random"), "scope": ("layer", "global")},
    )
    if "fraction" in o:
        require(o, "topk-perturb", positive=("fraction",), fraction=("fraction",))


def forget_gradient(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch_size: int) -> tuple[dict, float]:
    """(gradient of the mean CE over all of (x, y) by parameter name, accuracy on it), model in eval mode."""
    model.eval()
    params = dict(model.named_parameters())
    grads = {n: torch.zeros_like(p) for n, p in params.items()}
    correct = 0
    for lo in range(0, len(y), batch_size):
        logits = model(as_unit(x[lo : lo + batch_size]))
        yb = y[lo : lo + batch_size]
        loss = F.cross_entropy(logits, yb, reduction="sum") / len(y)
        for (n, _), g in zip(params.items(), torch.autograd.grad(loss, list(params.values()), allow_unused=True)):
            if g is not None:
                grads[n] += g
        correct += int((logits.argmax(1) == yb).sum())
    return grads, correct / max(len(y), 1)


def make_mask(
    grads: dict[str, torch.Tensor], fraction: float, selection: str, scope: str, gen: torch.Generator
) -> dict[str, torch.Tensor]:
    """Bool masks by name: the ``fraction`` of entries to perturb (at least one per tensor in layer scope)."""
    if scope == "layer":
        masks = {}
        for n, g in grads.items():
            k = max(1, round(fraction * g.numel()))
            score = g.abs().flatten() if selection == "topk" else torch.rand(g.numel(), generator=gen).to(g.device)
            m = torch.zeros(g.numel(), dtype=torch.bool, device=g.device)
            m[torch.topk(score, k).indices] = True
            masks[n] = m.view_as(g)
        return masks
    flat = torch.cat([g.abs().flatten() for g in grads.values()])
    k = max(1, round(fraction * flat.numel()))
    score = flat if selection == "topk" else torch.rand(flat.numel(), generator=gen).to(flat.device)
    m = torch.zeros(flat.numel(), dtype=torch.bool, device=flat.device)
    m[torch.topk(score, k).indices] = True
    out, at = {}, 0
    for n, g in grads.items():
        out[n] = m[at : at + g.numel()].view_as(g)
        at += g.numel()
    return out


@register(
    "topk-perturb",
    reference="Zuo et al., IEEE TKDE 2025, arXiv 2401.04385 (no code published: our reconstruction)",
    zero_shot=True,
    validate=check,
    shared_space=False,
    summary="Top-K / Random-k parameter perturbation: gradient ascent on the forget set restricted to the "
    "parameters with the largest forget gradient (or k random ones); our reconstruction, no "
    "published code (zero-shot)",
    space={
        "fraction": Float(1e-4, 0.1, log=True),
        "lr": Float(1e-4, 1.0, log=True),
        "steps": Int(1, 50),
        "selection": Fixed("topk"),
        "scope": Choice(("layer", "global")),
        "batch_size": Fixed(256),
        "target_forget_acc": Fixed(0.0),
    },
    fraction=0.01,
    selection="topk",
    scope="layer",
    lr=0.01,
    steps=20,
    target_forget_acc=0.0,
    batch_size=256,
)
def topk_perturb(ctx: UnlearnContext):
    o = ctx.options
    check(o)
    model = ctx.copy_original()
    x, y = ctx.forget()
    bs = int(o["batch_size"])
    grads, acc = forget_gradient(model, x, y, bs)
    masks = make_mask(grads, float(o["fraction"]), o["selection"], o["scope"], generator(ctx.seed))
    params = dict(model.named_parameters())
    steps = 0
    while steps < int(o["steps"]) and acc > float(o["target_forget_acc"]):
        with torch.no_grad():
            for n, p in params.items():
                p.add_(float(o["lr"]) * grads[n] * masks[n])
        steps += 1
        grads, acc = forget_gradient(model, x, y, bs)
    ctx.extra.update(
        reconstruction=True,
        steps=steps,
        forget_acc_after=acc,
        perturbed_entries=int(sum(int(m.sum()) for m in masks.values())),
        parameters=int(sum(p.numel() for p in params.values())),
    )
    return model.eval()
