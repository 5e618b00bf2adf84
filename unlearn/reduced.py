"""The reduced retain set of an unlearning request (docs/reference/dcu.md §2.4), vectorised, with an audit computed from data.

A condensed image is *clean* when no forget sample can have influenced it: for influence "bucket" none of its
bucket's members is forgotten (and it is not itself a copy of a forgotten image); for "class" (DM, herding) no
training image of its class (by the training labels, not by what its bucket holds); for "global" (MI's shared
generator) no image may be forgotten at all. Clean condensed images stand in for their buckets; every retain image
not represented by a clean condensed image is used as itself.
Forget samples never enter, and ``audit`` re-derives that from the assembled set. That audit shares this module's
masks and helpers; the request also runs ``unlearn.audit``, which does not, on what a method is actually served.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from dcforget.condensed_store import CondensedSet
from dcforget.errors import ForgetSpecError, TrainingSetMismatchError
from dcforget.pairing import check_pairing


@dataclass
class ReducedSet:
    real_indices: torch.Tensor  # sorted training positions used as real images
    condensed_rows: torch.Tensor  # rows of the condensed set used
    audit: dict[str, Any]


def _owner(cs: CondensedSet) -> torch.Tensor:
    return torch.repeat_interleave(torch.arange(len(cs)), cs.bucket_sizes())


def assemble_reduced(
    cs: CondensedSet,
    forget: torch.Tensor,
    train_size: int,
    fingerprint: str | None = None,
    labels: torch.Tensor | None = None,
) -> ReducedSet:
    """forget: training positions (sorted, unique). The retain set is the complement within ``train_size``.
    ``labels`` (the training labels) are needed for a class-influence set: every condensed image of a class with a
    forget sample is touched, whatever its bucket holds."""
    if cs.train_size != train_size:
        raise TrainingSetMismatchError(
            f"the condensed set was built from a training set of {cs.train_size} images, "
            f"not this request's {train_size}"
        )
    check_pairing(cs, where="the condensed set", fingerprint=fingerprint)
    if cs.influence == "class" and (labels is None or len(labels) != train_size):
        raise ForgetSpecError("a class-influence condensed set needs the training labels to assemble the reduced set")
    is_forget = torch.zeros(train_size, dtype=torch.bool)
    is_forget[forget] = True
    owner = _owner(cs)
    touched = torch.zeros(len(cs), dtype=torch.bool).index_put_((owner,), is_forget[cs.bucket_indices], accumulate=True)
    touched |= (cs.source_indices >= 0) & is_forget[cs.source_indices.clamp_min(0)]
    if cs.influence == "global" and bool(is_forget.any()):
        touched[:] = True
    if cs.influence == "class":  # e.g. DM: an image depends on every image of its class
        forgotten_class = torch.zeros(max(cs.num_classes, int(labels.max()) + 1), dtype=torch.bool)
        forgotten_class[labels.cpu()[is_forget]] = True
        touched |= forgotten_class[cs.labels]
    clean = ~touched
    covered = torch.zeros(train_size, dtype=torch.bool)
    covered[cs.bucket_indices[clean[owner]]] = True  # represented by a clean condensed image
    real = torch.nonzero(~covered & ~is_forget).flatten()
    rows = torch.nonzero(clean).flatten()
    return ReducedSet(real, rows, audit_reduced(cs, real, rows, is_forget))


def audit_reduced(cs: CondensedSet, real: torch.Tensor, rows: torch.Tensor, is_forget: torch.Tensor) -> dict[str, Any]:
    """Facts about the assembled set, recomputed from it: sizes, and that no forget sample is used directly or
    through a condensed image (its bucket members, its source image, or its influence scope)."""
    owner = _owner(cs)
    used_row = torch.zeros(len(cs), dtype=torch.bool)
    used_row[rows] = True
    used_entries = used_row[owner]
    members_of_used = cs.bucket_indices[used_entries]
    src = cs.source_indices[rows]
    retain_size = int((~is_forget).sum())
    represented = torch.zeros(len(is_forget), dtype=torch.bool)
    represented[members_of_used] = True
    represented[real] = True
    checks = {
        "no_forget_sample_used_directly": not bool(is_forget[real].any()),
        "no_forget_sample_in_a_used_bucket": not bool(is_forget[members_of_used].any()),
        "no_used_condensed_image_copies_a_forget_sample": not bool(((src >= 0) & is_forget[src.clamp_min(0)]).any()),
        "global_influence_not_used_after_forgetting": not (
            cs.influence == "global" and len(rows) > 0 and bool(is_forget.any())
        ),
        "every_retain_sample_represented": bool(represented[~is_forget].all()),
    }
    size = len(real) + len(rows)
    return {
        "forget_size": int(is_forget.sum()),
        "retain_size": retain_size,
        "buckets": len(cs),
        "buckets_touched": len(cs) - len(rows),
        "condensed_images_used": len(rows),
        "real_images_used": len(real),
        "reduced_size": size,
        "ratio_to_retain": size / max(retain_size, 1),
        "influence": cs.influence,
        "condensed_method": cs.method,
        "checks": checks,
        "passed": all(checks.values()),
    }
