"""Checkpoints: a state dict plus JSON metadata, loaded with ``torch.load(weights_only=True)``; no pickle.

File layout (a dict saved by ``torch.save``): ``format``, ``format_version``, ``meta_json`` (str), ``state_dict``.
``meta`` holds the model config (architecture, image shape, classes, normalisation), the dataset and its
training-set fingerprint, seed, per-class cap, training config and metrics, and the toolkit version.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .errors import CheckpointError, ConfigError
from .io import atomic_path
from .models import Classifier, model_from_config

FORMAT = "dcforget-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model: Classifier
    meta: dict[str, Any]
    path: Path | None = None
    tensors: dict[str, torch.Tensor] | None = None  # artefacts saved beside the weights (e.g. a remembrance set)


def save_checkpoint(path: str | os.PathLike, model: Classifier, meta: dict[str, Any], *, force: bool = False,
                    tensors: dict[str, torch.Tensor] | None = None) -> Path:
    """Write atomically; refuse to overwrite unless ``force``. ``meta`` must be JSON-serialisable; ``tensors``
    are extra arrays stored beside the weights."""
    full = {"model": model.config, "toolkit_version": __version__, "torch_version": torch.__version__,
            "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **meta}
    try:
        meta_json = json.dumps(full, sort_keys=True)
    except TypeError as err:
        raise ConfigError(f"checkpoint metadata is not JSON-serialisable: {err}") from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "meta_json": meta_json, "state_dict": state,
               "tensors": {k: v.detach().cpu() for k, v in (tensors or {}).items()}}
    with atomic_path(path, force=force) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def read_checkpoint_meta(path: str | os.PathLike, *, with_tensors: bool = False):
    """(meta, state_dict), or (meta, state_dict, tensors) with ``with_tensors``."""
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails on foreign bytes with many exception types (IndexError included)
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise CheckpointError(f"{p} is not a readable checkpoint ({first[:200]})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a {FORMAT} file")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(f"{p} has checkpoint format version {version!r}; this toolkit reads up to "
                              f"{FORMAT_VERSION}: upgrade dcforget")
    try:
        meta = json.loads(payload["meta_json"])
        state = payload["state_dict"]
        assert isinstance(meta, dict) and isinstance(state, dict) and "model" in meta
    except (KeyError, TypeError, ValueError, AssertionError):
        raise CheckpointError(f"{p} has missing or corrupt metadata") from None
    if with_tensors:
        tensors = payload.get("tensors") or {}
        if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
            raise CheckpointError(f"{p} has corrupt stored tensors")
        return meta, state, tensors
    return meta, state


def load_checkpoint(path: str | os.PathLike, *, dataset: str | None = None, fingerprint: str | None = None,
                    image_shape=None, num_classes: int | None = None, arch: str | None = None) -> Checkpoint:
    """Load and rebuild the model; every expectation given is checked against the metadata."""
    meta, state, tensors = read_checkpoint_meta(path, with_tensors=True)
    cfg = meta["model"]
    p = Path(path)
    checks = [
        ("dataset", dataset, meta.get("dataset")),
        ("architecture", arch, cfg.get("arch")),
        ("image shape", list(image_shape) if image_shape is not None else None, cfg.get("image_shape")),
        ("class count", num_classes, cfg.get("num_classes")),
    ]
    for what, want, have in checks:
        if want is not None and want != have:
            raise CheckpointError(f"checkpoint {p} was made for {what} {have!r}, not {want!r}")
    if fingerprint is not None and meta.get("train_fingerprint") not in (None, fingerprint):
        raise CheckpointError(
            f"checkpoint {p} was trained on a different training set (per-class cap or seed differ: it used "
            f"per_class={meta.get('per_class')}, seed={meta.get('data_seed', meta.get('seed'))})"
        )
    try:
        model = model_from_config(cfg)
        model.load_state_dict(state, strict=True)
    except (RuntimeError, KeyError, TypeError, ConfigError) as err:
        first = str(err).strip().splitlines()[0]
        raise CheckpointError(f"checkpoint {p} does not match its architecture: {first[:200]}") from None
    model.eval()
    return Checkpoint(model, meta, p, tensors)
