"""The standard condensed-set evaluation: train a fresh network on the condensed images only, test on the
real test split (docs/reference/condensation.md §1.1): SGD momentum 0.9, weight decay 5e-4, lr 0.01, batch 256, lr /10 at
half time, DSA augmentation drawn per sample; mean and std over seeds."""

from __future__ import annotations

import statistics
from typing import Any

import torch

from dcforget.augment import DEFAULT_STRATEGY, DIGITS_STRATEGY, DSA
from dcforget.condensed_store import CondensedSet
from dcforget.datasets import Split
from dcforget.models import create_model
from dcforget.runtime import seeded
from dcforget.train import TrainConfig, evaluate, fit

DIGIT_DATASETS = ("mnist", "svhn")


def evaluate_condensed(
    cs: CondensedSet,
    test: Split,
    arch: str,
    *,
    device: torch.device,
    seeds: int = 3,
    epochs: int = 1000,
    lr: float = 0.01,
    batch_size: int = 256,
    dsa: bool = True,
    bf16: bool = False,
    quiet: bool = False,
    first_seed: int = 0,
) -> dict[str, Any]:
    """Train a fresh ``arch`` on the condensed set for each seed first_seed .. first_seed + seeds - 1 and measure
    its test accuracy."""
    if tuple(test.images.shape[1:]) != cs.image_shape:
        raise ValueError("test images and condensed images differ in shape")
    cfg = TrainConfig(
        epochs=epochs,
        batch_size=batch_size,
        optimizer="sgd",
        lr=lr,
        momentum=0.9,
        weight_decay=5e-4,
        schedule="half",
        bf16=bf16,
    )
    strategy = DIGITS_STRATEGY if cs.dataset in DIGIT_DATASETS else DEFAULT_STRATEGY
    augment = DSA(cs.image_shape, cs.norm_mean, strategy).to(device) if dsa else None
    accs = []
    for seed in range(first_seed, first_seed + seeds):
        with seeded(seed):
            model = create_model(
                arch, image_shape=cs.image_shape, num_classes=cs.num_classes, mean=cs.norm_mean, std=cs.norm_std
            )
        fit(
            model,
            cs.images,
            cs.labels,
            cfg,
            device=device,
            seed=seed,
            augment=augment,
            quiet=quiet,
            desc=f"evaluate seed {seed}",
        )
        accs.append(evaluate(model, test.images, test.labels, device=device).accuracy)
    return {
        "model": arch,
        "epochs": epochs,
        "seeds": seeds,
        "dsa": strategy if dsa else None,
        "test_accs": accs,
        "mean": statistics.fmean(accs),
        "std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
        "train_config": cfg.to_dict(),
        "images": len(cs),
    }
