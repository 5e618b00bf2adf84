"""The first run (``unlearn demo``): the ``demo`` suite (configs/experiments/demo/) through the one runner, plus a
picture of the condensed set. One small original on real CIFAR-10, condensed; one forget request (random 10%)
answered by the default method and by retraining; both attacked (population MIA, ROC curves); a short report
with a table and pictures. Resumable like every suite: a rerun reads finished work back."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

import torch

from dcforget.condensed_store import read_condensed
from dcforget.images import save_grid

from .report import append_section
from .runner import reproduce

CONDENSED_COLUMNS = 10  # images per class in the picture


def run_demo(
    out: str | Path,
    *,
    preset: str = "cpu",
    data_dir: str | None = None,
    device: torch.device,
    command: str = "unlearn demo",
    log: Callable[[str], None] = print,
    progress: bool = True,
    force: bool = False,
) -> dict[str, Any]:
    """Run the demo into ``out``; returns the runner's {"meta", "rows"} with ``pictures`` added."""
    out = Path(out)
    res = reproduce(
        "demo", preset, out, device=device, data_dir=data_dir, command=command, log=log, progress=progress, force=force
    )
    files = sorted((out / "artefacts").rglob("fdm-*.h5"))
    pictures = dict(res["meta"].get("figures", {}))
    if files:
        cs = read_condensed(files[0])
        offsets = cs.class_offsets.tolist()
        rows = [cs.images[offsets[k] : offsets[k + 1]] for k in range(cs.num_classes)]
        png = out / "figures" / "condensed.png"
        save_grid(rows, png, columns=CONDENSED_COLUMNS, scale=2, force=True)
        rel = png.relative_to(out).as_posix()
        pictures["condensed"] = rel
        append_section(
            out,
            f"## The condensed set\n\n{len(cs)} synthetic images ({cs.method}, "
            f"{len(cs) // cs.num_classes} per class on average), one per K-means bucket of the "
            f"training set; the first {CONDENSED_COLUMNS} of each class, one row per class."
            f"\n\n![condensed set]({rel})",
        )
    res["pictures"] = pictures
    return res
