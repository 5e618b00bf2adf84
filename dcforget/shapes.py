"""A synthetic dataset whose classes are defined by known concepts: a shape, a colour and a texture.

The concept vocabulary has three values of each attribute (:data:`SHAPES`, :data:`COLOURS`, :data:`TEXTURES`).
The 8 classes (:data:`CLASSES`) are every combination of the first two values of each (circle/square, red/green,
solid/stripes), so a class is told from three others by exactly one concept each (class 0, a red solid circle,
differs from class 4 by its shape, from class 2 by its colour, from class 1 by its texture): a classifier has to
see all three, and forgetting one class must spare three classes that share two of its concepts. The third values
(triangle, blue, dots) are in no class: distractor concepts that a ranking must not pick. An image is one object
of its class's shape, colour and texture, at a random position and size, on a noisy grey background; the colour
and the pixel noise are jittered. Because the concepts are known, a concept method can be checked against the
truth: :func:`concept_examples` renders example sets of one concept (the other two attributes drawn at random over
all values) for learning concept activation vectors, and :func:`class_concepts` says which concepts make a class.

Registered as the dataset ``shapes`` (``shapes:train=100,test=40,size=32,noise=0.06,seed=0``; ``train`` and
``test`` are images per class)."""

from __future__ import annotations

import math
from pathlib import Path

import torch

from .datasets import DATASETS, DatasetError, DatasetInfo, DatasetSource, Split

SHAPES = ("circle", "square", "triangle")
COLOURS = ("red", "green", "blue")
TEXTURES = ("solid", "stripes", "dots")
CONCEPTS = SHAPES + COLOURS + TEXTURES
GROUPS = {"shape": SHAPES, "colour": COLOURS, "texture": TEXTURES}
CLASSES = tuple(
    (shape, colour, texture) for shape in SHAPES[:2] for colour in COLOURS[:2] for texture in TEXTURES[:2]
)  # 8 classes: every combination of two shapes, two colours and two textures
CLASS_NAMES = tuple("-".join((c, s, t)) for s, c, t in CLASSES)  # "red-circle-solid"
_RGB = {"red": (0.85, 0.15, 0.12), "green": (0.15, 0.75, 0.2), "blue": (0.15, 0.25, 0.9)}
DEFAULTS = {"train": 100, "test": 40, "size": 32, "noise": 0.06, "seed": 0}


def class_concepts(label: int) -> tuple[str, str, str]:
    """The three concepts (shape, colour, texture) that define class ``label``."""
    if not 0 <= int(label) < len(CLASSES):
        raise DatasetError(f"shapes has classes 0..{len(CLASSES) - 1}, not {label}")
    return CLASSES[int(label)]


def render(
    shape: torch.Tensor, colour: torch.Tensor, texture: torch.Tensor, size: int, noise: float, gen
) -> torch.Tensor:
    """Images (uint8 [N, 3, size, size]) of one object each; the three arguments are int64 [N] indices into
    SHAPES, COLOURS and TEXTURES."""
    n = len(shape)
    s = size
    yy, xx = torch.meshgrid(torch.arange(s, dtype=torch.float32), torch.arange(s, dtype=torch.float32), indexing="ij")
    yy, xx = yy[None], xx[None]
    r = (0.26 + 0.1 * torch.rand(n, generator=gen)) * s  # half-size of the object
    cy = s / 2 + (torch.rand(n, generator=gen) - 0.5) * 0.25 * s
    cx = s / 2 + (torch.rand(n, generator=gen) - 0.5) * 0.25 * s
    dy, dx = (yy - cy[:, None, None]) / r[:, None, None], (xx - cx[:, None, None]) / r[:, None, None]
    masks = torch.stack(
        [
            dy**2 + dx**2 <= 1.0,  # circle
            (dy.abs() <= 0.92) & (dx.abs() <= 0.92),  # square
            (dy <= 0.8) & (dy >= -1.0) & (dx.abs() <= (dy + 1.0) * 0.6),  # triangle, apex up
        ]
    )  # [3, N, s, s]
    mask = masks[shape, torch.arange(n)]
    period = max(3.0, s / 8)
    angle = torch.rand(n, generator=gen) * math.pi
    u = (xx * torch.cos(angle)[:, None, None] + yy * torch.sin(angle)[:, None, None]) / period
    stripes = (u - u.floor()) < 0.5
    dot_y = ((yy - cy[:, None, None]) / period) % 1.0
    dot_x = ((xx - cx[:, None, None]) / period) % 1.0
    dots = ((dot_y - 0.5) ** 2 + (dot_x - 0.5) ** 2) < 0.09
    pattern = torch.stack([torch.zeros_like(stripes), stripes, dots])[texture, torch.arange(n)]  # True = dark
    rgb = torch.tensor([_RGB[c] for c in COLOURS])[colour]  # [N, 3]
    rgb = (rgb + (torch.rand(n, 3, generator=gen) - 0.5) * 0.12).clamp(0, 1)
    fill = rgb[:, :, None, None] * torch.where(pattern, 0.35, 1.0)[:, None]
    bg = 0.35 + 0.3 * torch.rand(n, 1, 1, 1, generator=gen)
    img = torch.where(mask[:, None], fill, bg.expand(n, 3, s, s))
    img = img + torch.randn(n, 3, s, s, generator=gen) * noise
    return (img.clamp(0, 1) * 255).round().to(torch.uint8)


def _options(options: dict[str, str]) -> dict:
    opts = dict(DEFAULTS)
    for key, raw in options.items():
        if key not in opts:
            raise DatasetError(f"unknown shapes dataset option {key!r}; known: {', '.join(opts)}")
        try:
            opts[key] = type(DEFAULTS[key])(raw)
        except ValueError:
            raise DatasetError(f"shapes option {key}={raw!r} is not a {type(DEFAULTS[key]).__name__}") from None
    if not (opts["train"] >= 1 and opts["test"] >= 1 and 16 <= opts["size"] <= 128 and 0 <= opts["noise"] <= 1):
        raise DatasetError("shapes needs train/test >= 1, 16 <= size <= 128 and 0 <= noise <= 1")
    return opts


def _make(per_class: int, opts: dict, gen: torch.Generator) -> Split:
    k = len(CLASSES)
    labels = torch.arange(k).repeat_interleave(per_class)
    table = torch.tensor(
        [[SHAPES.index(s), COLOURS.index(c), TEXTURES.index(t)] for s, c, t in CLASSES], dtype=torch.long
    )
    attrs = table[labels]
    images = render(attrs[:, 0], attrs[:, 1], attrs[:, 2], int(opts["size"]), float(opts["noise"]), gen)
    perm = torch.randperm(len(labels), generator=gen)  # not class-sorted, like real datasets
    return Split(images[perm], labels[perm])


def _load(root: Path, download: bool, options: dict[str, str]):
    opts = _options(options)
    gen = torch.Generator().manual_seed(int(opts["seed"]))
    train, test = _make(int(opts["train"]), opts, gen), _make(int(opts["test"]), opts, gen)
    info = DatasetInfo("shapes", len(CLASSES), (3, opts["size"], opts["size"]), (0.5,) * 3, (0.25,) * 3, CLASS_NAMES)
    return info, train, test


def concept_examples(
    concept: str, n: int, *, size: int = 32, noise: float = 0.06, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor]:
    """(positives, negatives), uint8 [n, 3, size, size] each: ``n`` images that show ``concept`` (the other two
    attributes drawn uniformly over all values) and ``n`` that show another value of the concept's attribute."""
    for group, values in GROUPS.items():
        if concept in values:
            break
    else:
        raise DatasetError(f"shapes has no concept {concept!r}; known: {', '.join(CONCEPTS)}")
    gen = torch.Generator().manual_seed(seed * 7919 + CONCEPTS.index(concept))
    out = []
    for positive in (True, False):
        attrs = [torch.randint(len(v), (n,), generator=gen) for v in GROUPS.values()]
        j = list(GROUPS).index(group)
        me = values.index(concept)
        if positive:
            attrs[j] = torch.full((n,), me)
        else:
            others = torch.tensor([i for i in range(len(values)) if i != me])
            attrs[j] = others[torch.randint(len(others), (n,), generator=gen)]
        out.append(render(*attrs, size, noise, gen))
    return out[0], out[1]


DATASETS.register("shapes")(DatasetSource(_load, "(generated, no files)", takes_options=True))
