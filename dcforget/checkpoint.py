"""Checkpoints: a state dict plus JSON metadata, loaded with ``torch.load(weights_only=True)``; no pickle.

File layout (a dict saved by ``torch.save``): ``format``, ``format_version``, ``meta_json`` (str), ``state_dict``.
``meta`` holds the model config (architecture, image shape, classes, normalisation), the dataset and its
training-set fingerprint, seed, per-class cap, training config and metrics, and the toolkit version.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import re
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from . import __version__
from .datasets import Data, load_data_for
from .errors import CheckpointError, ConfigError, DcForgetError
from .io import atomic_path
from .models import Classifier, model_from_config
from .pairing import check_pairing

FORMAT = "dcforget-checkpoint"
FORMAT_VERSION = 1


@dataclass
class Checkpoint:
    model: Classifier
    meta: "CheckpointMeta"
    path: Path | None = None
    tensors: dict[str, torch.Tensor] | None = None  # artefacts saved beside the weights (e.g. a remembrance set)


def save_checkpoint(
    path: str | os.PathLike,
    model: Classifier,
    meta: dict[str, Any],
    *,
    force: bool = False,
    tensors: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write atomically; refuse to overwrite unless ``force``. ``meta`` must be JSON-serialisable; ``tensors``
    are extra arrays stored beside the weights."""
    full = {
        "model": model.config,
        "toolkit_version": __version__,
        "torch_version": torch.__version__,
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **meta,
    }
    try:
        meta_json = json.dumps(full, sort_keys=True)
    except TypeError as err:
        raise ConfigError(f"checkpoint metadata is not JSON-serialisable: {err}") from None
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta_json": meta_json,
        "state_dict": state,
        "tensors": {k: v.detach().cpu() for k, v in (tensors or {}).items()},
    }
    with atomic_path(path, force=force) as tmp:
        torch.save(payload, tmp)
    return Path(path)


def _first_sentence(text: str, limit: int = 160) -> str:
    """The first sentence of a library's message, whole (cut at a word, with an ellipsis, only when very long)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", text).strip()
    text = " ".join(text.split())
    m = re.match(r"(.+?[.!?])(?:\s+[A-Z`(]|$)", text)
    first = (m.group(1) if m else text).rstrip(".")
    if len(first) > limit:
        first = first[:limit].rsplit(" ", 1)[0] + "..."
    return first


def _load_error(p: Path, err: Exception) -> str:
    """Why torch.load refused ``p``, in one short, complete line, from what the file is (empty, text, another
    format, a cut-short zip archive, a pickle of non-tensor objects); never torch's advice to load with
    ``weights_only=False`` (arbitrary code execution) or to allowlist globals."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(err))
    m = re.search(r"WeightsUnpickler error: *(.*?)(?:\n\s*\n|$)", text, re.S)
    refused = " ".join(m.group(1).split()) if m else ""
    glob = re.search(r"GLOBAL ([\w.]+)", refused) or re.search(r"global:? *([\w.]+)", refused, re.I)
    if glob:  # a pickle holding objects beyond tensors and plain containers: not a checkpoint of ours
        return "it holds pickled objects that are not allowed: " + glob.group(1)
    try:
        size = p.stat().st_size
        with open(p, "rb") as fh:
            head = fh.read(1024)
    except OSError as oerr:
        return f"cannot be read: {oerr.strerror or oerr}"
    if size == 0:
        return "the file is empty"
    if head.startswith(b"PK"):  # torch.save's zip archive
        try:
            with zipfile.ZipFile(p) as z:
                bad = z.testzip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            return "truncated or damaged checkpoint file: its zip archive is incomplete, with no central directory"
        except Exception as zerr:  # e.g. zlib.error on a damaged compressed member
            return f"damaged checkpoint file: {_first_sentence(str(zerr)) or type(zerr).__name__}"
        if bad:
            return f"damaged checkpoint file: archive member {bad!r} fails its CRC check"
        if refused:
            return f"not a weights-only torch checkpoint: the weights-only loader refuses it ({refused[:80]})"
        return f"damaged checkpoint file: {_first_sentence(str(err)) or type(err).__name__}"
    if head[:1] == b"\x80":  # a pickle stream (torch's legacy format, or plain pickle)
        why = f" ({refused[:80]})" if refused else ""
        return f"not a weights-only torch checkpoint: a pickle stream the weights-only loader refuses{why}"
    if head.startswith(b"\x89HDF"):
        kind = "an HDF5 file"
    elif head.startswith(b"\x93NUMPY"):
        kind = "a NumPy .npy file"
    else:
        try:
            head.decode("utf-8")
            kind = "a text file"
        except UnicodeDecodeError as uerr:
            kind = "a text file" if uerr.start > len(head) - 4 else "binary data of another format"
    return f"not a weights-only torch checkpoint: {kind}, not the zip archive torch.save writes"


_NUM = (int, float)
_META_TYPES: dict[str, tuple] = {  # what the toolkit reads from a checkpoint's metadata; None: may be absent/null
    "dataset": (str,),
    "dataset_spec": (str, type(None)),
    "per_class": (int, type(None)),
    "data_seed": (int, type(None)),
    "seed": (int, type(None)),
    "train_fingerprint": (str, type(None)),
    "forgotten": (list, type(None)),
    "requests": (list, type(None)),
    "val_fraction": (*_NUM, type(None)),
    "offline": (dict, type(None)),
    "config": (dict, type(None)),
}
_MODEL_TYPES: dict[str, tuple] = {
    "arch": (str,),
    "image_shape": (list,),
    "num_classes": (int,),
    "mean": (list,),
    "std": (list,),
    "options": (dict, type(None)),
}


@dataclass(frozen=True)
class CheckpointMeta:
    """A checkpoint's metadata, validated when read (like ``CondensedSet`` on the HDF5 side): the fields the toolkit
    acts on are typed attributes; everything else a checkpoint records (training config, metrics, history, the
    offline phase's remembrance summary, versions) is provenance in ``extra``, carried along unread."""

    model: dict[str, Any]  # the architecture's config: arch, image_shape, num_classes, mean, std, options
    dataset: str | None = None
    dataset_spec: str | None = None
    per_class: int | None = None
    data_seed: int | None = None
    val_fraction: float | None = None
    train_fingerprint: str | None = None
    seed: int | None = None
    forgotten: tuple[int, ...] = ()  # training-set indices every earlier request forgot (cumulative)
    requests: tuple[str, ...] = ()  # their forget specs, in order
    unlearned_from: str | None = None
    unlearn_method: str | None = None
    offline: dict[str, Any] | None = None  # DC-U's offline phase settings (unlearn offline)
    config: dict[str, Any] | None = None  # the resolved config the checkpoint was made with
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def arch(self) -> str:
        return self.model["arch"]

    @property
    def num_classes(self) -> int:
        return self.model["num_classes"]

    @property
    def image_shape(self) -> tuple[int, ...]:
        return tuple(self.model["image_shape"])

    @classmethod
    def from_dict(cls, meta: dict[str, Any], where: str | os.PathLike = "checkpoint") -> "CheckpointMeta":
        """Validate ``meta`` (CheckpointError naming ``where`` and what is wrong) and type it."""
        _check_meta(Path(where), meta)
        known = {f for f in cls.__dataclass_fields__ if f != "extra"}
        fields = {k: meta[k] for k in known if k in meta and meta[k] is not None}
        fields["forgotten"] = tuple(meta.get("forgotten") or ())
        fields["requests"] = tuple(meta.get("requests") or ())
        if "val_fraction" in fields:
            fields["val_fraction"] = float(fields["val_fraction"])
        return cls(**fields, extra={k: v for k, v in meta.items() if k not in known})

    def to_dict(self) -> dict[str, Any]:
        """The JSON a checkpoint stores (what ``from_dict`` reads back)."""
        out = {**self.extra, "model": self.model}
        for f in self.__dataclass_fields__:
            if f not in ("model", "extra"):
                v = getattr(self, f)
                if v is not None and v != ():
                    out[f] = list(v) if isinstance(v, tuple) else v
        return out

    def load_data(self, data_dir: str | os.PathLike | None = None, download: bool = True) -> Data:
        """The exact splits this checkpoint was trained on (its dataset, cap, data seed and validation split)."""
        return load_data_for(self.to_dict(), data_dir, download)


def _check_meta(p: Path, meta: dict) -> None:
    """Malformed metadata (a string where a table is expected, a negative class count, ...) is a CheckpointError
    here, not a TypeError deep in whatever reads it later."""

    def bad(what: str) -> CheckpointError:
        return CheckpointError(f"{p} has malformed metadata: {what}")

    def typed(v, kinds) -> bool:
        return isinstance(v, kinds) and not (isinstance(v, bool) and bool not in kinds)

    cfg = meta.get("model")
    if not isinstance(cfg, dict):
        raise bad(f"'model' must be a table, got {type(cfg).__name__}")
    for key, kinds in _MODEL_TYPES.items():
        if key != "options" and key not in cfg:
            raise bad(f"model.{key} is missing")
        if key in cfg and not typed(cfg[key], kinds):
            raise bad(f"model.{key} is a {type(cfg[key]).__name__}")
    shape = cfg["image_shape"]
    if len(shape) != 3 or not all(typed(s, (int,)) and s >= 1 for s in shape):
        raise bad(f"model.image_shape {shape!r} is not 3 positive integers")
    if cfg["num_classes"] < 1:
        raise bad(f"model.num_classes {cfg['num_classes']!r} is not positive")
    for key in ("mean", "std"):
        v = cfg[key]
        if (
            len(v) != shape[0]
            or not all(typed(x, _NUM) and math.isfinite(x) for x in v)
            or (key == "std" and not all(x > 0 for x in v))
        ):
            raise bad(f"model.{key} {v!r} is not {shape[0]} finite number(s){' > 0' if key == 'std' else ''}")
    for key, kinds in _META_TYPES.items():
        if key in meta and not typed(meta[key], kinds):
            raise bad(f"{key!r} is a {type(meta[key]).__name__}")
    if meta.get("per_class") is not None and not 1 <= meta["per_class"] < 2**63:
        raise bad(f"per_class {meta['per_class']!r} is not a positive integer")
    for key in ("seed", "data_seed"):
        if meta.get(key) is not None and not 0 <= meta[key] < 2**63:
            raise bad(f"{key} {meta[key]!r} is out of range")
    if not all(typed(i, (int,)) and i >= 0 for i in meta.get("forgotten") or []):
        raise bad("'forgotten' must list training-set indices (integers >= 0)")
    if not all(isinstance(r, str) for r in meta.get("requests") or []):
        raise bad("'requests' must list forget specs (strings)")


def read_checkpoint_meta(path: str | os.PathLike, *, with_tensors: bool = False):
    """(CheckpointMeta, state_dict), or (meta, state_dict, tensors) with ``with_tensors``."""
    p = Path(path)
    if p.is_dir():
        raise CheckpointError(f"checkpoint {p} is a directory, not a file")
    if not p.is_file():
        raise CheckpointError(f"checkpoint {p} does not exist")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4": noise on a file we refuse anyway
            warnings.simplefilter("ignore")
            payload = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:  # torch.load fails on foreign bytes with many exception types (IndexError included)
        raise CheckpointError(f"{p} is not a readable checkpoint ({_load_error(p, err)})") from None
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{p} is not a {FORMAT} file")
    version = payload.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise CheckpointError(
            f"{p} has checkpoint format version {version!r}; this toolkit reads up to "
            f"{FORMAT_VERSION}: upgrade dcforget"
        )
    try:
        meta = json.loads(payload["meta_json"])
        state = payload["state_dict"]
        assert isinstance(meta, dict) and isinstance(state, dict) and "model" in meta
    except (KeyError, TypeError, ValueError, AssertionError):
        raise CheckpointError(f"{p} has missing or corrupt metadata") from None
    meta = CheckpointMeta.from_dict(meta, p)
    _check_tensors(p, state, "weights")
    if with_tensors:
        tensors = payload.get("tensors") or {}
        if not isinstance(tensors, dict) or not all(isinstance(v, torch.Tensor) for v in tensors.values()):
            raise CheckpointError(f"{p} has corrupt stored tensors")
        _check_tensors(p, tensors, "stored tensors")
        return meta, state, tensors
    return meta, state


def _check_tensors(p: Path, tensors: dict, what: str) -> None:
    for k, v in tensors.items():
        if not isinstance(v, torch.Tensor):
            raise CheckpointError(f"{p} has corrupt {what}: {k!r} is not a tensor")
        if (
            (v.is_floating_point() or v.is_complex())
            and v.numel()
            and not bool(torch.isfinite(v.sum()))
            and not bool(torch.isfinite(v).all())
        ):  # the sum is the fast test; the full one rules out overflow
            raise CheckpointError(
                f"{p} has non-finite {what} (NaN or inf) in {k!r}: the file is corrupt, or the "
                "training that wrote it diverged"
            )


def _state_mismatch(expected: dict, stored: dict, show: int = 2) -> str:
    """What differs between the architecture's state dict and the stored one, briefly: the first missing and
    unexpected keys, and the first shape mismatch. Empty when they fit."""

    def names(keys: list[str]) -> str:
        more = f" (+{len(keys) - show} more)" if len(keys) > show else ""
        return ", ".join(keys[:show]) + more

    parts = []
    missing = [k for k in expected if k not in stored]
    unexpected = [k for k in stored if k not in expected]
    if missing:
        parts.append(f"missing key{'s' if len(missing) > 1 else ''} {names(missing)}")
    if unexpected:
        parts.append(f"unexpected key{'s' if len(unexpected) > 1 else ''} {names(unexpected)}")
    for k, v in expected.items():
        w = stored.get(k)
        if isinstance(w, torch.Tensor) and tuple(w.shape) != tuple(v.shape):
            parts.append(f"{k} has shape {list(w.shape)} in the file, the architecture needs {list(v.shape)}")
            break
    return "; ".join(parts)


def load_checkpoint(
    path: str | os.PathLike,
    *,
    dataset: str | None = None,
    fingerprint: str | None = None,
    image_shape=None,
    num_classes: int | None = None,
    arch: str | None = None,
) -> Checkpoint:
    """Load and rebuild the model; every expectation given is checked against the metadata."""
    meta, state, tensors = read_checkpoint_meta(path, with_tensors=True)
    cfg = meta.model
    p = Path(path)
    check_pairing(
        meta,
        where=f"checkpoint {p}",
        dataset=dataset,
        fingerprint=fingerprint,
        arch=arch,
        image_shape=image_shape,
        num_classes=num_classes,
    )
    try:
        model = model_from_config(cfg)
        mismatch = _state_mismatch(model.state_dict(), state)
        if not mismatch:
            model.load_state_dict(state, strict=True)
    except (
        RuntimeError,
        KeyError,
        TypeError,
        ValueError,
        AttributeError,
        IndexError,
        OverflowError,
        DcForgetError,
    ) as err:  # the model's own constructor on stored options (e.g. dropout=2: ValueError)
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise CheckpointError(f"checkpoint {p} does not match its architecture: {first[:200]}") from None
    if mismatch:
        raise CheckpointError(f"checkpoint {p} does not match its architecture ({cfg.get('arch')}): {mismatch}")
    model.eval()
    return Checkpoint(model, meta, p, tensors)


def open_checkpoint(
    path: str | os.PathLike, data_dir: str | os.PathLike | None = None, download: bool = True
) -> tuple[Checkpoint, Data]:
    """A checkpoint and the exact data it was trained on, checked against each other: the one way to load both."""
    meta, _ = read_checkpoint_meta(path)
    data = meta.load_data(data_dir, download)
    return load_checkpoint(
        path,
        dataset=data.info.name,
        fingerprint=data.fingerprint(),
        image_shape=data.info.image_shape,
        num_classes=data.info.num_classes,
    ), data
