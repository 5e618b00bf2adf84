"""What the two concept-poisoning methods share: their options check and their run (the engine is
unlearn.concepts.poison)."""

from __future__ import annotations

import torch

from dcforget.errors import ConfigError
from dcforget.models import Classifier
from dcforget.train import embed

from ..concepts.poison import POISON_DEFAULTS, confusion_donor, finetune_head, poisoned_labels
from .base import UnlearnContext
from .common import check_sgd_options, number

REFERENCE = (
    "Chang et al., Class Machine Unlearning for Complex Data via Concepts Inference and Data Poisoning (arXiv "
    "2405.15662); ChangWenhan/Concept_Inference_Unlearn_official src/unlearn/run_unlearn.py, src/core/common.py"
)
__all__ = ["POISON_DEFAULTS", "REFERENCE", "check", "run_poison"]


def check(o: dict, name: str) -> None:
    check_sgd_options(o, name, nonneg=("weight_decay",))
    if "donor" in o:
        number(o, "donor", int, -1, name=name)


def run_poison(ctx: UnlearnContext, mode: str, name: str) -> Classifier:
    o = ctx.options
    check(o, name)
    num_classes = ctx.data.info.num_classes
    gone = ctx.forgotten_classes()
    model = ctx.copy_original().eval()
    xr, yr = ctx.retain()
    xf, yf = ctx.forget()
    donor = None
    if mode == "targeted":
        donor = int(o["donor"])
        if donor == -1:
            donor = confusion_donor(model, xf, gone, ctx.device)
            ctx.extra["donor_rule"] = "the original's most confused kept class"
        elif donor >= num_classes:
            raise ConfigError(f"{name}: donor {donor} is out of range: the model has classes 0..{num_classes - 1}")
        elif bool(gone[donor]):
            raise ConfigError(f"{name}: donor {donor} is a class this request forgets; name a kept class")
        else:
            ctx.extra["donor_rule"] = "given"
        ctx.extra["donor"] = donor
    yp = poisoned_labels(yf, mode, num_classes, ctx.derived_seed("poison-labels"), donor)
    feats = torch.cat([embed_cached(model, xr, ctx), embed_cached(model, xf, ctx)])
    labels = torch.cat([yr.to(ctx.device), yp.to(ctx.device)])
    finetune_head(
        model,
        feats,
        labels,
        epochs=int(o["epochs"]),
        lr=float(o["lr"]),
        momentum=float(o["momentum"]),
        weight_decay=float(o["weight_decay"]),
        batch_size=int(o["batch_size"]),
        seed=ctx.seed,
        device=ctx.device,
    )
    ctx.extra.update(
        {
            "trained": "head only (Classifier.final.head), on cached embeddings",
            "poisoned_images": int(len(yf)),
            "kept_own_label": int((yp.cpu() == yf.cpu()).sum()),
            "train_rows": int(len(labels)),
        }
    )
    return model


def embed_cached(model: Classifier, images: torch.Tensor, ctx: UnlearnContext) -> torch.Tensor:
    return embed(model, images, device=ctx.device)
