"""K-means buckets per class in a model's feature space (docs/reference/dcu.md §2): bucket ids are class-major, cluster order
within a class."""

from __future__ import annotations

import torch

from dcforget.errors import ConfigError
from dcforget.kmeans import kmeans
from dcforget.progress import bar

from .methods.base import Buckets


def kmeans_buckets(
    features: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    clusters: int,
    *,
    seed: int,
    iters: int = 100,
    quiet: bool = False,
) -> Buckets:
    counts = torch.bincount(labels.cpu(), minlength=num_classes)
    small = [c for c in range(num_classes) if 0 < counts[c] < clusters]
    if small:
        c = small[0]
        raise ConfigError(f"--clusters {clusters} exceeds the {int(counts[c])} training images of class {c}")
    bucket_of = torch.empty(len(labels), dtype=torch.long)
    bucket_label = []
    next_id = 0
    for c in bar(range(num_classes), desc="k-means", quiet=quiet, unit="class"):
        rows = torch.nonzero(labels == c).flatten()
        if len(rows) == 0:
            continue
        _, assign, _ = kmeans(features[rows], clusters, seed=seed * 1_000_003 + c, iters=iters)
        bucket_of[rows.cpu()] = assign.cpu() + next_id
        bucket_label += [c] * clusters
        next_id += clusters
    return Buckets.from_assignment(bucket_of, next_id, torch.tensor(bucket_label, dtype=torch.long))
