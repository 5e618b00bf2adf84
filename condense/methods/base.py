"""What every condenser receives and returns, and the bucket (CSR) structure they share."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from dcforget.datasets import DatasetInfo
from dcforget.models import Classifier
from dcforget.registry import Registry


@dataclass
class Buckets:
    """CSR: bucket j holds training positions ``indices[indptr[j]:indptr[j+1]]`` (sorted), all of class
    ``label[j]``."""

    indptr: torch.Tensor  # int64 [B + 1]
    indices: torch.Tensor  # int64 [nnz]
    label: torch.Tensor  # int64 [B]

    def __len__(self) -> int:
        return int(self.label.shape[0])

    @property
    def sizes(self) -> torch.Tensor:
        return self.indptr[1:] - self.indptr[:-1]

    def owner(self) -> torch.Tensor:
        """The bucket of each CSR entry: int64 [nnz]."""
        return torch.repeat_interleave(torch.arange(len(self), device=self.indptr.device), self.sizes)

    @staticmethod
    def from_assignment(
        bucket_of: torch.Tensor, num_buckets: int, label: torch.Tensor, members: torch.Tensor | None = None
    ) -> "Buckets":
        """From one bucket id per member (members default to positions 0..N-1)."""
        bucket_of = bucket_of.cpu().long()
        members = torch.arange(len(bucket_of)) if members is None else members.cpu().long()
        order = torch.argsort(bucket_of * (int(members.max()) + 1 if len(members) else 1) + members)
        counts = torch.bincount(bucket_of, minlength=num_buckets)
        indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])
        return Buckets(indptr, members[order], label.cpu().long())

    def padded(self, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
        """[B, M] member positions (0 where padded) and the [B, M] validity mask, M = largest bucket."""
        sizes = self.sizes.to(device)
        m = int(sizes.max()) if len(self) else 0
        pos = torch.arange(m, device=device)[None, :]
        mask = pos < sizes[:, None]
        flat = (self.indptr[:-1].to(device)[:, None] + pos).clamp_max(max(len(self.indices) - 1, 0))
        idx = torch.where(mask, self.indices.to(device)[flat], torch.zeros_like(flat))
        return idx, mask


@dataclass
class CondenseJob:
    images: torch.Tensor  # uint8 [N, C, H, W], the (capped) training set, on the device
    labels: torch.Tensor  # int64 [N]
    info: DatasetInfo
    device: torch.device
    seed: int
    options: dict[str, Any]
    model: Classifier | None = None  # the embedder (frozen, eval mode)
    features: torch.Tensor | None = None  # [N, D] embeddings of the training set by ``model``
    buckets: Buckets | None = None  # for bucket-based methods
    ipc: int = 0  # for per-class methods
    quiet: bool = False


@dataclass
class Condensed:
    images: torch.Tensor  # float32 [M, C, H, W], [0,1] pixel space
    buckets: Buckets  # row j of images stands for bucket j
    source_indices: torch.Tensor  # int64 [M], -1 for synthetic rows
    influence: str  # "bucket" | "class" | "global" (see dcforget.condensed)
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)
    pixel_range: str = "unit"  # "unit": images in [0,1]; "unconstrained" where a method option lets them leave it


@dataclass(frozen=True)
class Condenser:
    run: Callable[[CondenseJob], Condensed]
    bucket_based: bool  # one image per K-means bucket (--clusters) rather than --ipc per class
    defaults: dict[str, Any]
    summary: str


CONDENSERS: Registry[Condenser] = Registry("condensation method")


def register(name: str, *, bucket_based: bool, summary: str, **defaults: Any):
    def deco(fn: Callable[[CondenseJob], Condensed]) -> Callable[[CondenseJob], Condensed]:
        CONDENSERS.register(name)(Condenser(fn, bucket_based, defaults, summary))
        return fn

    return deco


def whole_class_buckets(labels: torch.Tensor, chosen_labels: torch.Tensor) -> Buckets:
    """Buckets for images that depend on their whole class (influence "class"): image j's bucket is every
    training position of class ``chosen_labels[j]`` (what the condensed-set reader requires of such a file)."""
    labels, chosen_labels = labels.cpu(), chosen_labels.cpu().long()
    per_class = {int(c): torch.nonzero(labels == c).flatten() for c in torch.unique(chosen_labels).tolist()}
    members = [per_class[int(c)] for c in chosen_labels.tolist()]
    sizes = torch.tensor([len(m) for m in members], dtype=torch.long)
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)])
    return Buckets(indptr, torch.cat(members) if members else torch.zeros(0, dtype=torch.long), chosen_labels)


def nearest_assignment(features: torch.Tensor, labels: torch.Tensor, chosen: torch.Tensor) -> Buckets:
    """Buckets for per-class selections: every training image joins the chosen image of its class nearest to
    it in feature space (a chosen image joins itself)."""
    n = len(labels)
    bucket_of = torch.empty(n, dtype=torch.long, device=labels.device)
    chosen_labels = labels[chosen]
    for c in torch.unique(chosen_labels).tolist():
        rows = torch.nonzero(labels == c).flatten()
        cand = torch.nonzero(chosen_labels == c).flatten()
        d = torch.cdist(features[rows].float(), features[chosen[cand]].float())
        d[(rows[:, None] == chosen[cand][None, :])] = -1.0  # a chosen image always stands for itself
        bucket_of[rows] = cand[d.argmin(1)]
    return Buckets.from_assignment(bucket_of, len(chosen), chosen_labels)
