"""Training a model on a dataset's training split, start to finish: the original model, a retrained model,
and their checkpoint metadata. Shared by ``unlearn train`` and ``condense build --model``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .datasets import Data
from .models import Classifier, create_model
from .runtime import seeded
from .train import EvalResult, History, TrainConfig, evaluate, fit


@dataclass
class TrainedModel:
    model: Classifier
    history: History
    train_eval: EvalResult
    test_eval: EvalResult
    val_eval: EvalResult | None = None

    def metrics(self) -> dict[str, float]:
        val = {"val_acc": self.val_eval.accuracy} if self.val_eval is not None else {}
        return {"train_acc": self.train_eval.accuracy, **val, "test_acc": self.test_eval.accuracy,
                "train_seconds": self.history.seconds,
                "seconds_per_epoch": self.history.seconds / max(len(self.history.epochs), 1)}


def build_model(arch: str, data: Data, seed: int, options: dict[str, Any] | None = None) -> Classifier:
    """A freshly initialised model; its initialisation depends only on ``seed``."""
    with seeded(seed):
        return create_model(arch, data.info, **(options or {}))


def train_on(data: Data, arch: str, cfg: TrainConfig, *, seed: int, device: torch.device,
             index: torch.Tensor | None = None, quiet: bool = False, model_options: dict[str, Any] | None = None,
             desc: str = "train") -> TrainedModel:
    """Train a fresh ``arch`` on ``data.train`` (or the rows ``index`` of it) and evaluate it on that set and
    on the test split."""
    train = data.train if index is None else data.train.subset(index.to(data.train.labels.device))
    model = build_model(arch, data, seed, model_options)
    history = fit(model, train.images, train.labels, cfg, device=device, seed=seed,
                  loss_fn=getattr(model, "training_loss", None),  # e.g. convae's CE + reconstruction
                  evals={"test": (data.test.images, data.test.labels)}, quiet=quiet, desc=desc)
    train_eval = evaluate(model, train.images, train.labels, device=device, bf16=cfg.bf16)
    test_eval = evaluate(model, data.test.images, data.test.labels, device=device, bf16=cfg.bf16)
    val_eval = evaluate(model, data.val.images, data.val.labels, device=device, bf16=cfg.bf16) if data.val is not None else None
    return TrainedModel(model, history, train_eval, test_eval, val_eval)


def checkpoint_meta(data: Data, cfg: TrainConfig, seed: int, trained: TrainedModel | None = None,
                    resolved_config: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    """What a checkpoint records about where it came from."""
    meta: dict[str, Any] = {**data.split_meta(), "seed": seed, "train_config": cfg.to_dict(),
                            "config": resolved_config or {}}
    if trained is not None:
        meta["metrics"] = trained.metrics()
        meta["history"] = trained.history.epochs
    meta.update(extra)
    return meta
