"""Condenser registry. Importing this package registers every method (one file each)."""

from . import coreset, dm, fdm, mi  # noqa: F401  (registration side effects)
from .base import CONDENSERS, Buckets, Condensed, CondenseJob, Condenser

__all__ = ["CONDENSERS", "Buckets", "Condensed", "CondenseJob", "Condenser"]
