"""Module-level job functions for tests/test_jobs.py (workers import them by name)."""

import os
from pathlib import Path

import numpy as np
import torch


def square(spec, context):
    g = torch.Generator().manual_seed(spec["seed"])
    x = torch.randn(spec["n"], generator=g)
    return {"sum": float((x**2).sum()), "x": x, "seed": spec["seed"], "pid": os.getpid()}


def die_once(spec, context):
    """Kills its own process the first time it runs for this spec (a marker file remembers), then succeeds."""
    marker = Path(spec["dir"]) / f"ran-{spec['seed']}"
    count = Path(spec["dir"]) / f"count-{spec['seed']}-{os.getpid()}"
    count.write_text("1")
    if spec.get("die") and not marker.exists():
        marker.write_text("1")
        os.kill(os.getpid(), 9)
    return {"value": spec["seed"] * 2, "arr": np.arange(3) + spec["seed"]}


def boom(spec, context):
    raise ValueError("a bug in the job")
