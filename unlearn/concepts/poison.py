"""The engine of the two poisoning-based class-unlearning methods (``concept-random``, ``concept-targeted``;
Chang et al., "Class Machine Unlearning for Complex Data via Concepts Inference and Data Poisoning", arXiv
2405.15662; code ChangWenhan/Concept_Inference_Unlearn_official ``src/unlearn/run_unlearn.py``,
``src/core/common.py``).

As the reference's code runs it (image mode ``none``, the mode of its CIFAR-10 "deer" result rows): the forget
class's training images keep their pixels and get poisoned labels -- ``random``: uniform over ALL classes, the
forget class included (``replacement_labels``); ``targeted``: one donor class -- and only the head (the reference's
parameters whose name contains "fc"; here ``Classifier.final.head``) is fine-tuned on retain u poisoned forget
images with SGD (lr 1e-3, momentum 0.9, batch 32; 20 epochs, the reference's CIFAR-10 setting), the rest of the
network frozen. With the head alone training, the embedding of every image is computed once (cached) and the head
trains on it: seconds instead of the reference's 800 s end-to-end pass. The head trains in train mode (dropout on,
where the head has it); the frozen body is used in eval mode.

The reference picks the donor by hand from its concept ranking (deer -> airplane, through "antler" vs
"propellers"). Here ``donor`` is a class index, or -1 (default): the class the original model confuses the forget
class with most (highest mean softmax over the forget images, forgotten classes excluded). ``unlearn concepts rank``
prints the concept-based choice (the class whose mean IG concept profile is closest to the forget class's) to pass
as ``--option donor=N``."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dcforget.errors import ConfigError
from dcforget.models import Classifier
from dcforget.runtime import generator, seeded
from dcforget.train import embed

POISON_DEFAULTS = {"epochs": 20, "lr": 1e-3, "momentum": 0.9, "weight_decay": 0.0, "batch_size": 32}


def confusion_donor(model: Classifier, forget_images: torch.Tensor, gone: torch.Tensor, device) -> int:
    """The kept class with the highest mean softmax over the forget images under ``model``."""
    with torch.no_grad():
        p = F.softmax(embed(model, forget_images, device=device, logits=True), 1).mean(0).cpu()
    p[gone] = -1.0
    return int(p.argmax())


def poisoned_labels(
    labels: torch.Tensor, mode: str, num_classes: int, seed: int, donor: int | None = None
) -> torch.Tensor:
    """``random``: uniform over all ``num_classes`` (seeded); ``targeted``: ``donor`` for every image."""
    if mode == "random":
        return torch.randint(num_classes, (len(labels),), generator=generator(seed)).to(labels.device)
    if mode == "targeted":
        return torch.full_like(labels, int(donor))
    raise ConfigError(f"poison mode must be random or targeted, not {mode!r}")


def finetune_head(
    model: Classifier,
    feats: torch.Tensor,
    labels: torch.Tensor,
    *,
    epochs: int,
    lr: float,
    momentum: float,
    weight_decay: float,
    batch_size: int,
    seed: int,
    device,
) -> None:
    """SGD on ``model.final.head`` alone, over cached embeddings, shuffled each epoch (seeded)."""
    head = model.final.head
    for p in model.parameters():
        p.requires_grad_(False)
    for p in head.parameters():
        p.requires_grad_(True)
    opt = torch.optim.SGD(head.parameters(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    gen = generator(seed)
    model.eval()
    head.train()
    feats, labels = feats.to(device), labels.to(device)
    with seeded(seed, device):  # dropout masks
        for _ in range(epochs):
            perm = torch.randperm(len(labels), generator=gen).to(device)
            for i in range(0, len(perm), batch_size):
                b = perm[i : i + batch_size]
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(head(feats[b]), labels[b]).backward()
                opt.step()
    for p in model.parameters():
        p.requires_grad_(True)
    model.eval()
