"""Concept banks: concept activation vectors (CAVs) in a classifier's embedding space, stored in HDF5.

A concept c is a direction v_c (with bias b_c) in the embedding ``model.features(x)`` that separates images showing
the concept from images that do not. Its score on an image is the post-hoc CBM's (Yuksekgonul et al. 2023)
``s_c(x) = (v_c . e(x) + b_c) / ||v_c||``: the signed distance of the embedding to the concept's boundary.

A bank is learned (:func:`learn_bank`) from example sets a user gives -- a folder of images per concept
(:func:`read_example_folders`) or an HDF5 file (:func:`read_example_h5`) -- or discovered without any external model
or network (:mod:`unlearn.concepts.discover`). Each CAV is a logistic regression in the embedding space fitted on 80%
of its examples; its accuracy on the other 20% is stored, and concepts below ``min_acc`` (0.7 by default, as the
offline recommendation in the project's reference) are dropped and listed in the bank.

The file (schema ``dcforget.concept_bank`` version 1): root attributes ``schema``, ``schema_version``,
``created_utc``, ``toolkit_version``, ``source`` (``examples`` or ``discovered``), ``arch``, ``feature_dim``,
``model_fingerprint`` (sha256 of the classifier's weights: a bank belongs to one model), ``dataset``,
``num_classes``, ``image_shape``, ``dropped_json``, ``config_json``; datasets ``names`` (UTF-8), ``vectors``
float32 [K, D], ``biases`` float32 [K], ``val_acc`` float32 [K], optional ``class_of`` int64 [K] (discovered:
the class whose patches formed the concept, -1 otherwise) and ``previews`` uint8 [K, m, C, H, W] (each concept's
top-scoring images or patches, for the preview grid)."""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch
import torch.nn.functional as F

from dcforget import __version__
from dcforget.errors import ArchitectureMismatchError, ConfigError, DcForgetError
from dcforget.io import atomic_path
from dcforget.models import Classifier
from dcforget.train import embed

SCHEMA = "dcforget.concept_bank"
SCHEMA_VERSION = 1
NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")


class ConceptError(DcForgetError):
    """A concept request that cannot be served: an unknown concept, an empty or missing example set, images of
    the wrong shape, a damaged bank file, a bank made for another model."""


@dataclass
class ConceptBank:
    names: list[str]
    vectors: torch.Tensor  # float32 [K, D]
    biases: torch.Tensor  # float32 [K]
    val_acc: torch.Tensor  # float32 [K]
    meta: dict[str, Any]  # source, arch, feature_dim, model_fingerprint, dataset, num_classes, image_shape, ...
    class_of: torch.Tensor | None = None  # int64 [K]
    previews: torch.Tensor | None = None  # uint8 [K, m, C, H, W]
    dropped: list[dict[str, Any]] = field(default_factory=list)  # concepts under min_acc: name and accuracy

    def __len__(self) -> int:
        return len(self.names)

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """Concept scores [N, K] of embeddings [N, D]: (v_c . e + b_c) / ||v_c||."""
        v = self.vectors.to(features.device)
        return (features @ v.T + self.biases.to(features.device)) / v.norm(dim=1).clamp_min(1e-12)

    def index(self, name: str) -> int:
        """The position of concept ``name``; ConceptError naming the known ones when there is none."""
        if name not in self.names:
            known = ", ".join(self.names[:20]) + (" ..." if len(self.names) > 20 else "")
            raise ConceptError(f"unknown concept {name!r}; the bank has: {known}")
        return self.names.index(name)

    def check_model(self, model: Classifier) -> None:
        """ArchitectureMismatchError unless the bank was made in ``model``'s embedding space (same weights)."""
        if self.meta.get("model_fingerprint") != model_fingerprint(model):
            raise ArchitectureMismatchError(
                f"the concept bank was learned in another model's embedding space ({self.meta.get('arch')}, "
                f"weights {str(self.meta.get('model_fingerprint'))[:12]}); this model is {model.arch}, weights "
                f"{model_fingerprint(model)[:12]}: learn or discover a bank for it"
            )


def model_fingerprint(model: Classifier) -> str:
    """sha256 of the model's state dict (names, shapes and values), on the CPU."""
    h = hashlib.sha256()
    for name, t in model.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME.match(name):
        raise ConceptError(
            f"bad concept name {name!r}: 1-64 characters, letters, digits and _ . + - (starting with a letter or digit)"
        )
    return name


# --------------------------------------------------------------------------------------------- fitting
def fit_linear_probe(
    pos: torch.Tensor, neg: torch.Tensor, *, seed: int, l2: float = 1e-3, steps: int = 300
) -> tuple[torch.Tensor, torch.Tensor, float]:
    """A CAV: L2-regularised logistic regression of positives vs negatives (embeddings [n, D]), full batch
    (L-BFGS), on a seeded 80% of each set; returns (v, b, accuracy on the other 20%). Inputs are centred and scaled
    by the pooled std for the fit; v and b are mapped back to raw embedding space."""
    gen = torch.Generator().manual_seed(seed)
    parts = []
    for x in (pos, neg):
        perm = torch.randperm(len(x), generator=gen).to(x.device)
        cut = max(1, int(round(0.8 * len(x)))) if len(x) > 1 else len(x)
        parts.append((x[perm[:cut]], x[perm[cut:]]))
    xtr = torch.cat([parts[0][0], parts[1][0]]).float()
    ytr = torch.cat([torch.ones(len(parts[0][0])), torch.zeros(len(parts[1][0]))]).to(xtr.device)
    xva = torch.cat([parts[0][1], parts[1][1]]).float()
    yva = torch.cat([torch.ones(len(parts[0][1])), torch.zeros(len(parts[1][1]))]).to(xtr.device)
    mu, sd = xtr.mean(0), xtr.std(0).mean().clamp_min(1e-6)
    z = (xtr - mu) / sd
    w = torch.zeros(z.shape[1], device=z.device, requires_grad=True)
    b = torch.zeros((), device=z.device, requires_grad=True)
    opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        opt.zero_grad()
        loss = F.binary_cross_entropy_with_logits(z @ w + b, ytr) + l2 * (w * w).sum()
        loss.backward()
        return loss

    opt.step(closure)
    with torch.no_grad():
        v = w / sd
        bias = b - (mu * v).sum()
        xe = xva if len(xva) else xtr
        ye = yva if len(yva) else ytr
        acc = float((((xe @ v + bias) > 0).float() == ye).float().mean())
    return v.detach(), bias.detach(), acc


def learn_bank(
    model: Classifier,
    examples: dict[str, tuple[torch.Tensor, torch.Tensor | None]],
    *,
    device: torch.device,
    seed: int = 0,
    min_acc: float = 0.7,
    meta: dict[str, Any] | None = None,
    previews: int = 8,
) -> ConceptBank:
    """CAVs of the named concepts from example images (uint8 or [0,1] float, [n, C, H, W], in the model's image
    shape). ``examples[name] = (positives, negatives)``; negatives None: the other concepts' positives (as many,
    seeded). Concepts whose held-out accuracy is under ``min_acc`` are dropped (listed in ``bank.dropped``);
    ConceptError when none is left."""
    if len(examples) == 0:
        raise ConceptError("no concepts to learn: give at least one concept example set")
    if any(neg is None for _, neg in examples.values()) and len(examples) < 2:
        raise ConceptError(
            "one concept without negative examples: give a neg/ set, or two or more concepts (each one's "
            "negatives are then the others' images)"
        )
    shape = tuple(model.config["image_shape"])
    feats: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    for name, (pos, neg) in examples.items():
        check_name(name)
        for what, x in (("positive", pos), ("negative", neg)):
            if x is None:
                continue
            if x.dim() != 4 or tuple(x.shape[1:]) != shape:
                raise ConceptError(
                    f"concept {name!r}: {what} images are {tuple(x.shape[1:])}, the model takes {shape} (C, H, W)"
                )
            if len(x) < 2:
                raise ConceptError(f"concept {name!r}: at least 2 {what} images are needed, got {len(x)}")
        feats[name] = (
            embed(model, pos, device=device),
            embed(model, neg, device=device) if neg is not None else None,
        )
    names, vs, bs, accs, dropped, prev = [], [], [], [], [], []
    gen = torch.Generator().manual_seed(seed)
    for i, (name, (fp, fn)) in enumerate(feats.items()):
        if fn is None:
            pool = torch.cat([p for other, (p, _) in feats.items() if other != name])
            fn = pool[torch.randperm(len(pool), generator=gen)[: max(len(fp), 2)].to(pool.device)]
        v, b, acc = fit_linear_probe(fp, fn, seed=seed + i)
        if acc < min_acc:
            dropped.append({"name": name, "val_acc": acc})
            continue
        names.append(name)
        vs.append(v.cpu())
        bs.append(b.cpu())
        accs.append(acc)
        pos = examples[name][0]
        s = (fp @ v + b).cpu()
        top = torch.argsort(s, descending=True)[:previews]
        imgs = pos[top.to(pos.device)].cpu()
        prev.append(imgs if imgs.dtype == torch.uint8 else (imgs.clamp(0, 1) * 255).round().to(torch.uint8))
    if not names:
        raise ConceptError(
            "no concept reached the minimum held-out accuracy "
            f"{min_acc}: " + ", ".join(f"{d['name']} {d['val_acc']:.2f}" for d in dropped)
        )
    m = max(len(p) for p in prev)
    pad = [torch.cat([p, torch.zeros(m - len(p), *p.shape[1:], dtype=torch.uint8)]) for p in prev]
    return ConceptBank(
        names,
        torch.stack(vs).float(),
        torch.stack(bs).float(),
        torch.tensor(accs, dtype=torch.float32),
        {**bank_meta(model, "examples"), **(meta or {}), "min_acc": min_acc, "seed": seed},
        class_of=torch.full((len(names),), -1, dtype=torch.long),
        previews=torch.stack(pad),
        dropped=dropped,
    )


def bank_meta(model: Classifier, source: str) -> dict[str, Any]:
    return {
        "source": source,
        "arch": model.arch,
        "feature_dim": int(model.feature_dim),
        "model_fingerprint": model_fingerprint(model),
        "num_classes": int(model.config["num_classes"]),
        "image_shape": list(model.config["image_shape"]),
    }


# --------------------------------------------------------------------------------------------- example sets
def _read_image(path: Path) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            im.load()
            arr = np.asarray(im)
    except (OSError, UnidentifiedImageError, ValueError) as err:
        raise ConceptError(f"{path}: not a readable image ({type(err).__name__})") from None
    if arr.dtype != np.uint8:
        raise ConceptError(f"{path}: 8-bit images only, got {arr.dtype}")
    t = torch.from_numpy(arr.copy())
    return t[None] if t.dim() == 2 else t.permute(2, 0, 1)


def _read_images(folder: Path, shape: tuple[int, int, int]) -> torch.Tensor:
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ConceptError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)})")
    out = []
    for p in files:
        img = _read_image(p)
        if tuple(img.shape) != shape:
            raise ConceptError(
                f"{p}: image is {tuple(img.shape)} (C, H, W), the model takes {shape}; resize the example sets"
            )
        out.append(img)
    return torch.stack(out)


def read_example_folders(
    root: str | os.PathLike, shape: tuple[int, int, int], only: list[str] | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Concept example sets from a folder with one sub-folder per concept: ``ROOT/<concept>/*.png`` are its
    positives, or ``ROOT/<concept>/pos/`` and ``ROOT/<concept>/neg/`` when both exist. ``only``: these concepts
    (ConceptError for one that has no folder)."""
    r = Path(root)
    if not r.is_dir():
        raise ConceptError(f"concept folder {r} does not exist or is not a directory")
    folders = {p.name: p for p in sorted(r.iterdir()) if p.is_dir() and not p.name.startswith(".")}
    if only:
        missing = [n for n in only if n not in folders]
        if missing:
            raise ConceptError(
                f"unknown concept {missing[0]!r}: {r} has no folder of that name; it has: "
                f"{', '.join(folders) or 'none'}"
            )
        folders = {n: folders[n] for n in only}
    if not folders:
        raise ConceptError(f"{r}: no concept folders (one sub-folder of images per concept)")
    out = {}
    for name, p in folders.items():
        check_name(name)
        if (p / "pos").is_dir() and (p / "neg").is_dir():
            out[name] = (_read_images(p / "pos", shape), _read_images(p / "neg", shape))
        else:
            out[name] = (_read_images(p, shape), None)
    return out


def read_example_h5(
    path: str | os.PathLike, shape: tuple[int, int, int], only: list[str] | None = None
) -> dict[str, tuple[torch.Tensor, torch.Tensor | None]]:
    """Concept example sets from HDF5: one group per concept holding ``pos`` (and optionally ``neg``), uint8
    [n, C, H, W] (or float in [0, 1])."""
    p = Path(path)
    if not p.is_file():
        raise ConceptError(f"concept example file {p} does not exist")
    out: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}
    try:
        with h5py.File(p, "r") as f:
            groups = [k for k in f.keys() if isinstance(f[k], h5py.Group)]
            if only:
                missing = [n for n in only if n not in groups]
                if missing:
                    raise ConceptError(f"unknown concept {missing[0]!r}: {p} has {', '.join(groups) or 'none'}")
                groups = list(only)
            if not groups:
                raise ConceptError(f"{p}: no concept groups (one group per concept, holding pos and optionally neg)")
            for name in groups:
                check_name(name)
                g = f[name]
                if "pos" not in g:
                    raise ConceptError(f"{p}: concept {name!r} has no pos dataset")
                sets = []
                for key in ("pos", "neg"):
                    if key not in g:
                        sets.append(None)
                        continue
                    arr = np.asarray(g[key])
                    if arr.dtype == np.uint8:
                        t = torch.from_numpy(arr)
                    elif arr.dtype.kind == "f" and np.isfinite(arr).all() and arr.min() >= 0 and arr.max() <= 1:
                        t = torch.from_numpy(arr.astype(np.float32))
                    else:
                        raise ConceptError(f"{p}: {name}/{key} must be uint8 or float in [0, 1], got {arr.dtype}")
                    if t.dim() != 4 or tuple(t.shape[1:]) != shape:
                        raise ConceptError(
                            f"{p}: {name}/{key} images are {tuple(t.shape[1:])}, the model takes {shape} (C, H, W)"
                        )
                    sets.append(t)
                out[name] = (sets[0], sets[1])
    except ConceptError:
        raise
    except (OSError, KeyError, ValueError, TypeError) as err:
        raise ConceptError(f"{p}: not a readable concept example file ({type(err).__name__})") from None
    return out


# --------------------------------------------------------------------------------------------- HDF5 bank I/O
def write_bank(path: str | os.PathLike, bank: ConceptBank, *, force: bool = False, config: dict | None = None) -> Path:
    with atomic_path(path, force=force) as tmp:
        with h5py.File(tmp, "w") as f:
            f.attrs["schema"] = SCHEMA
            f.attrs["schema_version"] = SCHEMA_VERSION
            f.attrs["created_utc"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            f.attrs["toolkit_version"] = __version__
            for k in ("source", "arch", "model_fingerprint", "dataset"):
                f.attrs[k] = str(bank.meta.get(k, ""))
            f.attrs["feature_dim"] = int(bank.meta["feature_dim"])
            f.attrs["num_classes"] = int(bank.meta["num_classes"])
            f.attrs["image_shape"] = np.asarray(bank.meta["image_shape"], dtype=np.int64)
            f.attrs["dropped_json"] = json.dumps(bank.dropped)
            f.attrs["config_json"] = json.dumps(config or bank.meta.get("config", {}), default=str)
            f.attrs["meta_json"] = json.dumps({k: v for k, v in bank.meta.items() if k != "config"}, default=str)
            f.create_dataset("names", data=np.array(bank.names, dtype=h5py.string_dtype("utf-8")))
            f.create_dataset("vectors", data=bank.vectors.cpu().numpy().astype(np.float32), fletcher32=True)
            f.create_dataset("biases", data=bank.biases.cpu().numpy().astype(np.float32), fletcher32=True)
            f.create_dataset("val_acc", data=bank.val_acc.cpu().numpy().astype(np.float32), fletcher32=True)
            if bank.class_of is not None:
                f.create_dataset("class_of", data=bank.class_of.cpu().numpy().astype(np.int64))
            if bank.previews is not None:
                f.create_dataset("previews", data=bank.previews.cpu().numpy(), fletcher32=True)
    return Path(path)


def read_bank(path: str | os.PathLike) -> ConceptBank:
    """A concept bank, validated: schema and version, shapes agreeing, finite vectors, no zero vector, unique
    names. ConceptError saying what is wrong."""
    p = Path(path)
    if not p.is_file():
        raise ConceptError(f"concept bank {p} does not exist")

    def bad(msg: str) -> ConceptError:
        return ConceptError(f"{p}: {msg}")

    try:
        with h5py.File(p, "r") as f:
            if f.attrs.get("schema") != SCHEMA:
                raise bad(f"not a concept bank (schema {f.attrs.get('schema')!r}, expected {SCHEMA!r})")
            if int(f.attrs.get("schema_version", -1)) != SCHEMA_VERSION:
                raise bad(f"concept bank schema version {f.attrs.get('schema_version')} (this toolkit reads 1)")
            for k in ("names", "vectors", "biases", "val_acc"):
                if k not in f:
                    raise bad(f"damaged concept bank: no {k!r} dataset")
            names = [n.decode() if isinstance(n, bytes) else str(n) for n in f["names"][()]]
            vectors = torch.from_numpy(np.asarray(f["vectors"], dtype=np.float32))
            biases = torch.from_numpy(np.asarray(f["biases"], dtype=np.float32))
            val_acc = torch.from_numpy(np.asarray(f["val_acc"], dtype=np.float32))
            class_of = torch.from_numpy(np.asarray(f["class_of"], dtype=np.int64)) if "class_of" in f else None
            previews = torch.from_numpy(np.asarray(f["previews"])) if "previews" in f else None
            meta = json.loads(f.attrs.get("meta_json", "{}"))
            meta["config"] = json.loads(f.attrs.get("config_json", "{}"))
            dropped = json.loads(f.attrs.get("dropped_json", "[]"))
    except ConceptError:
        raise
    except (OSError, KeyError, ValueError, TypeError, json.JSONDecodeError) as err:
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:120]
        raise bad(f"not a readable concept bank ({first})") from None
    k = len(names)
    if k == 0:
        raise bad("the bank holds no concept")
    if len(set(names)) != k:
        raise bad("concept names are not unique")
    if vectors.dim() != 2 or vectors.shape[0] != k or biases.shape != (k,) or val_acc.shape != (k,):
        raise bad(f"shapes disagree: {k} names, vectors {tuple(vectors.shape)}, biases {tuple(biases.shape)}")
    if vectors.shape[1] != int(meta.get("feature_dim", -1)):
        raise bad(f"vectors have {vectors.shape[1]} dimensions, the bank's model {meta.get('feature_dim')}")
    if not (torch.isfinite(vectors).all() and torch.isfinite(biases).all()):
        raise bad("non-finite concept vectors")
    if bool((vectors.norm(dim=1) == 0).any()):
        raise bad("a concept vector is zero")
    if class_of is not None and class_of.shape != (k,):
        raise bad("class_of does not have one entry per concept")
    if previews is not None and (previews.dim() != 5 or previews.shape[0] != k or previews.dtype != torch.uint8):
        raise bad("previews must be uint8 [K, m, C, H, W]")
    return ConceptBank(names, vectors, biases, val_acc, meta, class_of, previews, dropped)


def preview_grid(bank: ConceptBank, path: str | os.PathLike, *, columns: int = 8, force: bool = False) -> Path:
    """One row per concept: its top-scoring example images or patches (``bank.previews``)."""
    from dcforget.images import save_grid

    if bank.previews is None:
        raise ConfigError("this bank stores no preview images")
    rows = [p.float() / 255 for p in bank.previews]
    save_grid(rows, path, columns=columns, scale=2, force=force)
    return Path(path)
