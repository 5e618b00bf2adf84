"""Hyperparameter search spaces, declared with each method (``unlearn.methods.base.register(space=...)``) and read
by the search (``experiments.hpsearch``, Optuna). Declaring is separate from sampling: a space is plain data (no
Optuna import here), a sampler turns it into trials, and ``resolve`` fixes the bounds that depend on the run (an
epoch range is a fraction of the original's training epochs, as in Deep Unlearn).

Deep Unlearn's shared ranges (``munl/settings.py``; ../shared/reference/unlearning-methods.md §1.2) are ``SHARED``:
lr and weight decay log-uniform in [1e-5, 1e-1], momentum fixed at 0.9, batch size in {64, 128, 256}, epochs an
integer in [1, ceil(0.2 x the original's training epochs)]. A method's space is the shared entries for the options
it has, then its own entries (which override a shared one of the same name)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Union

from .errors import ConfigError


@dataclass(frozen=True)
class Float:
    low: float
    high: float
    log: bool = False

    def __post_init__(self) -> None:
        if not (math.isfinite(self.low) and math.isfinite(self.high) and self.low <= self.high):
            raise ValueError(f"Float range needs low <= high, got {self.low}, {self.high}")
        if self.log and self.low <= 0:
            raise ValueError("a log-uniform range needs low > 0")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "float", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Int:
    low: int
    high: int
    log: bool = False

    def __post_init__(self) -> None:
        if not self.low <= self.high:
            raise ValueError(f"Int range needs low <= high, got {self.low}, {self.high}")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "int", "low": self.low, "high": self.high, "log": self.log}


@dataclass(frozen=True)
class Epochs:
    """An epoch count in [low, ceil(fraction x the original's training epochs)] (Deep Unlearn: fraction 0.2, so 37
    for CIFAR's 182 epochs, 10 for MNIST's 50). ``resolve`` turns it into an ``Int``."""

    fraction: float = 0.2
    low: int = 1

    def bounds(self, train_epochs: int) -> Int:
        return Int(self.low, max(self.low, math.ceil(self.fraction * train_epochs)))

    def to_dict(self) -> dict[str, Any]:
        return {"type": "epochs", "fraction": self.fraction, "low": self.low}


@dataclass(frozen=True)
class Choice:
    values: tuple

    def __post_init__(self) -> None:
        if not self.values:
            raise ValueError("Choice needs at least one value")

    def to_dict(self) -> dict[str, Any]:
        return {"type": "choice", "values": list(self.values)}


@dataclass(frozen=True)
class Fixed:
    """Not searched: the search sets this value (e.g. Deep Unlearn's momentum 0.9, or FT's SGD where the toolkit's
    own default is DC-U's Adam)."""

    value: Any

    def to_dict(self) -> dict[str, Any]:
        return {"type": "fixed", "value": self.value}


Dimension = Union[Float, Int, Epochs, Choice, Fixed]
Space = dict[str, Dimension]

SHARED: Space = {
    "lr": Float(1e-5, 1e-1, log=True),
    "weight_decay": Float(1e-5, 1e-1, log=True),
    "momentum": Fixed(0.9),
    "batch_size": Choice((64, 128, 256)),
    "epochs": Epochs(0.2),
}


def method_space(defaults: dict[str, Any], own: Space | None, shared: bool = True) -> Space:
    """The space a method declares: SHARED's entries for the options it has (when ``shared``), then its own.
    Every entry must name one of its options."""
    out: Space = {k: v for k, v in SHARED.items() if k in defaults} if shared else {}
    out.update(own or {})
    unknown = sorted(set(out) - set(defaults))
    if unknown:
        raise ValueError(f"search space names option(s) the method does not have: {', '.join(unknown)}")
    return out


def resolve(space: Space, train_epochs: int) -> Space:
    """The space with run-dependent bounds fixed (``Epochs`` -> ``Int``)."""
    if not (isinstance(train_epochs, int) and train_epochs >= 1):
        raise ConfigError(f"the original's training epochs must be a positive integer, got {train_epochs!r}")
    return {k: (v.bounds(train_epochs) if isinstance(v, Epochs) else v) for k, v in space.items()}


def describe(space: Space) -> dict[str, dict[str, Any]]:
    """JSON-ready form, for reports and tuned-config provenance."""
    return {k: v.to_dict() for k, v in space.items()}
