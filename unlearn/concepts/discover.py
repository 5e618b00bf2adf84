"""Unsupervised concept discovery on the training set: the default concept bank, which needs no external model,
no concept examples and no network (an ACE-style reconstruction, Ghorbani et al. 2019, on patches instead of
superpixels).

1. From each class, ``images_per_class`` training images (seeded) are cut into square patches at two scales (half
   and three quarters of the image side, on a regular grid: 3x3 + 2x2 = 13 patches per image); each patch is
   resized back to the image size (bilinear) and embedded with the classifier's own ``features``.
2. Per class, k-means (``clusters`` centres, seeded, dcforget.kmeans) on the L2-normalised patch embeddings; a
   cluster holding fewer than ``min_share`` of the class's patches is dropped (incoherent or rare).
3. Each kept cluster is a concept named ``<class name>-<j>``: a CAV (bank.fit_linear_probe) of its patches vs as
   many random patches of the other classes, dropped when its held-out accuracy is under ``min_acc``.
4. The bank stores the ``previews`` top-scoring patches of each concept (for the preview grid) and the class
   whose patches formed it (``class_of``).

CIFAR's 32 px images give small patches; upsampling them is what the reference's authors also note makes
localisation noisy. The concepts are therefore "what this model sees in these patches", named after their class,
not words."""

from __future__ import annotations

import re
from typing import Any

import torch
import torch.nn.functional as F

from dcforget.datasets import Data
from dcforget.kmeans import kmeans
from dcforget.models import Classifier
from dcforget.train import as_unit, embed

from .bank import ConceptBank, ConceptError, bank_meta, fit_linear_probe

DISCOVER_DEFAULTS = {"images_per_class": 40, "clusters": 4, "min_share": 0.05, "min_acc": 0.7, "previews": 8}


def patches(images: torch.Tensor, scales: tuple[float, ...] = (0.5, 0.75)) -> tuple[torch.Tensor, torch.Tensor]:
    """Square patches of [0,1] images [N, C, H, W], each resized to H x W: ([N * P, C, H, W] float, the source
    image of each patch [N * P])."""
    x = as_unit(images)
    n, _, h, w = x.shape
    out, owner = [], []
    for s in scales:
        ph, pw = max(2, round(h * s)), max(2, round(w * s))
        steps = 3 if s <= 0.5 else 2
        ys = torch.linspace(0, h - ph, steps).round().long().tolist()
        xs = torch.linspace(0, w - pw, steps).round().long().tolist()
        for y in ys:
            for x0 in xs:
                crop = x[:, :, y : y + ph, x0 : x0 + pw]
                out.append(F.interpolate(crop, size=(h, w), mode="bilinear", align_corners=False))
                owner.append(torch.arange(n))
    p = torch.stack(out, 1).flatten(0, 1)  # image-major
    o = torch.stack(owner, 1).flatten()
    return p, o


def _slug(name: str) -> str:
    s = re.sub(r"[^A-Za-z0-9_.+-]+", "_", name).strip("_") or "class"
    return s if s[0].isalnum() else "c" + s


def discover_bank(model: Classifier, data: Data, *, device: torch.device, seed: int = 0, **options: Any) -> ConceptBank:
    """The default concept bank of ``model`` on ``data``'s training split (see the module's docstring)."""
    o = {**DISCOVER_DEFAULTS, **options}
    unknown = sorted(set(o) - set(DISCOVER_DEFAULTS))
    if unknown:
        raise ConceptError(f"unknown discovery option(s): {', '.join(unknown)}; known: {', '.join(DISCOVER_DEFAULTS)}")
    per, k = int(o["images_per_class"]), int(o["clusters"])
    if per < 2 or k < 1 or not 0 <= float(o["min_share"]) < 1 or not 0 <= float(o["min_acc"]) <= 1:
        raise ConceptError(
            "discovery needs images_per_class >= 2, clusters >= 1, 0 <= min_share < 1, 0 <= min_acc <= 1"
        )
    gen = torch.Generator().manual_seed(seed)
    labels = data.train.labels.cpu()
    num_classes = data.info.num_classes
    class_patches, class_feats = [], []
    for c in range(num_classes):
        idx = torch.nonzero(labels == c).flatten()
        if len(idx) == 0:
            class_patches.append(None)
            class_feats.append(None)
            continue
        idx = idx[torch.randperm(len(idx), generator=gen)[:per]]
        p, _ = patches(data.train.images[idx.to(data.train.images.device)].cpu())
        class_patches.append(p)
        class_feats.append(embed(model, p, device=device).cpu())
    names, vs, bs, accs, owners, prev, dropped = [], [], [], [], [], [], []
    for c in range(num_classes):
        fc = class_feats[c]
        if fc is None or len(fc) < k:
            continue
        _, assign, _ = kmeans(F.normalize(fc, dim=1), k, seed=seed + c)
        others = torch.cat([f for j, f in enumerate(class_feats) if j != c and f is not None])
        for j in range(k):
            members = torch.nonzero(assign == j).flatten()
            name = f"{_slug(data.info.class_names[c])}-{j}"
            if len(members) < max(4, float(o["min_share"]) * len(fc)):
                dropped.append({"name": name, "reason": "small cluster", "size": int(len(members))})
                continue
            neg = others[torch.randperm(len(others), generator=gen)[: len(members)]]
            v, b, acc = fit_linear_probe(fc[members], neg, seed=seed + 1000 * c + j)
            if acc < float(o["min_acc"]):
                dropped.append({"name": name, "reason": "held-out accuracy", "val_acc": acc})
                continue
            s = fc[members] @ v + b
            top = members[torch.argsort(s, descending=True)[: int(o["previews"])]]
            imgs = (class_patches[c][top].clamp(0, 1) * 255).round().to(torch.uint8)
            if len(imgs) < int(o["previews"]):
                imgs = torch.cat(
                    [imgs, torch.zeros(int(o["previews"]) - len(imgs), *imgs.shape[1:], dtype=torch.uint8)]
                )
            names.append(name)
            vs.append(v)
            bs.append(b)
            accs.append(acc)
            owners.append(c)
            prev.append(imgs)
    if not names:
        raise ConceptError("concept discovery kept no concept (every cluster was too small or not separable)")
    return ConceptBank(
        names,
        torch.stack(vs).float(),
        torch.stack(bs).float(),
        torch.tensor(accs, dtype=torch.float32),
        {**bank_meta(model, "discovered"), "dataset": data.info.name, "seed": seed, "discovery": o},
        class_of=torch.tensor(owners, dtype=torch.long),
        previews=torch.stack(prev),
        dropped=dropped,
    )
