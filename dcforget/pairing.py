"""Whether inputs belong together: a checkpoint, a condensed file and a dataset's training set. The one place these
pairings are checked, with one error type per kind of mismatch (dcforget.errors.MismatchError's subclasses)."""

from __future__ import annotations

from typing import Any

from .errors import ArchitectureMismatchError, DatasetMismatchError, TrainingSetMismatchError


def check_pairing(
    made: Any,
    *,
    where: str,
    dataset: str | None = None,
    fingerprint: str | None = None,
    arch: str | None = None,
    image_shape=None,
    num_classes: int | None = None,
) -> None:
    """``made``: what a file was made from, a ``CheckpointMeta`` or a ``CondensedSet`` (``dataset``,
    ``train_fingerprint``, ``num_classes``, ``image_shape``, and ``arch`` for a checkpoint). Each expectation that
    is given must hold, checked from the most telling (dataset, shape) to the training set's fingerprint; ``where``
    names the file in the message."""
    if dataset is not None and dataset != made.dataset:
        raise DatasetMismatchError(f"{where} was made for dataset {made.dataset!r}, not {dataset!r}")
    checks = (
        ("architecture", arch, getattr(made, "arch", None)),
        ("image shape", list(image_shape) if image_shape is not None else None, list(made.image_shape)),
        ("class count", num_classes, made.num_classes),
    )
    for what, want, have in checks:
        if want is not None and want != have:
            raise ArchitectureMismatchError(f"{where} was made for {what} {have!r}, not {want!r}")
    have_fp = getattr(made, "train_fingerprint", None)
    # a checkpoint from before fingerprints were recorded has None; a condensed file always records one
    unrecorded = have_fp is None and hasattr(made, "per_class")
    if fingerprint is not None and have_fp != fingerprint and not unrecorded:
        cap = ""
        if hasattr(made, "per_class"):
            seed = made.data_seed if made.data_seed is not None else made.seed
            cap = f" (it used per_class={made.per_class}, data seed={seed})"
        raise TrainingSetMismatchError(
            f"{where} was made from a different training set: per-class cap, data seed or validation split differ{cap}"
        )
