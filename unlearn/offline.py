"""DC-U's offline phase (docs/reference/dcu.md §3.1), run once before any request, and its remembrance set.

The remembrance set S holds ``ipc`` images per class. DC-U takes them from the test split, which leaks the
evaluation population into training; the default here is ``heldout``: images of the training split that the
per-class cap left out (so neither the model's training set nor the test set). ``test`` reproduces the
reference.

For each of ``iterations``: train Final on S through the frozen Databank (= Beginning + Intermediate; Adam
lr_final, batch 32, final_epochs), then train Intermediate on the full training set through the frozen Final
and Beginning (Adam lr_intermediate, batch 256, intermediate_epochs). ``final_reset_each_iter`` reproduces the
VGG/ResNet variant that restarts Final from the original head every iteration (the CNN/MLP code carries it
over, the default). ``final_reinit_each_iter`` gives Final a fresh random initialisation every iteration (DC-U's
condensed model, where the decoder must suit any newly initialised classifier).

``logit_relu`` reproduces the reference MLP's ReLU on the logits where the reference has it: its ``Final``
module (cifar10_exps/mlp/model/model.py:95-102) applies one, its ``MLP.forward`` (model.py:38-43, the original
training) does not. So the original is trained without it and the ReLU enters here, for the offline phase and
everything after (the checkpoint written records it as the MLP's ``logit_relu`` option).

``partial_batches`` cuts every epoch as the reference's DataLoader does (100 remembrance images at batch 32: 32 +
32 + 32 + 4); by default the toolkit's trainers cut even batches (``dcforget.train.batch_bounds``).

The Beginning never trains here and is in eval mode, so its output on the training set is computed once and the
Intermediate epochs run on it (``cache_beginning``; the same arithmetic up to float rounding, skipped when the
activations would exceed 2 GiB): DC-U's MLP offline phase (10 x 20 Intermediate epochs on 50,000 images) takes
about 4.5 minutes on one CPU thread, most of its cost having been the frozen first layer.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch

from dcforget.config import check_options
from dcforget.datasets import Data, cap_per_class, load_data
from dcforget.errors import ConfigError
from dcforget.models import Classifier, model_from_config
from dcforget.runtime import seeded
from dcforget.train import TrainConfig, fit

OFFLINE_DEFAULTS = {
    "iterations": 10,
    "final_epochs": 20,
    "intermediate_epochs": 20,
    "lr_final": 1e-4,
    "lr_intermediate": 1e-5,
    "final_batch_size": 32,
    "batch_size": 256,
    "final_reset_each_iter": False,
    "final_reinit_each_iter": False,
    "bf16": False,
    "logit_relu": False,
    "cache_beginning": True,
    "partial_batches": False,
}
CACHE_LIMIT_BYTES = 2 << 30


@dataclass
class Remembrance:
    images: torch.Tensor  # uint8 [ipc * classes, C, H, W]
    labels: torch.Tensor
    source: str
    indices: torch.Tensor  # into the full training split (heldout) or the test split (test)


def remembrance_set(data: Data, ipc: int, source: str, seed: int, data_dir=None, download: bool = True) -> Remembrance:
    if ipc < 1:
        raise ConfigError("the remembrance set needs at least 1 image per class")
    if source == "test":
        labels = data.test.labels.cpu()
        idx = cap_per_class(labels, ipc, seed)
        return Remembrance(data.test.images[idx.to(data.test.images.device)].cpu(), labels[idx], "test", idx)
    if source != "heldout":
        raise ConfigError(f"remembrance source must be 'heldout' or 'test', got {source!r}")
    full = load_data(data.spec or data.info.name, data_dir, None, seed=data.seed, download=download, val_fraction=0.0)
    unused = torch.ones(len(full.train), dtype=torch.bool)
    unused[data.source_indices.cpu()] = False
    if data.val_source_indices is not None:  # validation images judge choices: never train on them
        unused[data.val_source_indices.cpu()] = False
    pool = torch.nonzero(unused).flatten()
    counts = torch.bincount(full.train.labels[pool], minlength=data.info.num_classes)
    if int(counts.min()) < ipc:
        raise ConfigError(
            f"only {int(counts.min())} held-out training images in some class (the per-class cap "
            f"leaves {len(pool)} unused); lower the cap (--per-class) or use remembrance source 'test'"
        )
    pick = pool[cap_per_class(full.train.labels[pool], ipc, seed)]
    return Remembrance(full.train.images[pick], full.train.labels[pick], "heldout", pick)


def offline_phase(
    model: Classifier,
    data: Data,
    rem: Remembrance,
    options: dict[str, Any],
    *,
    device: torch.device,
    seed: int = 0,
    quiet: bool = False,
) -> Classifier:
    o = {**OFFLINE_DEFAULTS, **check_options(options, OFFLINE_DEFAULTS, " of the offline phase")}
    model = copy.deepcopy(model).to(device)
    if o["logit_relu"]:
        model = with_logit_relu(model).to(device)
    beginning, intermediate, final = model.split()
    acts = _beginning_outputs(beginning, data.train.images, device, bool(o["bf16"])) if o["cache_beginning"] else None
    head0 = copy.deepcopy(final.state_dict())
    bf16 = bool(o["bf16"])
    cut = "partial" if o["partial_batches"] else "even"
    for it in range(int(o["iterations"])):
        if o["final_reset_each_iter"]:
            final.load_state_dict(head0)
        if o["final_reinit_each_iter"]:
            with seeded(seed * 7919 + it):
                for m in final.modules():
                    if hasattr(m, "reset_parameters"):
                        m.reset_parameters()
        for mod, on in ((beginning, False), (intermediate, False), (final, True)):
            mod.requires_grad_(on)
        fit(
            model,
            rem.images.to(device),
            rem.labels.to(device),
            TrainConfig(
                epochs=int(o["final_epochs"]),
                batch_size=int(o["final_batch_size"]),
                lr=float(o["lr_final"]),
                bf16=bf16,
                batches=cut,
            ),
            device=device,
            seed=seed + it,
            train_modules=[final],
            quiet=quiet,
            desc=f"offline {it + 1}: final",
        )
        for mod, on in ((beginning, False), (intermediate, True), (final, False)):
            mod.requires_grad_(on)
        fit(
            model if acts is None else torch.nn.Sequential(intermediate, final),
            data.train.images if acts is None else acts,
            data.train.labels,
            TrainConfig(
                epochs=int(o["intermediate_epochs"]),
                batch_size=int(o["batch_size"]),
                lr=float(o["lr_intermediate"]),
                bf16=bf16,
                batches=cut,
            ),
            device=device,
            seed=seed + it,
            train_modules=[intermediate],
            quiet=quiet,
            desc=f"offline {it + 1}: intermediate",
        )
    model.requires_grad_(True)
    return model.eval()


def with_logit_relu(model: Classifier) -> Classifier:
    """The same weights with a ReLU on the logits (the architecture's ``logit_relu`` option: the MLP's only)."""
    if model.config.get("options", {}).get("logit_relu"):
        return model
    if model.arch != "mlp":
        raise ConfigError(
            f"logit_relu reproduces DC-U's MLP (ReLU on its logits); model {model.arch!r} has no such option"
        )
    cfg = {**model.config, "options": {**model.config.get("options", {}), "logit_relu": True}}
    out = model_from_config(cfg)
    out.load_state_dict(model.state_dict())
    return out.train(model.training)


@torch.no_grad()
def _beginning_outputs(
    beginning: torch.nn.Module, images: torch.Tensor, device: torch.device, bf16: bool, batch_size: int = 1024
) -> torch.Tensor | None:
    """The frozen Beginning's output on every image, in eval mode, float32 on ``device``; None when it would take
    more than CACHE_LIMIT_BYTES."""
    from dcforget.train import as_unit

    was = beginning.training
    beginning.eval()
    shape = tuple(beginning(torch.zeros(2, *images.shape[1:], device=device)).shape[1:])
    if len(images) * math.prod(shape) * 4 > CACHE_LIMIT_BYTES:
        beginning.train(was)
        return None
    out = torch.empty(len(images), *shape, device=device)
    for s in range(0, len(images), batch_size):
        x = as_unit(images[s : s + batch_size].to(device))
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            out[s : s + batch_size] = beginning(x).float()
    beginning.train(was)
    return out
