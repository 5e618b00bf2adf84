"""The experiments layer, above every stage (foundation <- condense <- unlearn <- attacks <- experiments): grids of
jobs from config files (``configs/experiments/SUITE/``), their cached artefacts, and their reports.

``experiments reproduce SUITE --preset P --out DIR`` (also ``unlearn reproduce``) runs a suite; see runner.py."""

from . import kinds  # noqa: F401  (registers the experiment kinds)
from .runner import KINDS, Kind, reproduce

__all__ = ["KINDS", "Kind", "reproduce"]
