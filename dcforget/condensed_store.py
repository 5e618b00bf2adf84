"""The condensed set on disk: one self-describing, versioned HDF5 file (schema in docs/DESIGN.md).

Root attributes: schema, schema_version, created_utc, toolkit/torch/kornia/h5py versions, method, dataset,
num_classes, image_shape, pixel_space ("unit": images are [0,1]-space floats, possibly slightly outside for
blends), norm_mean, norm_std, seed, ipc, config_json.
Datasets: ``images`` float32 [N,C,H,W] class-major, ``labels`` int64 [N], ``class_offsets`` int64 [K+1];
``buckets/indptr``, ``buckets/indices`` (CSR: image j stands for these training-set positions),
``buckets/label``; ``provenance/source_indices`` int64 [N] (the real training image a row is a copy of, or -1
for a synthetic row) with attributes ``train_size``, ``train_fingerprint``, ``embedder`` (the network whose
embeddings made the buckets/images) and ``influence``: which training images can have influenced image j:
``bucket`` (only bucket j's members), ``class`` (every image of its class), ``global`` (any training image).
Optional groups (``augmentation``, ``offline``, ...) hold other stages' artefacts as attributes/datasets.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from . import __version__
from .errors import DcForgetError
from .io import atomic_path

SCHEMA = "dcforget.condensed_set"
SCHEMA_VERSION = 1
INFLUENCE = ("bucket", "class", "global")
PIXEL_RANGES = ("unit", "unconstrained")  # root attribute pixel_range; "unit": every pixel in [0,1]
PIXEL_TOL = 1e-6
CHECKSUM = {"fletcher32": True}  # HDF5 per-chunk checksums: a flipped byte fails the read instead of loading


def _put(group, name: str, data) -> None:
    """A dataset with checksums (chunked; HDF5 cannot filter a scalar, which is stored plain)."""
    arr = np.asarray(data)
    group.create_dataset(name, data=arr, **(CHECKSUM if arr.ndim else {}))


@contextlib.contextmanager
def _h5_errors(path: Path):
    """What h5py/numpy raise on a damaged file (checksum mismatch, truncated or garbled metadata) as the typed
    error, with the first line of their message."""
    try:
        yield
    except KeyError as err:  # h5py raises KeyError when an object header is damaged, not only when it is absent
        raise _fail(
            path, f"damaged file, not a valid condensed set: an HDF5 object header cannot be read ({_h5_reason(err)})"
        ) from None
    except (OSError, RuntimeError, ValueError, TypeError, UnicodeDecodeError, AttributeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:160]
        hint = (
            " (checksum mismatch: the file is corrupt)"
            if any(w in first.lower() for w in ("checksum", "filter"))
            else ""
        )
        raise _fail(path, f"data cannot be read (truncated or corrupt){hint}: {first}") from None


def _h5_reason(err: BaseException) -> str:
    """HDF5's own reason, without h5py's wrapper: 'Unable to synchronously open object (bad object header version
    number)' -> 'bad object header version number'."""
    text = (str(err.args[0]) if err.args else str(err)).strip()
    text = (text.splitlines() or [type(err).__name__])[0]
    inner = text[text.find("(") + 1 : text.rfind(")")] if "(" in text and text.endswith(")") else text
    return inner.strip()[:160] or type(err).__name__


def _read_array(f, path: Path, name: str) -> np.ndarray:
    """One dataset, telling an absent object (an incomplete file) from one whose header is damaged."""
    try:
        obj = f[name]
    except KeyError as err:
        reason = _h5_reason(err)
        if "doesn't exist" in reason or "does not exist" in reason:
            raise _fail(path, f"incomplete file, not a valid condensed set: dataset '{name}' is missing") from None
        raise _fail(
            path, f"damaged file, not a valid condensed set: dataset '{name}' cannot be opened ({reason})"
        ) from None
    if not isinstance(obj, h5py.Dataset):
        raise _fail(path, f"not a valid condensed set: '{name}' is a {type(obj).__name__.lower()}, not a dataset")
    return np.asarray(obj[()])


class CondensedFileError(DcForgetError):
    """A condensed-set file that is not ours, newer than this toolkit, truncated or inconsistent."""


@dataclass
class CondensedSet:
    images: torch.Tensor  # float32 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]
    bucket_indptr: torch.Tensor  # int64 [N + 1]
    bucket_indices: torch.Tensor  # int64 [nnz], training-set positions
    source_indices: torch.Tensor  # int64 [N], -1 for synthetic rows
    method: str
    dataset: str
    num_classes: int
    norm_mean: tuple[float, ...]
    norm_std: tuple[float, ...]
    train_size: int
    train_fingerprint: str
    influence: str = "bucket"
    embedder: str = ""
    seed: int = 0
    ipc: int = 0
    config: dict[str, Any] = field(default_factory=dict)
    dataset_spec: str = ""  # how to load the dataset again (e.g. synthetic options); defaults to ``dataset``
    extra_groups: dict[str, dict[str, Any]] = field(default_factory=dict)  # name -> {attrs..., arrays}
    created_utc: str = ""
    pixel_range: str = (
        "unit"  # root attribute: "unit" (images in [0,1]) or "unconstrained" (e.g. fdm blend=unconstrained)
    )

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.images.shape[1:])

    @property
    def class_offsets(self) -> torch.Tensor:
        counts = torch.bincount(self.labels, minlength=self.num_classes)
        return torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts, 0)])

    def bucket(self, j: int) -> torch.Tensor:
        return self.bucket_indices[self.bucket_indptr[j] : self.bucket_indptr[j + 1]]

    def bucket_sizes(self) -> torch.Tensor:
        return self.bucket_indptr[1:] - self.bucket_indptr[:-1]

    def bucket_of_row(self) -> torch.Tensor:
        """For each CSR entry, the image (bucket) it belongs to: int64 [nnz]."""
        return torch.repeat_interleave(torch.arange(len(self)), self.bucket_sizes())

    def class_major(self) -> "CondensedSet":
        """Rows sorted by label (stable), buckets permuted along."""
        order = torch.sort(self.labels, stable=True).indices
        if torch.equal(order, torch.arange(len(self))):
            return self
        sizes = self.bucket_sizes()[order]
        indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(sizes, 0)])
        offset_in_bucket = torch.arange(int(indptr[-1])) - torch.repeat_interleave(indptr[:-1], sizes)
        gather = torch.repeat_interleave(self.bucket_indptr[:-1][order], sizes) + offset_in_bucket
        return replace(
            self,
            images=self.images[order],
            labels=self.labels[order],
            bucket_indptr=indptr,
            bucket_indices=self.bucket_indices[gather],
            source_indices=self.source_indices[order],
        )


def _attr(value: Any) -> Any:
    if isinstance(value, str):
        return str(value)  # plain str: h5py cannot store str subclasses such as torch.__version__
    if isinstance(value, (list, tuple)):
        return np.asarray(value)
    return value


def write_condensed(path: str | os.PathLike, cs: CondensedSet, *, force: bool = False) -> Path:
    """Validate, then write atomically (temp file + rename); never overwrites without ``force``."""
    import kornia

    cs = cs.class_major()
    _validate(cs, Path(path))
    with atomic_path(path, force=force) as tmp:
        with h5py.File(tmp, "w", track_order=True) as f:
            attrs = {
                "schema": SCHEMA,
                "schema_version": SCHEMA_VERSION,
                "created_utc": cs.created_utc or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "toolkit_version": __version__,
                "torch_version": torch.__version__,
                "kornia_version": kornia.__version__,
                "h5py_version": h5py.__version__,
                "method": cs.method,
                "dataset": cs.dataset,
                "dataset_spec": cs.dataset_spec or cs.dataset,
                "num_classes": cs.num_classes,
                "image_shape": list(cs.image_shape),
                "pixel_space": "unit",
                "norm_mean": list(cs.norm_mean),
                "norm_std": list(cs.norm_std),
                "seed": cs.seed,
                "ipc": cs.ipc,
                "config_json": json.dumps(cs.config, sort_keys=True, default=str),
                "pixel_range": cs.pixel_range,
            }
            for k, v in attrs.items():
                f.attrs[k] = _attr(v)
            c = cs.image_shape
            chunk = (max(1, min(len(cs), int(cs.class_offsets.diff().max()))), *c)
            f.create_dataset("images", data=cs.images.detach().cpu().float().numpy(), chunks=chunk, **CHECKSUM)
            f["images"].attrs["layout"] = "NCHW"
            _put(f, "labels", cs.labels.cpu().numpy().astype(np.int64))
            _put(f, "class_offsets", cs.class_offsets.numpy().astype(np.int64))
            b = f.create_group("buckets", track_order=True)
            _put(b, "indptr", cs.bucket_indptr.cpu().numpy().astype(np.int64))
            _put(b, "indices", cs.bucket_indices.cpu().numpy().astype(np.int64))
            _put(b, "label", cs.labels.cpu().numpy().astype(np.int64))
            p = f.create_group("provenance", track_order=True)
            _put(p, "source_indices", cs.source_indices.cpu().numpy().astype(np.int64))
            for k, v in {
                "train_size": cs.train_size,
                "train_fingerprint": cs.train_fingerprint,
                "embedder": cs.embedder,
                "influence": cs.influence,
            }.items():
                p.attrs[k] = v
            for name, content in cs.extra_groups.items():
                g = f.create_group(name, track_order=True)
                for k, v in content.items():
                    if isinstance(v, (torch.Tensor, np.ndarray)):
                        _put(g, k, v.cpu().numpy() if isinstance(v, torch.Tensor) else v)
                    elif isinstance(v, dict):
                        g.attrs[k] = json.dumps(v, sort_keys=True, default=str)
                    else:
                        g.attrs[k] = _attr(v)
    return Path(path)


def _plain(value: Any) -> str:
    """An attribute value as the user wrote it: 999, not np.int64(999)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    return repr(value) if isinstance(value, str) else str(value)


def _fail(path: Path, msg: str) -> CondensedFileError:
    return CondensedFileError(f"{path}: {msg}")


def _validate(cs: CondensedSet, path: Path) -> None:
    n = len(cs)
    if cs.images.dim() != 4 or cs.images.shape[0] != n:
        raise _fail(path, f"images must be [N,C,H,W] with N={n} rows, got {tuple(cs.images.shape)}")
    if n == 0:
        raise _fail(path, "the condensed set is empty")
    if not bool(torch.isfinite(cs.images).all()):
        raise _fail(path, "images contain NaN or infinite values")
    if cs.pixel_range not in PIXEL_RANGES:
        raise _fail(path, f"pixel_range {cs.pixel_range!r} is not one of {', '.join(PIXEL_RANGES)}")
    if cs.pixel_range == "unit":
        lo, hi = float(cs.images.min()), float(cs.images.max())
        if lo < -PIXEL_TOL or hi > 1 + PIXEL_TOL:
            raise _fail(
                path,
                f"images have pixels outside [0,1] (min {lo:.6g}, max {hi:.6g}) while pixel_range is "
                "'unit' (only a set declaring pixel_range='unconstrained' may): corrupt or tampered data",
            )
    if int(cs.labels.min()) < 0 or int(cs.labels.max()) >= cs.num_classes:
        raise _fail(path, f"labels outside 0..{cs.num_classes - 1}")
    if bool((cs.labels[1:] < cs.labels[:-1]).any()):
        raise _fail(path, "rows are not class-major (labels not sorted)")
    if len(cs.norm_mean) != cs.images.shape[1] or len(cs.norm_std) != cs.images.shape[1]:
        raise _fail(path, "norm_mean/norm_std need one value per channel")
    ip, ix = cs.bucket_indptr, cs.bucket_indices
    if ip.shape != (n + 1,) or int(ip[0]) != 0 or int(ip[-1]) != len(ix) or bool((ip[1:] < ip[:-1]).any()):
        raise _fail(
            path,
            "buckets/indptr is not a valid CSR pointer for the images (length N+1, from 0, "
            "non-decreasing, ending at len(indices))",
        )
    if len(ix) and (int(ix.min()) < 0 or int(ix.max()) >= cs.train_size):
        raise _fail(path, f"buckets/indices outside the training set 0..{cs.train_size - 1}")
    src = cs.source_indices
    if src.shape != (n,) or int(src.min()) < -1 or int(src.max()) >= cs.train_size:
        raise _fail(path, "provenance/source_indices must hold one training index (or -1) per image")
    if cs.influence not in INFLUENCE:
        raise _fail(path, f"provenance influence {cs.influence!r} is not one of {', '.join(INFLUENCE)}")
    _check_class_influence(cs, path)


def _check_class_influence(cs: CondensedSet, path: Path) -> None:
    """Influence "class" says image j depends on every training image of its class, and its bucket must say the
    same: each bucket holds exactly the training positions of its label. The file does not store the training
    labels, so "the positions of label c" are what the file assigns to c, and the rule checked is: every training
    position belongs to the buckets of exactly one label (together they cover the training set), and every bucket
    of label c holds all of that label's positions, each once. That these sets are the classes by the dataset's
    own labels is left to request time, where the labels are known: the unlearning stage drops every image of a
    class with a forget sample by those labels, whatever its bucket holds, and its independent audit checks that."""
    if cs.influence != "class":
        return
    n, sizes = cs.train_size, cs.bucket_sizes()
    if n < 1:
        raise _fail(path, "influence 'class' needs a non-empty training set")
    label_of_entry = torch.repeat_interleave(cs.labels, sizes)
    pairs = torch.unique(label_of_entry * n + cs.bucket_indices)  # distinct (label, position)
    position, label = pairs % n, pairs // n
    if len(pairs) != n or not torch.equal(position.sort().values, torch.arange(n)):
        raise _fail(
            path,
            f"influence 'class' needs every training position in the buckets of exactly one class, "
            f"covering all {n}; the buckets hold {len(pairs)} (class, position) pairs over "
            f"{len(torch.unique(position))} positions",
        )
    owner = torch.repeat_interleave(torch.arange(len(cs)), sizes)
    class_size = torch.bincount(label, minlength=cs.num_classes)
    distinct = torch.bincount(torch.unique(owner * n + cs.bucket_indices) // n, minlength=len(cs))
    bad = torch.nonzero((sizes != class_size[cs.labels]) | (distinct != sizes)).flatten()
    if len(bad):
        j = int(bad[0])
        raise _fail(
            path,
            f"influence 'class' needs each bucket to hold its whole class: bucket {j} (class "
            f"{int(cs.labels[j])}) holds {int(distinct[j])} distinct of the class's "
            f"{int(class_size[cs.labels[j]])} training positions ({len(bad)} such buckets)",
        )


def read_condensed(path: str | os.PathLike) -> CondensedSet:
    """Open read-only, validate everything, and say exactly what is wrong."""
    p = Path(path)
    if p.is_dir():
        raise CondensedFileError(f"condensed set {p} is a directory, not an HDF5 file")
    if not p.is_file():
        raise CondensedFileError(f"condensed set {p} does not exist")
    try:
        f = h5py.File(p, "r")
    except (OSError, KeyError, RuntimeError, ValueError) as err:
        raise _fail(
            p, f"not a readable HDF5 file (truncated or another format): {str(err).splitlines()[0][:160]}"
        ) from None
    with f, _h5_errors(p):
        if f.attrs.get("schema") != SCHEMA:
            raise _fail(p, f"not a dcforget condensed set (schema {_plain(f.attrs.get('schema'))})")
        version = f.attrs.get("schema_version")
        if not isinstance(version, (int, np.integer)) or isinstance(version, bool):
            raise _fail(
                p, f"schema version {_plain(version)} is not an integer (this toolkit reads version {SCHEMA_VERSION})"
            )
        if int(version) > SCHEMA_VERSION:
            raise _fail(
                p,
                f"schema version {int(version)} is newer than this toolkit reads (it supports version "
                f"{SCHEMA_VERSION}); upgrade dcforget",
            )
        try:
            get = lambda name: torch.from_numpy(_read_array(f, p, name))
            images, labels = get("images"), get("labels")
            offsets, indptr, indices, blabel = (
                get("class_offsets"),
                get("buckets/indptr"),
                get("buckets/indices"),
                get("buckets/label"),
            )
            source = get("provenance/source_indices")
            prov = dict(f["provenance"].attrs)
            a = dict(f.attrs)
            extra = {}
            for name in f:
                if name in ("images", "labels", "class_offsets", "buckets", "provenance"):
                    continue
                g = f[name]
                extra[name] = {
                    **{k: v for k, v in g.attrs.items()},
                    **{k: torch.from_numpy(np.asarray(g[k][()])) for k in g if isinstance(g[k], h5py.Dataset)},
                }
        except KeyError as err:  # a group's attributes or members (an absent object is reported by _read_array)
            raise _fail(p, f"damaged or incomplete file, not a valid condensed set ({_h5_reason(err)})") from None
    try:
        num_classes = int(a["num_classes"])
        shape = [int(s) for s in a["image_shape"]]
        if images.dtype != torch.float32 or images.dim() != 4 or list(images.shape[1:]) != shape:
            raise _fail(
                p, f"images are {images.dtype} {tuple(images.shape)}, expected float32 [N,{','.join(map(str, shape))}]"
            )
        if labels.shape != (images.shape[0],) or labels.dtype != torch.int64:
            raise _fail(p, f"labels must be int64 [{images.shape[0]}], got {labels.dtype} {tuple(labels.shape)}")
        if a.get("pixel_space") != "unit":
            raise _fail(p, f"pixel_space {a.get('pixel_space')!r} is not understood (expected 'unit')")
        cs = CondensedSet(
            images=images,
            labels=labels,
            bucket_indptr=indptr.long(),
            bucket_indices=indices.long(),
            source_indices=source.long(),
            method=str(a["method"]),
            dataset=str(a["dataset"]),
            num_classes=num_classes,
            norm_mean=tuple(float(v) for v in a["norm_mean"]),
            norm_std=tuple(float(v) for v in a["norm_std"]),
            train_size=int(prov["train_size"]),
            train_fingerprint=str(prov["train_fingerprint"]),
            influence=str(prov["influence"]),
            embedder=str(prov.get("embedder", "")),
            seed=int(a["seed"]),
            ipc=int(a.get("ipc", 0)),
            config=json.loads(a.get("config_json", "{}")),
            extra_groups=extra,
            created_utc=str(a.get("created_utc", "")),
            dataset_spec=str(a.get("dataset_spec", a["dataset"])),
            pixel_range=str(a.get("pixel_range", "unit")),
        )
    except KeyError as err:
        raise _fail(p, f"missing attribute {err}") from None
    except (ValueError, TypeError) as err:
        raise _fail(p, f"malformed attribute: {err}") from None
    _validate(cs, p)
    if offsets.shape != (num_classes + 1,) or not torch.equal(offsets.long(), cs.class_offsets):
        raise _fail(p, "class_offsets do not match the labels")
    if not torch.equal(blabel.long(), labels):
        raise _fail(p, "buckets/label does not match labels")
    return cs
