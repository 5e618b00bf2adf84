"""PNG grids of [0,1] images (PIL comes with torchvision)."""

from __future__ import annotations

import os

import torch

from .io import atomic_path


def save_grid(
    rows: list[torch.Tensor], path: str | os.PathLike, *, columns: int, scale: int = 2, force: bool = False
) -> None:
    """One row per tensor [n, C, H, W] (values clamped to [0,1]), at most ``columns`` images each, 2-pixel gaps."""
    from PIL import Image

    c, h, w = rows[0].shape[1:]
    pad = 2
    grid = torch.ones(3, len(rows) * (h + pad) + pad, columns * (w + pad) + pad)
    for k, imgs in enumerate(rows):
        for j, img in enumerate(imgs[:columns].detach().cpu().float().clamp(0, 1)):
            y, x = pad + k * (h + pad), pad + j * (w + pad)
            grid[:, y : y + h, x : x + w] = img.expand(3, h, w)
    arr = (grid.permute(1, 2, 0).numpy() * 255).round().astype("uint8")
    img = Image.fromarray(arr).resize((arr.shape[1] * scale, arr.shape[0] * scale), Image.NEAREST)
    with atomic_path(path, force=force) as tmp:
        img.save(tmp, format="PNG")
