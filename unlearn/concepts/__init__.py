"""Concepts of a trained classifier: concept banks (CAVs learned from example sets, or discovered without any
external model), a post-hoc concept bottleneck model over them, and the Integrated-Gradients ranking of each
class's concepts. The poisoning-based class unlearning methods that use them are ``concept-random`` and
``concept-targeted`` (unlearn/methods/)."""

from .bank import ConceptBank, ConceptError, learn_bank, read_bank, read_example_folders, read_example_h5, write_bank
from .discover import discover_bank
from .pcbm import PCBM, fit_pcbm, rank_concepts

__all__ = [
    "ConceptBank",
    "ConceptError",
    "learn_bank",
    "read_bank",
    "read_example_folders",
    "read_example_h5",
    "write_bank",
    "discover_bank",
    "PCBM",
    "fit_pcbm",
    "rank_concepts",
]
