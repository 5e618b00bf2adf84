"""The model contract: [0,1] NCHW images in, logits out; normalisation is the first layer.

Every model is a :class:`Classifier` made of DC-U's three parts (reference docs/reference/dcu.md §1.4):
``beginning`` (normalisation + early layers), ``intermediate``, and ``final`` = ``body`` then ``head``.
``features(x)`` is the embedding ``final.body`` produces (the input of ``head``), which K-means buckets and
FDM condensation use.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

import torch
import torch.nn.functional as F
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std per channel; images smaller than ``min_size`` are first resized up to it (bilinear),
    so every architecture accepts any input size."""

    def __init__(self, mean, std, min_size: int = 0) -> None:
        super().__init__()
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1))
        self.min_size = int(min_size)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 4 and min(x.shape[-2:]) < self.min_size:
            h, w = x.shape[-2:]
            scale = self.min_size / min(h, w)
            x = F.interpolate(
                x,
                size=(max(self.min_size, round(h * scale)), max(self.min_size, round(w * scale))),
                mode="bilinear",
                align_corners=False,
            )
        return (x - self.mean) / self.std

    def extra_repr(self) -> str:
        return f"channels={self.mean.shape[1]}, min_size={self.min_size}"


class Final(nn.Module):
    def __init__(self, body: nn.Module, head: nn.Module) -> None:
        super().__init__()
        self.body, self.head = body, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class Classifier(nn.Module):
    def __init__(
        self,
        arch: str,
        config: dict[str, Any],
        beginning: nn.Module,
        intermediate: nn.Module,
        body: nn.Module,
        head: nn.Module,
    ) -> None:
        super().__init__()
        self.arch = arch
        self.config = dict(config)  # everything create_model needs to rebuild this model
        self.beginning, self.intermediate = beginning, intermediate
        self.final = Final(body, head)

    @property
    def normalize(self) -> Normalize:
        return self.beginning[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.final(self.intermediate(self.beginning(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The embedding the head classifies: [N, feature_dim]."""
        return self.final.body(self.intermediate(self.beginning(x))).flatten(1)

    def split(self) -> tuple[nn.Module, nn.Module, nn.Module]:
        """DC-U's (beginning, intermediate, final); applying them in order equals ``forward``."""
        return self.beginning, self.intermediate, self.final

    @property
    def feature_dim(self) -> int:
        return int(self.config["feature_dim"])


@torch.no_grad()
def probe_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Output shape (without batch) of ``module`` for one input of ``shape``, computed in eval mode."""
    was = module.training
    module.eval()
    out = module(torch.zeros(2, *shape))
    module.train(was)
    return tuple(out.shape[1:])


@contextlib.contextmanager
def frozen(model: nn.Module) -> Iterator[nn.Module]:
    """The model in eval mode with every parameter's requires_grad off; both restored afterwards. For
    optimising inputs (condensation, inversion) through a fixed network."""
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    was_training = model.training
    for p in params:
        p.requires_grad_(False)
    model.eval()
    try:
        yield model
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
        model.train(was_training)
