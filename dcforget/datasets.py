"""Datasets held in memory as uint8 NCHW tensors, loaded through torchvision's dataset classes.

``load_data(name, ...)`` returns a :class:`Data`: the training split models train on, a held-out validation
split, the test split and a :class:`DatasetInfo` (class count, image shape, normalisation).

The official training split is first capped per class (``per_class``, seeded), then a stratified, seeded
``val_fraction`` of the capped set (15% by default, as in Deep Unlearn) is held out as the validation split. It is
neither retain nor forget data: every choice of defaults or hyperparameters reads validation figures, and test
figures are only reported. Indices everywhere in the toolkit (forget specs, buckets, reports) are positions in
``Data.train``; ``Data.source_indices`` (and ``Data.val_source_indices``) map them back to the full torchvision
training split. Checkpoints record ``per_class``, ``data_seed`` and ``val_fraction``; :func:`load_data_for` rebuilds
exactly the split a checkpoint was trained on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import pickle
import shutil
import sys
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from .errors import DatasetError
from .registry import Registry

DATA_DIR_ENV = "DCFORGET_DATA_DIR"
DEFAULT_VAL_FRACTION = 0.15  # Deep Unlearn's DEFAULT_VAL_RATIO
_VAL_SEED_OFFSET = 1_000_003  # the validation draw is seeded apart from the per-class cap's


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    num_classes: int
    image_shape: tuple[int, int, int]  # C, H, W
    mean: tuple[float, ...]
    std: tuple[float, ...]
    class_names: tuple[str, ...]


@dataclass
class Split:
    images: torch.Tensor  # uint8 [N, C, H, W]
    labels: torch.Tensor  # int64 [N]

    def __post_init__(self) -> None:
        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise DatasetError(f"images must be uint8 [N,C,H,W], got {self.images.dtype} {tuple(self.images.shape)}")
        if self.labels.shape != (self.images.shape[0],):
            raise DatasetError("labels must be one int64 per image")

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    def subset(self, index: torch.Tensor) -> "Split":
        index = torch.as_tensor(index, dtype=torch.long, device=self.labels.device)
        return Split(self.images[index], self.labels[index])

    def to(self, device: torch.device) -> "Split":
        return Split(self.images.to(device), self.labels.to(device))


@dataclass
class Data:
    info: DatasetInfo
    train: Split
    test: Split
    source_indices: torch.Tensor  # int64 [len(train)]: index in the full training split
    per_class: int | None = None
    seed: int = 0
    spec: str = ""
    val: Split | None = None  # held out from the capped training set; None when val_fraction is 0
    val_source_indices: torch.Tensor | None = None  # int64 [len(val)]: index in the full training split
    val_fraction: float = 0.0
    _fingerprint: str | None = field(default=None, repr=False)
    val_part: str = "whole"  # "whole" validation split, or one of its VALIDATION_HALVES (see val_half)

    def split_meta(self) -> dict:
        """What a checkpoint or report records so :func:`load_data_for` can rebuild exactly these splits."""
        return {
            "dataset": self.info.name,
            "dataset_spec": self.spec,
            "per_class": self.per_class,
            "data_seed": self.seed,
            "val_fraction": self.val_fraction,
            "val_size": len(self.val) if self.val is not None else 0,
            "train_size": len(self.train),
            "train_fingerprint": self.fingerprint(),
        }

    def val_halves(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(method, selection) positions in ``val`` (:func:`validation_halves`, seeded by the data seed)."""
        if self.val is None:
            raise DatasetError("this data has no validation split (val_fraction 0) to cut into halves")
        if self.val_part != "whole":
            raise DatasetError(f"the validation split is already cut to its {self.val_part} half")
        return validation_halves(self.val.labels, self.seed)

    def val_half(self, which: str) -> "Data":
        """This data with its validation split cut to one half (``"method"`` or ``"selection"``); the training and
        test splits, and so the fingerprint, are unchanged. Data without a validation split is returned as it is."""
        if which not in VALIDATION_HALVES:
            raise DatasetError(f"a validation half is one of {', '.join(VALIDATION_HALVES)}, not {which!r}")
        if self.val is None:
            return self
        pos = self.val_halves()[VALIDATION_HALVES.index(which)]
        src = (
            self.val_source_indices[pos.to(self.val_source_indices.device)]
            if self.val_source_indices is not None
            else None
        )
        return replace(self, val=self.val.subset(pos), val_source_indices=src, val_part=which)

    def fingerprint(self) -> str:
        """sha256 of the (capped) training set: images and labels. Ties checkpoints and condensed sets to it."""
        if self._fingerprint is None:
            h = hashlib.sha256()
            h.update(self.train.labels.cpu().numpy().astype("<i8").tobytes())
            h.update(self.train.images.cpu().contiguous().numpy().tobytes())
            self._fingerprint = h.hexdigest()
        return self._fingerprint

    def to(self, device: torch.device) -> "Data":
        """Move both splits to ``device`` when they fit in its free memory (with room to spare); else keep them."""
        if device.type == "cuda":
            need = self.train.images.numel() + self.test.images.numel()
            free, _ = torch.cuda.mem_get_info(device)
            if need * 3 > free:
                return self
        val = self.val.to(device) if self.val is not None else None
        return replace(self, train=self.train.to(device), test=self.test.to(device), val=val)


# --------------------------------------------------------------------------------------------- registry
@dataclass(frozen=True)
class DatasetSource:
    """How to read one dataset: ``load(root, download, options) -> (info, train, test)``."""

    load: Callable[[Path, bool, dict[str, str]], tuple[DatasetInfo, Split, Split]]
    expected: str  # the folder/files expected under the data dir, for error messages
    takes_options: bool = False


DATASETS: Registry[DatasetSource] = Registry("dataset")

CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _torchvision_split(cls_name: str, root: Path, download: bool, expected: str, **kw):
    """Instantiate a torchvision dataset class, local files first, then download if allowed."""
    from .tv import torchvision

    cls = getattr(torchvision.datasets, cls_name)
    try:
        return cls(str(root), download=False, **kw)
    except (RuntimeError, OSError, ValueError, EOFError, IndexError, pickle.UnpicklingError) as local_err:
        folder, _, names = expected.partition("{")
        base = root / folder.strip("/") if folder.strip("/") else root
        present = [n for n in names.rstrip("}").split(",") if n and (base / n).is_file()] or (
            folder.strip("/") and base.is_dir() and [q.name for q in base.iterdir() if q.is_file()]
        )
        if present:  # files are there, so this is not "not found"; never download over them
            reason = (str(local_err).strip().splitlines() or [type(local_err).__name__])[0].split(". You can use")[0][
                :160
            ]
            raise DatasetError(
                f"{cls_name} in {base} is present but unreadable or corrupt: incomplete, truncated or damaged "
                f"files ({reason}); expected intact {expected}: replace them, or remove them to download again"
            ) from None
        if not download:
            raise DatasetError(
                f"{cls_name} not found in {root} (expected {expected}); downloading is off"
            ) from local_err
    top = root  # a failed download takes back what it created: the folders, a partial archive
    while not top.parent.exists() and top.parent != top.parent.parent:
        top = top.parent
    existed = root.exists()
    before = set(os.listdir(root)) if root.is_dir() else set()
    try:  # torchvision prints download progress on stdout; keep stdout for results
        with contextlib.redirect_stdout(sys.stderr):
            return cls(str(root), download=True, **kw)
    except Exception as err:  # network errors come in many types (URLError, socket errors, HTTP errors)
        if not existed and top.is_dir():
            shutil.rmtree(top, ignore_errors=True)
        elif root.is_dir():
            for name in set(os.listdir(root)) - before:
                q = root / name
                shutil.rmtree(q, ignore_errors=True) if q.is_dir() and not q.is_symlink() else q.unlink(missing_ok=True)
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise DatasetError(
            f"{cls_name} not found in {root} (expected {expected}) and could not be downloaded: {reason}"
        ) from None


def _from_hwc(data, targets) -> Split:
    images = torch.from_numpy(np.ascontiguousarray(np.asarray(data, dtype=np.uint8).transpose(0, 3, 1, 2)))
    return Split(images, torch.as_tensor(np.asarray(targets), dtype=torch.long))


def _from_hw(data, targets) -> Split:
    images = torch.as_tensor(data, dtype=torch.uint8).unsqueeze(1).contiguous()
    return Split(images, torch.as_tensor(targets, dtype=torch.long).clone())


def _register_cifar(name: str, cls_name: str, folder: str, files: str, mean, std) -> None:
    expected = f"{folder}/{{{files}}}"

    def load(root: Path, download: bool, options: dict[str, str]):
        tr = _torchvision_split(cls_name, root, download, expected, train=True)
        te = _torchvision_split(cls_name, root, download, expected, train=False)
        info = DatasetInfo(name, len(tr.classes), (3, 32, 32), mean, std, tuple(tr.classes))
        return info, _from_hwc(tr.data, tr.targets), _from_hwc(te.data, te.targets)

    DATASETS.register(name)(DatasetSource(load, expected))


_register_cifar(
    "cifar10",
    "CIFAR10",
    "cifar-10-batches-py",
    "data_batch_1..5,test_batch,batches.meta",
    (0.4914, 0.4822, 0.4465),
    (0.2023, 0.1994, 0.2010),
)
_register_cifar(
    "cifar100",
    "CIFAR100",
    "cifar-100-python",
    "train,test,meta",
    (0.5071, 0.4865, 0.4409),
    (0.2673, 0.2564, 0.2762),
)


def _register_mnist_like(name: str, cls_name: str, mean, std) -> None:
    expected = (
        f"{cls_name}/raw/{{train-images-idx3-ubyte,train-labels-idx1-ubyte,"
        "t10k-images-idx3-ubyte,t10k-labels-idx1-ubyte}"
    )

    def load(root: Path, download: bool, options: dict[str, str]):
        tr = _torchvision_split(cls_name, root, download, expected, train=True)
        te = _torchvision_split(cls_name, root, download, expected, train=False)
        info = DatasetInfo(name, len(tr.classes), (1, 28, 28), mean, std, tuple(str(c) for c in tr.classes))
        return info, _from_hw(tr.data, tr.targets), _from_hw(te.data, te.targets)

    DATASETS.register(name)(DatasetSource(load, expected))


_register_mnist_like("mnist", "MNIST", (0.1307,), (0.3081,))
_register_mnist_like("fashionmnist", "FashionMNIST", (0.2860,), (0.3530,))


def _load_svhn(root: Path, download: bool, options: dict[str, str]):
    try:
        import scipy.io  # noqa: F401  (torchvision's SVHN reader needs it)
    except ImportError:
        raise DatasetError("the svhn dataset needs scipy: pip install -e '.[svhn]'") from None
    expected = "{train_32x32.mat,test_32x32.mat}"
    tr = _torchvision_split("SVHN", root, download, expected, split="train")
    te = _torchvision_split("SVHN", root, download, expected, split="test")
    info = DatasetInfo(
        "svhn", 10, (3, 32, 32), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970), tuple(str(i) for i in range(10))
    )
    as_split = lambda d: Split(
        torch.from_numpy(np.ascontiguousarray(d.data)), torch.as_tensor(d.labels, dtype=torch.long)
    )
    return info, as_split(tr), as_split(te)


DATASETS.register("svhn")(DatasetSource(_load_svhn, "{train_32x32.mat,test_32x32.mat}"))


# --------------------------------------------------------------------------------------------- synthetic
SYNTHETIC_DEFAULTS = {"classes": 10, "train": 100, "test": 20, "channels": 3, "size": 32, "noise": 0.25, "seed": 0}


def _load_synthetic(root: Path, download: bool, options: dict[str, str]):
    """Seeded, class-structured images: each class is a smooth random prototype; samples add noise and a random
    brightness shift. A small model learns it in a few epochs; ``noise`` sets the difficulty.

    Options (``synthetic:classes=4,train=50,test=20,channels=1,size=16,noise=0.3,seed=1``): ``train`` and
    ``test`` are images per class."""
    opts = dict(SYNTHETIC_DEFAULTS)
    for key, raw in options.items():
        if key not in opts:
            raise DatasetError(f"unknown synthetic dataset option {key!r}; known: {', '.join(opts)}")
        try:
            opts[key] = type(SYNTHETIC_DEFAULTS[key])(raw)
        except ValueError:
            raise DatasetError(
                f"synthetic option {key}={raw!r} is not a {type(SYNTHETIC_DEFAULTS[key]).__name__}"
            ) from None
    k, c, s = int(opts["classes"]), int(opts["channels"]), int(opts["size"])
    if not (2 <= k <= 1000 and c in (1, 3) and 4 <= s <= 256 and opts["train"] >= 1 and opts["test"] >= 1):
        raise DatasetError("synthetic needs 2<=classes<=1000, channels 1 or 3, 4<=size<=256, train/test >= 1")
    g = torch.Generator().manual_seed(int(opts["seed"]))
    coarse = torch.rand(k, c, 4, 4, generator=g)
    protos = torch.nn.functional.interpolate(coarse, size=(s, s), mode="bilinear", align_corners=False)
    protos = 0.15 + 0.7 * (protos - protos.amin()) / (protos.amax() - protos.amin() + 1e-8)

    def make(per_class: int) -> Split:
        labels = torch.arange(k).repeat_interleave(per_class)
        noise = torch.randn(len(labels), c, s, s, generator=g) * float(opts["noise"])
        shift = (torch.rand(len(labels), 1, 1, 1, generator=g) - 0.5) * 0.2
        x = (protos[labels] + noise + shift).clamp(0, 1)
        perm = torch.randperm(len(labels), generator=g)  # not class-sorted, like real datasets
        return Split((x[perm] * 255).round().to(torch.uint8), labels[perm])

    train, test = make(int(opts["train"])), make(int(opts["test"]))
    info = DatasetInfo("synthetic", k, (c, s, s), (0.5,) * c, (0.25,) * c, tuple(f"class{i}" for i in range(k)))
    return info, train, test


DATASETS.register("synthetic")(DatasetSource(_load_synthetic, "(generated, no files)", takes_options=True))


# --------------------------------------------------------------------------------------------- public API
def parse_dataset_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``"cifar10"`` -> ("cifar10", {}); ``"synthetic:classes=4,size=16"`` -> ("synthetic", {...})."""
    name, _, rest = spec.strip().partition(":")
    source = DATASETS.get(name.lower())
    options: dict[str, str] = {}
    if rest:
        if not source.takes_options:
            raise DatasetError(f"dataset {name!r} takes no options (got {rest!r})")
        for item in rest.split(","):
            key, eq, value = item.partition("=")
            if not eq or not key.strip():
                raise DatasetError(f"bad dataset option {item!r} in {spec!r}; expected key=value")
            options[key.strip()] = value.strip()
    return name.lower(), options


def default_data_dir() -> Path:
    return Path(os.environ.get(DATA_DIR_ENV) or "data")


def _rank_within_class(labels: torch.Tensor, seed: int) -> torch.Tensor:
    """Each image's rank in a seeded random order of its class (0 = first), vectorised: one random key per image,
    one sort by (label, key)."""
    labels = labels.cpu()
    keys = torch.rand(len(labels), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    order = torch.argsort(labels.double() * 2.0 + keys)  # keys < 1 < 2: class-major, random within class
    sorted_labels = labels[order]
    counts = torch.bincount(sorted_labels)
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.empty(len(labels), dtype=torch.long)
    rank[order] = torch.arange(len(labels)) - starts[sorted_labels]
    return rank


def cap_per_class(labels: torch.Tensor, per_class: int, seed: int) -> torch.Tensor:
    """Sorted indices keeping at most ``per_class`` images of each class, chosen uniformly at random (seeded)."""
    if per_class < 1:
        raise DatasetError(f"--per-class must be at least 1, got {per_class}")
    return torch.nonzero(_rank_within_class(labels, seed) < per_class).flatten()


def validation_split(labels: torch.Tensor, fraction: float, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(train, val) sorted positions: ``round(fraction * n_c)`` images of each class c go to validation, chosen at
    random (seeded apart from the per-class cap). Stratified, so a small capped set keeps every class in both."""
    if not (isinstance(fraction, (int, float)) and 0.0 <= fraction < 1.0):
        raise DatasetError(f"the validation fraction must be in [0, 1), got {fraction!r}")
    labels = labels.cpu()
    counts = torch.bincount(labels)
    take = torch.round(counts.double() * fraction).long()
    is_val = _rank_within_class(labels, seed + _VAL_SEED_OFFSET) < take[labels]
    if fraction > 0 and bool((counts - take)[counts > 0].min() < 1):
        raise DatasetError(f"a validation fraction of {fraction} leaves a class with no training image")
    return torch.nonzero(~is_val).flatten(), torch.nonzero(is_val).flatten()


VALIDATION_HALVES = ("method", "selection")
_HALVES_SEED_OFFSET = 2_000_003  # the halves' draw is seeded apart from the cap's and the validation split's


def validation_halves(labels: torch.Tensor, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(method, selection) sorted positions in the validation split: a stratified, seeded cut of it into two halves
    (of each class's ``n_c`` validation images, ``n_c // 2`` go to the method half and the rest to the selection
    half). The one definition of the two halves: a method that reads the validation split inside (its ascent target,
    its attack's non-members, its rewind) may read only the **method half**, and the figures a choice is made on
    (tuning objectives, selections) read only the **selection half**, so that no choice is made on images the
    method trained against."""
    labels = labels.cpu()
    counts = torch.bincount(labels)
    in_method = _rank_within_class(labels, seed + _HALVES_SEED_OFFSET) < (counts // 2)[labels]
    return torch.nonzero(in_method).flatten(), torch.nonzero(~in_method).flatten()


def load_data(
    spec: str,
    data_dir: str | os.PathLike | None = None,
    per_class: int | None = None,
    seed: int = 0,
    download: bool = True,
    val_fraction: float = DEFAULT_VAL_FRACTION,
) -> Data:
    """Load a dataset by name (or ``synthetic:...`` spec) into memory, optionally capped per class, with a
    stratified validation split of ``val_fraction`` of the capped set held out (0: none)."""
    name, options = parse_dataset_spec(spec)
    if not (isinstance(val_fraction, (int, float)) and 0.0 <= val_fraction < 1.0):
        raise DatasetError(f"--val-fraction must be in [0, 1), got {val_fraction!r}")
    root = Path(data_dir) if data_dir is not None else default_data_dir()
    if root.exists() and not root.is_dir():
        raise DatasetError(f"--data-dir {root} is not a directory")
    info, train, test = DATASETS.get(name).load(root, download, options)
    source = torch.arange(len(train))
    if per_class is not None:
        source = cap_per_class(train.labels, per_class, seed)
        train = train.subset(source)
    val = val_source = None
    if val_fraction > 0:
        keep, held = validation_split(train.labels, float(val_fraction), seed)
        val, val_source = train.subset(held), source[held]
        train, source = train.subset(keep), source[keep]
    return Data(info, train, test, source, per_class, seed, spec, val, val_source, float(val_fraction))


def load_data_for(meta: dict, data_dir: str | os.PathLike | None = None, download: bool = True) -> Data:
    """The exact splits a checkpoint (or report) was made on, from its recorded metadata. Checkpoints written
    before the validation split existed record no ``val_fraction``: they trained on the whole capped set (0)."""
    if not isinstance(meta, dict) or not isinstance(meta.get("dataset_spec") or meta.get("dataset"), str):
        raise DatasetError("the checkpoint's metadata names no dataset")
    per_class = meta.get("per_class")
    seed = meta.get("data_seed", 0)
    val_fraction = meta.get("val_fraction", 0.0)
    if per_class is not None and (not isinstance(per_class, int) or isinstance(per_class, bool)):
        raise DatasetError(f"the checkpoint's metadata has a malformed per_class {per_class!r}")
    if not isinstance(seed, int) or isinstance(seed, bool):
        raise DatasetError(f"the checkpoint's metadata has a malformed data_seed {seed!r}")
    if not isinstance(val_fraction, (int, float)) or isinstance(val_fraction, bool):
        raise DatasetError(f"the checkpoint's metadata has a malformed val_fraction {val_fraction!r}")
    return load_data(
        meta.get("dataset_spec") or meta["dataset"],
        data_dir,
        per_class,
        seed=seed,
        download=download,
        val_fraction=float(val_fraction),
    )


# the known-concept dataset ``shapes`` registers itself (its module reads Split and DatasetInfo from this one)
from . import shapes as _shapes  # noqa: E402,F401
