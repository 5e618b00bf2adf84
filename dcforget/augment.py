"""Differentiable siamese augmentation (DSA) with Kornia, in [0,1] pixel space, on the images' device.

DSA's mode 'S': every call picks one family from the strategy and applies only that family. Families (DSA's
ratios, translated to pixel space; docs/reference/condensation.md §1.3, §2):

* ``scale``  Kornia ``RandomAffine`` with independent x/y zoom in [1/1.2, 1.2]
* ``rotate`` Kornia ``RandomAffine`` with an angle in [-15, 15] degrees
* ``crop``   Kornia ``RandomCrop`` after padding by 1/8 of the side (integer translation)
* ``cutout`` Kornia ``RandomErasing`` of a square of half the side
* ``flip``   Kornia ``RandomHorizontalFlip`` (p 0.5)
* ``color``  DSA's brightness -> saturation -> contrast, unclamped so gradients never vanish (Kornia's colour
  ops clamp to [0,1], which zeroes gradients on saturated pixels and changes DSA's definition)

Borders and erased areas are filled with the dataset's mean colour: DSA pads zeros in normalised space, which
is the mean colour. Parameter sampling is separate from application: ``sample(batch)`` draws a family and
its Kornia parameters from the global torch RNG (fork and seed it with ``seed=``), ``apply`` replays them.
Siamese use (real and synthetic batches sharing one draw, as DM and DSA need) concatenates the batches and
draws one parameter set for the whole batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import kornia.augmentation as K
import torch
from torch import nn

from .errors import ConfigError
from .runtime import seeded

FAMILIES = ("color", "crop", "cutout", "flip", "scale", "rotate")
DEFAULT_STRATEGY = "color_crop_cutout_flip_scale_rotate"
DIGITS_STRATEGY = "color_crop_cutout_scale_rotate"  # no flip for digits (DSA README)


class DSAColor(nn.Module):
    """DSA's colour family: brightness shift, saturation and contrast factors, no clamping.

    ``brightness`` is the half-range of the additive shift in pixel units (DSA's 1.0 range in normalised
    units is about +-0.1 in pixel units for CIFAR's std); saturation factor in [0, 2]; contrast in [0.5, 1.5]."""

    def __init__(self, brightness: float = 0.1, saturation: float = 2.0, contrast: float = 0.5) -> None:
        super().__init__()
        self.brightness, self.saturation, self.contrast = brightness, saturation, contrast

    def sample(self, batch: int, same_on_batch: bool, device: torch.device) -> dict[str, torch.Tensor]:
        n = 1 if same_on_batch else batch
        u = torch.rand(n, 3, device=device).expand(batch, 3)
        return {
            "shift": (u[:, 0] - 0.5) * 2 * self.brightness,
            "sat": u[:, 1] * self.saturation,
            "con": u[:, 2] + self.contrast,
        }

    def apply(self, x: torch.Tensor, p: dict[str, torch.Tensor]) -> torch.Tensor:
        v = lambda t: t.view(-1, 1, 1, 1)
        x = x + v(p["shift"])
        if x.shape[1] > 1:
            m = x.mean(dim=1, keepdim=True)
            x = (x - m) * v(p["sat"]) + m
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        return (x - m) * v(p["con"]) + m


def _kornia_ops(image_shape: Sequence[int], mean: Sequence[float], same_on_batch: bool) -> nn.ModuleDict:
    c, h, w = image_shape
    fill = torch.tensor(list(mean), dtype=torch.float32)
    pad = max(1, round(0.125 * h))
    return nn.ModuleDict(
        {
            "scale": K.RandomAffine(
                degrees=0,
                scale=(1 / 1.2, 1.2, 1 / 1.2, 1.2),
                padding_mode="fill",
                fill_value=fill,
                p=1.0,
                same_on_batch=same_on_batch,
            ),
            "rotate": K.RandomAffine(
                degrees=15.0, padding_mode="fill", fill_value=fill, p=1.0, same_on_batch=same_on_batch
            ),
            "crop": K.RandomCrop((h, w), padding=pad, fill=list(mean), p=1.0, same_on_batch=same_on_batch),
            "cutout": K.RandomErasing(
                scale=(0.25, 0.25), ratio=(1.0, 1.0), value=float(fill.mean()), p=1.0, same_on_batch=same_on_batch
            ),
            "flip": K.RandomHorizontalFlip(p=0.5, same_on_batch=same_on_batch),
        }
    )


@dataclass
class AugParams:
    family: str
    params: Any  # Kornia's parameter dict, or DSAColor's


class DSA(nn.Module):
    def __init__(self, image_shape: Sequence[int], mean: Sequence[float], strategy: str = DEFAULT_STRATEGY) -> None:
        super().__init__()
        families = [f for f in strategy.split("_") if f]
        unknown = sorted(set(families) - set(FAMILIES))
        if unknown or not families:
            raise ConfigError(f"unknown DSA family {', '.join(unknown) or '(none)'}; families: {', '.join(FAMILIES)}")
        if len(image_shape) != 3 or len(mean) != image_shape[0]:
            raise ConfigError("DSA needs image_shape (C, H, W) and one mean per channel")
        self.strategy, self.families = strategy, tuple(families)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.color = DSAColor()
        self.per_sample = _kornia_ops(image_shape, mean, same_on_batch=False)
        self.shared = _kornia_ops(image_shape, mean, same_on_batch=True)

    def config(self) -> dict[str, Any]:
        return {"name": "dsa", "backend": "kornia", "strategy": self.strategy, "mode": "one_of", "pixel_space": "unit"}

    def sample(self, shape: torch.Size, *, same_on_batch: bool, device: torch.device) -> AugParams:
        """Draw a family and its parameters from the global torch RNG."""
        family = self.families[int(torch.randint(len(self.families), (1,)))]
        if family == "color":
            return AugParams(family, self.color.sample(shape[0], same_on_batch, device))
        op = (self.shared if same_on_batch else self.per_sample)[family]
        return AugParams(family, op.forward_parameters(shape))

    def apply(self, x: torch.Tensor, p: AugParams) -> torch.Tensor:
        if p.family == "color":
            return self.color.apply(x, p.params)
        return self.per_sample[p.family](x, params=p.params)

    def forward(self, x: torch.Tensor, *, same_on_batch: bool = False, seed: int | None = None) -> torch.Tensor:
        """Augment ``x`` [B,C,H,W] in [0,1]. ``same_on_batch``: one draw for the whole batch (siamese)."""
        if x.dim() != 4 or tuple(x.shape[1:]) != self.image_shape:
            raise ConfigError(
                f"DSA expects images of shape [B,{','.join(map(str, self.image_shape))}], got {tuple(x.shape)}"
            )
        if seed is None:
            return self.apply(x, self.sample(x.shape, same_on_batch=same_on_batch, device=x.device))
        with seeded(seed, x.device):
            return self.apply(x, self.sample(x.shape, same_on_batch=same_on_batch, device=x.device))

    def siamese(self, *batches: torch.Tensor, seed: int | None = None) -> tuple[torch.Tensor, ...]:
        """Augment several batches with one shared parameter draw (by concatenation)."""
        sizes = [b.shape[0] for b in batches]
        out = self(torch.cat(batches), same_on_batch=True, seed=seed)
        return tuple(out.split(sizes))
