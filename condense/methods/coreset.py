"""Coreset baselines: real images chosen from the training set.

``kmeans``  the member nearest each K-means bucket's centroid (one per bucket)
``herding`` per class, greedy selection whose running mean tracks the class mean embedding (Welling; the
            iCaRL/IDC version, argmin)
``random``  per class, ``ipc`` images uniformly at random (seeded)

Influence (which training images can have shaped a row; the unlearning stage drops a row when one of them is
forgotten): ``kmeans`` -- "bucket": the pick is the member nearest its bucket's centroid, a function of the
bucket's members only. ``random`` -- "bucket": the pick depends on no image's content; its bucket (the class's
images nearest it in feature space) is what it stands for. ``herding`` -- "class": every pick is chosen against
the class mean embedding, so any image of the class can change which images are picked; its buckets are the
whole class (each pick stands for its class, shared with the class's other picks).
"""

from __future__ import annotations

import torch

from dcforget.datasets import cap_per_class
from dcforget.train import as_unit

from .base import Condensed, CondenseJob, nearest_assignment, register, whole_class_buckets


def _copy_rows(job: CondenseJob, chosen: torch.Tensor, buckets, influence: str = "bucket") -> Condensed:
    chosen = chosen.to(job.images.device)
    return Condensed(as_unit(job.images[chosen]), buckets, chosen.cpu().long(), influence)


@register("kmeans", bucket_based=True, summary="the real image nearest each K-means bucket centroid")
def kmeans_select(job: CondenseJob) -> Condensed:
    b = job.buckets
    feats = job.features.float()
    owner = b.owner().to(feats.device)
    members = b.indices.to(feats.device)
    cent = torch.zeros(len(b), feats.shape[1], device=feats.device).index_add_(0, owner, feats[members])
    cent /= b.sizes.to(feats.device)[:, None].float()
    d = ((feats[members] - cent[owner]) ** 2).sum(1)
    best = torch.full((len(b),), float("inf"), device=feats.device).scatter_reduce_(0, owner, d, "amin")
    is_best = d == best[owner]
    pos = torch.arange(len(members), device=feats.device)
    first = torch.full((len(b),), len(members), device=feats.device).scatter_reduce_(
        0, owner[is_best], pos[is_best], "amin"
    )
    return _copy_rows(job, members[first], b)


@register("random", bucket_based=False, summary="ipc real images per class, uniformly at random")
def random_select(job: CondenseJob) -> Condensed:
    chosen = cap_per_class(job.labels.cpu(), job.ipc, job.seed).to(job.labels.device)
    chosen = chosen[torch.argsort(job.labels[chosen], stable=True)]
    return _copy_rows(job, chosen, nearest_assignment(job.features, job.labels, chosen))


@register("herding", bucket_based=False, summary="ipc real images per class whose mean tracks the class mean")
def herding_select(job: CondenseJob) -> Condensed:
    feats = job.features.float()
    chosen = []
    for c in range(job.info.num_classes):
        rows = torch.nonzero(job.labels == c).flatten()
        if len(rows) == 0:
            continue
        f = feats[rows]
        mu = f.mean(0)
        taken = torch.zeros(len(rows), dtype=torch.bool, device=f.device)
        acc = torch.zeros_like(mu)
        for k in range(min(job.ipc, len(rows))):
            d = ((((k + 1) * mu - acc)[None, :] - f) ** 2).sum(1)
            d[taken] = float("inf")
            i = int(d.argmin())
            taken[i] = True
            acc += f[i]
            chosen.append(rows[i])
    chosen_t = torch.stack(chosen)
    return _copy_rows(job, chosen_t, whole_class_buckets(job.labels, job.labels[chosen_t]), "class")
