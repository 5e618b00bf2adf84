"""Helpers shared by the unlearning methods (one implementation each): option checks, shuffled batches, per-epoch
learning rates, SGD from a method's options, the training loops, per-epoch seeds, and layer lookups."""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from dcforget.errors import ConfigError
from dcforget.progress import bar
from dcforget.runtime import generator, seeded
from dcforget.train import as_unit, batch_bounds

LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels, inputs) -> loss


# ------------------------------------------------------------------ options
def number(
    o: dict[str, Any],
    key: str,
    kind: type = float,
    low: float | None = None,
    high: float | None = None,
    *,
    low_open: bool = False,
    high_open: bool = False,
    name: str = "",
) -> Any:
    """Option ``key`` as ``kind`` (``int``: an int, as ``TrainConfig`` wants; ``float``: any finite int or float;
    bools are neither) in [low, high] (``low_open`` / ``high_open``: that end excluded), else ConfigError; ``name``
    prefixes the message."""
    v = o[key]
    ok = isinstance(v, int if kind is int else (int, float)) and not isinstance(v, bool) and math.isfinite(v)
    if ok:
        v = kind(v)
        ok = (low is None or (v > low if low_open else v >= low)) and (
            high is None or (v < high if high_open else v <= high)
        )
    if ok:
        return v
    if low is not None and high is not None:
        rng = f" in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}"
    elif low is not None:
        rng = f" {'>' if low_open else '>='} {low}"
    elif high is not None:
        rng = f" {'<' if high_open else '<='} {high}"
    else:
        rng = ""
    noun = "an integer" if kind is int else "a number"
    raise ConfigError(f"{name + ': ' if name else ''}option {key} must be {noun}{rng}, got {o[key]!r}")


def require(
    o: dict[str, Any],
    name: str = "",
    *,
    positive_int: Iterable[str] = (),
    nonneg_int: Iterable[str] = (),
    positive: Iterable[str] = (),
    nonneg: Iterable[str] = (),
    momentum: Iterable[str] = (),
    fraction: Iterable[str] = (),
    finite: Iterable[str] = (),
    flags: Iterable[str] = (),
    choices: dict[str, tuple[str, ...]] | None = None,
) -> None:
    """ConfigError for the first option present in ``o`` that is out of its range: integers >= 1 / >= 0, numbers
    > 0 / >= 0, in [0, 1) (momentum) / [0, 1] (fraction), any finite number, true/false, one of ``choices[key]``.
    Absent options are skipped, so this serves both ``register(validate=...)`` (the options a user gave) and the
    method's own check of the merged options."""
    ranges = [
        (positive_int, int, 1, None, False, False),
        (nonneg_int, int, 0, None, False, False),
        (positive, float, 0, None, True, False),
        (nonneg, float, 0, None, False, False),
        (momentum, float, 0, 1, False, True),
        (fraction, float, 0, 1, False, False),
        (finite, float, None, None, False, False),
    ]
    for keys, kind, low, high, low_open, high_open in ranges:
        for k in keys:
            if k in o:
                number(o, k, kind, low, high, low_open=low_open, high_open=high_open, name=name)
    prefix = f"{name}: " if name else ""
    for k in flags:
        if k in o and not isinstance(o[k], bool):
            raise ConfigError(f"{prefix}option {k} must be true or false, got {o[k]!r}")
    for k, allowed in (choices or {}).items():
        if k in o and o[k] not in allowed:
            names = ", ".join(allowed[:-1]) + f" or {allowed[-1]}" if len(allowed) > 1 else allowed[0]
            raise ConfigError(f"{prefix}option {k} must be {names}, got {o[k]!r}")


SGD_OPTIONS = {
    "positive_int": ("epochs", "batch_size"),
    "positive": ("lr",),
    "nonneg": ("weight_decay",),
    "momentum": ("momentum",),
}


def check_sgd_options(o: dict[str, Any], name: str = "", **more: Any) -> None:
    """``require`` for the shared SGD options (epochs and batch_size integers >= 1, lr > 0, weight_decay >= 0,
    momentum in [0, 1)) plus the ``require`` groups in ``more``."""
    groups: dict[str, Any] = dict(SGD_OPTIONS)
    for k, v in more.items():
        groups[k] = groups[k] + tuple(v) if k in groups else v
    require(o, name, **groups)


# ------------------------------------------------------------------ batches, schedules, optimisers, seeds
PORT_BATCHES = "partial"
"""How the methods' own loops (ports of references) cut an epoch: as the references' DataLoaders do (full batches
and the remainder), so a port keeps its reference's steps; ``fit`` and the batched trainer cut even batches
(``dcforget.train.batch_bounds``, reports/tail-batch-paper)."""


def num_batches(n: int, batch_size: int, batches: str = PORT_BATCHES) -> int:
    """How many batches ``batch_bounds`` / ``shuffled_batches`` make of ``n`` rows."""
    return len(batch_bounds(n, batch_size, batches)) - 1


def shuffled_batches(
    n: int, batch_size: int, gen: torch.Generator, device: torch.device, batches: str = PORT_BATCHES
) -> list[torch.Tensor]:
    """One shuffled pass over ``n`` rows (``randperm`` from ``gen``), as index tensors on ``device``, cut as the
    references' loaders cut it (``PORT_BATCHES``) unless ``batches`` says otherwise."""
    perm = torch.randperm(n, generator=gen).to(device)
    bounds = batch_bounds(n, batch_size, batches)
    return [perm[a:b] for a, b in zip(bounds[:-1], bounds[1:])]


def cosine_per_epoch(lr: float, epochs: int) -> list[float]:
    """``CosineAnnealingLR(T_max=epochs)`` stepped once per epoch: the lr of epochs 0..E-1."""
    return [lr * 0.5 * (1.0 + math.cos(math.pi * e / epochs)) for e in range(epochs)]


def step_decay_lr(epoch: int, epochs: int, lr: float, rate: float) -> float:
    """SCRUB's ``adjust_learning_rate``: ``lr * rate ** #{m in [int(.5E), int(.8E), int(.9E)] : epoch > m}``.
    The caller's epoch numbering matters: the SCRUB port counts from 1, CF-k / EU-k (``fk_finetune``) from 0."""
    return lr * rate ** sum(epoch > m for m in (int(epochs * 0.5), int(epochs * 0.8), int(epochs * 0.9)))


def epoch_seeds(seed: int, n: int) -> list[int]:
    """One data-order / dropout seed per epoch, drawn from the request's seed (for per-epoch ``fit`` calls)."""
    return torch.randint(0, 2**31 - 1, (max(n, 1),), generator=generator(seed)).tolist()[:n]


def sgd(model: nn.Module, o: dict[str, Any], prefix: str = "", *, lr: float | None = None) -> torch.optim.SGD:
    """SGD over all of ``model``'s parameters from options ``{prefix}lr``, ``{prefix}momentum``,
    ``{prefix}weight_decay`` (``lr``: use this learning rate instead)."""
    return torch.optim.SGD(
        model.parameters(),
        lr=float(o[f"{prefix}lr"]) if lr is None else lr,
        momentum=float(o[f"{prefix}momentum"]),
        weight_decay=float(o[f"{prefix}weight_decay"]),
    )


def set_lr(opt: torch.optim.Optimizer, lr: float) -> None:
    for group in opt.param_groups:
        group["lr"] = lr


# ------------------------------------------------------------------ training loops
def train_pass(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    opt: torch.optim.Optimizer,
    batches: Iterable[torch.Tensor],
    loss_fn: LossFn,
    *,
    before_step: Callable[[], None] | None = None,
    after_step: Callable[[], None] | None = None,
) -> float:
    """One pass of optimiser steps over ``batches`` (index tensors) of (x, y), model in train mode:
    ``loss_fn(model(xb), yb, xb)`` with ``xb = as_unit(x[idx])``; ``before_step`` runs between backward and the
    step (e.g. to mask gradients), ``after_step`` after it. Returns the SUM of batch loss x batch size."""
    model.train()
    total = torch.zeros((), device=x.device)
    for idx in batches:
        xb, yb = as_unit(x[idx]), y[idx]
        loss = loss_fn(model(xb), yb, xb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if before_step is not None:
            before_step()
        opt.step()
        if after_step is not None:
            after_step()
        total += loss.detach() * len(idx)
    return float(total)


def train_epochs(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    opt: torch.optim.Optimizer,
    lrs: list[float],
    *,
    batch_size: int,
    seed: int,
    device: torch.device,
    loss_fn: LossFn | None = None,
    after_epoch: Callable[[int], None] | None = None,
    before_step: Callable[[], None] | None = None,
    quiet: bool = True,
    desc: str = "train",
) -> list[float]:
    """Train ``model`` (train mode) on (x, y) for ``len(lrs)`` epochs, epoch e at learning rate ``lrs[e]``, in
    shuffled batches; ``after_epoch(e)`` runs after each epoch, inside the seeded block. Data order from
    ``generator(seed)``, dropout and anything ``after_epoch`` draws from the seeded global RNG. Returns the
    per-epoch mean loss. ``before_step`` runs between each backward and its step (``train_pass``). Leaves the
    model in eval mode."""
    loss_fn = loss_fn or (lambda logits, yb, xb: F.cross_entropy(logits, yb))
    gen = generator(seed)
    losses = []
    with seeded(seed, device):
        for e, lr in enumerate(bar(lrs, desc=desc, quiet=quiet, unit="epoch")):
            set_lr(opt, lr)
            batches = shuffled_batches(len(y), batch_size, gen, device)
            total = train_pass(model, x, y, opt, batches, loss_fn, before_step=before_step)
            losses.append(total / max(len(y), 1))
            if after_epoch is not None:
                after_epoch(e)
    model.eval()
    return losses


# ------------------------------------------------------------------ layers
def conv_layers(model: nn.Module) -> list[tuple[str, nn.Conv2d]]:
    """Every ``nn.Conv2d`` of ``model`` with its qualified name, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]


def reset_head(model: nn.Module) -> list[str]:
    """``reset_parameters()`` on every layer of ``model.final.head`` that has one (global RNG: call inside
    ``seeded``); returns their qualified names."""
    names = []
    for n, m in model.final.head.named_modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
            names.append(f"final.head.{n}" if n else "final.head")
    return names
