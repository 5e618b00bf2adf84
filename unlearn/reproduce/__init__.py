"""`unlearn reproduce`: a paper's experiments from config files (runner.py), one module per experiment kind."""

from . import condensation, defense, successive, unlearn_grid  # noqa: F401  (each registers its experiment kind)
from .runner import KINDS, Kind, reproduce

__all__ = ["KINDS", "Kind", "reproduce"]
