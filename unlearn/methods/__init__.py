"""Unlearning methods (one file each); importing the package registers them."""

from . import condensed, finetune, gradient_ascent, neggrad_plus, retrain  # noqa: F401
from .base import METHODS, Method, UnlearnContext

DEFAULT_METHOD = "condensed"

__all__ = ["METHODS", "Method", "UnlearnContext", "DEFAULT_METHOD"]
