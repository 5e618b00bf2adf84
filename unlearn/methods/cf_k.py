"""CF-k, Catastrophic Forgetting-k (Deep Unlearn ``munl/unlearning/catastrophic_forgetting_k.py``, from the SCRUB
notebooks; docs/reference/unlearning-methods.md §1.5 item 10). Freeze the whole model, unfreeze its last
``num_blocks`` blocks plus the classifier, and fine-tune them on the retain set with SGD WITHOUT momentum on
``CE + weight_decay/2 * ||theta - theta0||^2`` (theta0: the weights before fine-tuning, the penalty over the trainable
parameters only), the model in eval() mode throughout (BatchNorm running statistics frozen, dropout off). The lr
is step-decayed per epoch as SCRUB's ``adjust_learning_rate``: in epoch e (0-based) it is
``lr * decay_rate ** #{d in [int(.5E), int(.8E), int(.9E)] : e > d}`` (E = ``epochs``; 10 epochs: epochs 0-5 at lr,
6-8 at lr*0.1, 9 at lr*0.01).

Defaults are CatastrophicForgettingK's ORIGINAL_* constants: lr 0.01 (``learning_rate``), 10 epochs, batch 256,
``num_blocks`` 1, ``decay_rate`` 0.1 (``sgda_decay_rate``), ``weight_decay`` 0.1 (``sgda_weight_decay``, the
proximal coefficient, not SGD's weight decay, which is 0). Searched (``munl/settings.py``): num_blocks int [1, 10],
decay_rate [0, 1], and the shared lr, weight decay, batch size and epochs. The reference also searches
``sgda_learning_rate`` and ``momentum``, which its code never reads; they are not options here.

What a "block" is (``model_blocks``, one definition for CF-k and EU-k): the ordered list of the parametrised units
of the feature extractor (``beginning``, ``intermediate``, ``final.body``) in forward order; the classifier
(``Classifier.final.head``, all of it, e.g. both fc layers of the cnn) is always unfrozen on top of them.

* resnet18: ``stem`` (conv1 + bn1), ``layer1``, ``layer2``, ``layer3``, ``layer4`` -- the residual stages, which is
  the reference's block unit (``get_resnet_blocks``), so ``num_blocks=1`` unfreezes layer4 + fc exactly as there.
* every other architecture: a block starts at each Conv2d or Linear layer and takes the parametrised layers that
  follow it up to the next one (its norm layer): cnn 4 blocks (conv+BN), convnet ``depth`` blocks (conv+norm),
  vgg16 13 convs, mlp 2 Linear layers (the third Linear is the head).

``num_blocks`` larger than the number of blocks means all of them (the whole network trains). Deviation: the
reference's blocks are ResNet's layer1..layer4 only, so its stem is never unfrozen (num_blocks >= 4 is "all but the
stem"); ``freeze_stem=true`` reproduces that (the first block never trains; on other architectures that is the
first conv block / first Linear).
"""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn

from dcforget.models import Classifier
from dcforget.space import Float, Int
from dcforget.train import TrainConfig, fit

from .base import UnlearnContext, register
from .common import epoch_seeds, require, step_decay_lr

_UNITS = (nn.Conv2d, nn.Linear)


def model_blocks(model: Classifier) -> list[tuple[str, list[nn.Module]]]:
    """The feature extractor's blocks in forward order, each ``(name, modules)``, the head excluded (see the
    module docstring). Names are the model's qualified module names (resnet18: stem, layer1..layer4)."""
    if getattr(model, "arch", None) == "resnet18":
        b = model.beginning
        return [
            ("stem", [b[1], b[2]]),
            ("layer1", [b[4]]),
            ("layer2", [b[5]]),
            ("layer3", [model.intermediate]),
            ("layer4", [model.final.body[0]]),
        ]
    names = {id(m): n for n, m in model.named_modules()}
    blocks: list[tuple[str, list[nn.Module]]] = []
    for part in (model.beginning, model.intermediate, model.final.body):
        for m in part.modules():
            if next(m.children(), None) is not None or next(m.parameters(recurse=False), None) is None:
                continue  # containers and parameter-free layers (Normalize, ReLU, pooling)
            if isinstance(m, _UNITS) or not blocks:
                blocks.append((names[id(m)], [m]))
            else:
                blocks[-1][1].append(m)
    return blocks


def last_blocks(model: Classifier, num_blocks: int, freeze_stem: bool = False) -> list[tuple[str, list[nn.Module]]]:
    """The last ``num_blocks`` blocks (all of them when there are fewer; the first one never with ``freeze_stem``)."""
    blocks = model_blocks(model)
    if freeze_stem:
        blocks = blocks[1:]
    return blocks[max(len(blocks) - num_blocks, 0) :] if num_blocks > 0 else []


def finetune_last_k(
    ctx: UnlearnContext,
    *,
    desc: str,
    reinit: Callable[[Classifier, list[nn.Module]], None] | None = None,
    augment=None,
    train_reinit_bn: bool = False,
) -> Classifier:
    """CF-k's fine-tuning (and EU-k's, with ``reinit(model, modules)`` re-initialising the chosen blocks and the
    head first)."""
    o = ctx.options
    require(
        o,
        desc,
        nonneg_int=("num_blocks",),
        positive_int=("epochs", "batch_size"),
        positive=("lr",),
        nonneg=("decay_rate", "weight_decay"),
        flags=("freeze_stem",),
    )
    num_blocks, epochs, bs = int(o["num_blocks"]), int(o["epochs"]), int(o["batch_size"])
    lr, decay, wd = float(o["lr"]), float(o["decay_rate"]), float(o["weight_decay"])
    model = ctx.copy_original()
    chosen = last_blocks(model, num_blocks, o["freeze_stem"])
    modules = [m for _, ms in chosen for m in ms] + [model.final.head]
    if reinit is not None:
        reinit(model, modules)
    model.requires_grad_(False)
    for m in modules:
        m.requires_grad_(True)
    trainable = [p for p in model.parameters() if p.requires_grad]
    theta0 = [p.detach().clone() for p in trainable]  # after any re-initialisation, as the reference's deepcopy
    ctx.extra.update(
        {
            "blocks": [n for n, _ in model_blocks(model)],
            "unfrozen_blocks": [n for n, _ in chosen],
            "trainable_params": sum(p.numel() for p in trainable),
            "total_params": sum(p.numel() for p in model.parameters()),
        }
    )

    def proximal(logits, x, idx):
        return wd / 2 * sum(((p - p0) ** 2).sum() for p, p0 in zip(trainable, theta0))

    xr, yr = ctx.retain()
    opt = torch.optim.SGD(trainable, lr=lr, momentum=0.0, weight_decay=0.0)
    lrs = [step_decay_lr(e, epochs, lr, decay) for e in range(epochs)]  # fk_finetune counts epochs from 0
    # eval() mode throughout (train_modules=[]); EU-k's train_bn puts the re-initialised modules in train mode
    train_modules = modules if train_reinit_bn else []
    for e, (lr_e, s) in enumerate(zip(lrs, epoch_seeds(ctx.seed, epochs))):
        if lr_e <= 0:  # decay_rate 0: the decayed epochs would not move the model (SGD with lr 0)
            continue
        cfg = TrainConfig(epochs=1, batch_size=bs, optimizer="sgd", lr=lr_e, momentum=0.0, weight_decay=0.0)
        fit(
            model,
            xr,
            yr,
            cfg,
            device=ctx.device,
            seed=s,
            optimizer=opt,
            extra_loss=proximal,
            augment=augment,
            train_modules=train_modules,
            quiet=ctx.quiet,
            desc=f"{desc} {e + 1}/{epochs}",
        )
    model.requires_grad_(True)
    ctx.extra["lrs"] = lrs
    return model


CF_K_SPACE = {"num_blocks": Int(1, 10), "decay_rate": Float(0.0, 1.0)}


@register(
    "cf-k",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/catastrophic_forgetting_k.py (from "
    "meghdadk/SCRUB notebooks)",
    summary="fine-tune only the last k blocks + classifier on retain (SGD, no momentum, proximal term)",
    space=CF_K_SPACE,
    epochs=10,
    batch_size=256,
    lr=0.01,
    weight_decay=0.1,
    decay_rate=0.1,
    num_blocks=1,
    freeze_stem=False,
)
def cf_k(ctx: UnlearnContext):
    return finetune_last_k(ctx, desc="cf-k")


__all__ = ["model_blocks", "last_blocks", "finetune_last_k"]
