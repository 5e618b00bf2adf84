"""``condense build`` as a library call: embeddings, buckets, a condenser, one CondensedSet."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from dcforget.condensed_store import CondensedSet
from dcforget.config import coerce_option
from dcforget.datasets import Data
from dcforget.errors import ConfigError
from dcforget.models import Classifier
from dcforget.runtime import synchronize
from dcforget.train import embed

from .buckets import kmeans_buckets
from .methods import CONDENSERS, CondenseJob


@dataclass
class BuildResult:
    condensed: CondensedSet
    seconds: dict[str, float]  # embed, buckets, condense, total


def _coerce(key: str, value: Any, default: Any, method: str) -> Any:
    """CLI strings (``--option steps=50``) become the default's type; TOML values must already match."""
    return coerce_option(key, value, default, f" of method {method!r}")  # strict types, no negative counts


def method_options(method: str, given: dict[str, Any] | None) -> dict[str, Any]:
    """The method's defaults overridden by ``given``; unknown keys and wrong types are errors."""
    defaults = CONDENSERS.get(method).defaults
    given = dict(given or {})
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown option(s) for method {method!r}: {', '.join(unknown)}; "
            f"known: {', '.join(sorted(defaults)) or '(none)'}"
        )
    return {k: _coerce(k, given[k], v, method) if k in given else v for k, v in defaults.items()}


def build_condensed(
    data: Data,
    method: str,
    model: Classifier,
    *,
    device: torch.device,
    seed: int = 0,
    clusters: int | None = None,
    ipc: int | None = None,
    options: dict[str, Any] | None = None,
    embedder: str = "",
    config: dict[str, Any] | None = None,
    kmeans_iters: int = 100,
    quiet: bool = False,
) -> BuildResult:
    condenser = CONDENSERS.get(method)
    opts = method_options(method, options)
    if condenser.bucket_based and not clusters:
        raise ConfigError(f"method {method!r} is bucket-based: give --clusters K (buckets per class)")
    if not condenser.bucket_based and not ipc:
        raise ConfigError(f"method {method!r} makes --ipc images per class: give --ipc N")
    t0 = time.perf_counter()
    model = model.to(device).eval()
    feats = embed(model, data.train.images, device=device)
    synchronize(device)
    t1 = time.perf_counter()
    buckets = None
    if condenser.bucket_based:
        buckets = kmeans_buckets(
            feats, data.train.labels, data.info.num_classes, clusters, seed=seed, iters=kmeans_iters, quiet=quiet
        )
    else:
        counts = torch.bincount(data.train.labels.cpu(), minlength=data.info.num_classes)
        if int(counts[counts > 0].min()) < ipc:
            raise ConfigError(f"--ipc {ipc} exceeds the {int(counts[counts > 0].min())} images of the smallest class")
    t2 = time.perf_counter()
    job = CondenseJob(
        images=data.train.images,
        labels=data.train.labels,
        info=data.info,
        device=device,
        seed=seed,
        options=opts,
        model=model,
        features=feats,
        buckets=buckets,
        ipc=int(ipc or 0),
        quiet=quiet,
    )
    out = condenser.run(job)
    synchronize(device)
    t3 = time.perf_counter()
    resolved = {**(config or {}), "method": method, "method_options": opts, "clusters": clusters, "ipc": ipc}
    cs = CondensedSet(
        images=out.images.detach().cpu().float(),
        labels=out.buckets.label.cpu(),
        bucket_indptr=out.buckets.indptr.cpu(),
        bucket_indices=out.buckets.indices.cpu(),
        source_indices=out.source_indices.cpu(),
        method=method,
        dataset=data.info.name,
        dataset_spec=data.spec,
        num_classes=data.info.num_classes,
        norm_mean=data.info.mean,
        norm_std=data.info.std,
        train_size=len(data.train),
        train_fingerprint=data.fingerprint(),
        influence=out.influence,
        embedder=embedder,
        seed=seed,
        ipc=int(clusters if condenser.bucket_based else ipc),
        config=resolved,
        extra_groups=out.extra,
        pixel_range=out.pixel_range,
    )
    secs = {"embed": t1 - t0, "buckets": t2 - t1, "condense": t3 - t2, "total": t3 - t0}
    return BuildResult(cs, secs)
