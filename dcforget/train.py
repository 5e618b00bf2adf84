"""Training: one loop for original training, retraining and fine-tuning (``fit``), one batched evaluation pass
(``evaluate``), and a fresh model trained on a dataset start to finish (``train_on``, with its checkpoint metadata).

Data stays on the device as uint8 (or float [0,1] for condensed images) and is converted per batch.
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass, field, fields
from typing import Any, Callable

import torch
import torch.nn.functional as F
from torch import nn

from .datasets import DEFAULT_VAL_FRACTION, Data
from .errors import ConfigError
from .models import Classifier, create_model
from .progress import bar
from .registry import Registry
from .runtime import generator, seeded, synchronize

OPTIMIZERS: Registry[Callable] = Registry("optimizer")
SCHEDULES: Registry[Callable] = Registry("learning-rate schedule")


BATCHES = ("even", "partial")  # how an epoch is cut into batches: batch_bounds
TRAINING_REVISION = 2
"""Bumped when what a trainer computes for the same settings changes (2: even batches by default): cached jobs
(``dcforget.jobs.job_key``) and the experiments' originals (their variant digest) carry it, so nothing trained
under an earlier revision is read back as if trained now."""


@dataclass
class TrainConfig:
    epochs: int = 30
    batch_size: int = 256
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    weight_decay: float = 0.0
    schedule: str = "constant"
    bf16: bool = False
    channels_last: bool = False
    eval_every: int = 0  # evaluate the ``evals`` sets every N epochs (0: only after the last)
    max_steps: int = 0  # stop after this many optimiser steps, the schedule sized to them (0: epochs decide)
    batches: str = "even"  # how an epoch is cut: "even" (batches within one row of each other) or "partial"

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if not (isinstance(self.epochs, int) and self.epochs >= 1):
            raise ConfigError(f"epochs must be a positive integer, got {self.epochs!r}")
        if not (isinstance(self.batch_size, int) and self.batch_size >= 1):
            raise ConfigError(f"batch_size must be a positive integer, got {self.batch_size!r}")
        if not (isinstance(self.lr, (int, float)) and math.isfinite(self.lr) and self.lr > 0):
            raise ConfigError(f"lr must be a positive number, got {self.lr!r}")
        if not (isinstance(self.max_steps, int) and self.max_steps >= 0):
            raise ConfigError(f"max_steps must be an integer >= 0, got {self.max_steps!r}")
        num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not (num(self.weight_decay) and num(self.momentum)) or self.weight_decay < 0 or not 0 <= self.momentum < 1:
            raise ConfigError("weight_decay must be >= 0 and momentum in [0, 1)")
        for key in ("bf16", "channels_last"):
            if not isinstance(getattr(self, key), bool):
                raise ConfigError(f"{key} must be true or false, got {getattr(self, key)!r}")
        if not (isinstance(self.eval_every, int) and self.eval_every >= 0):
            raise ConfigError(f"eval_every must be an integer >= 0, got {self.eval_every!r}")
        if self.batches not in BATCHES:
            raise ConfigError(f"batches must be one of {', '.join(BATCHES)}, got {self.batches!r}")
        if not (isinstance(self.optimizer, str) and isinstance(self.schedule, str)):
            raise ConfigError("optimizer and schedule must be names (strings)")
        OPTIMIZERS.get(self.optimizer)
        SCHEDULES.get(self.schedule)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> "TrainConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"unknown training option(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}")
        return cls(**values)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@OPTIMIZERS.register("sgd")
def _sgd(params, cfg: TrainConfig):
    return torch.optim.SGD(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)


@OPTIMIZERS.register("adam")
def _adam(params, cfg: TrainConfig):
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


@SCHEDULES.register("constant")
def _constant(step: int, total: int) -> float:
    return 1.0


@SCHEDULES.register("cosine")
def _cosine(step: int, total: int) -> float:
    return 0.5 * (1.0 + math.cos(math.pi * min(step, total) / max(total, 1)))


@SCHEDULES.register("onecycle")
def _onecycle(step: int, total: int) -> float:
    """One cycle sized by optimiser steps (the shape of torch's OneCycleLR, ``lr`` as the peak): a linear warm-up
    from 0.04 x lr over the first 30% of the steps, then cosine annealing to 0."""
    warm = max(1, round(0.3 * total))
    if step < warm:
        return 0.04 + 0.96 * step / warm
    return 0.5 * (1.0 + math.cos(math.pi * min(step - warm, total - warm) / max(total - warm, 1)))


@SCHEDULES.register("step")
def _step(step: int, total: int) -> float:
    """x0.1 at 50% and again at 75% of training (the classic CIFAR recipe)."""
    return 0.1 ** ((step >= total // 2) + (step >= (3 * total) // 4))


@SCHEDULES.register("half")
def _half(step: int, total: int) -> float:
    """x0.1 at the middle of training (the dataset-condensation evaluation protocol)."""
    return 0.1 if step >= total // 2 else 1.0


def as_unit(x: torch.Tensor) -> torch.Tensor:
    """uint8 [0,255] -> float32 [0,1]; float passes through."""
    return x.float().div_(255.0) if x.dtype == torch.uint8 else x.float()


@dataclass
class EvalResult:
    accuracy: float
    losses: torch.Tensor  # float32 [N] per-sample cross-entropy, on the CPU
    predictions: torch.Tensor  # int64 [N], on the CPU

    def __len__(self) -> int:
        return int(self.losses.shape[0])


@torch.no_grad()
def evaluate(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | None = None,
    bf16: bool = False,
) -> EvalResult:
    """Accuracy, per-sample loss and predictions in eval mode, no augmentation, one batched pass."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    losses, preds = [], []
    try:
        for start in range(0, len(labels), batch_size):
            x = as_unit(images[start : start + batch_size].to(device, non_blocking=True))
            y = labels[start : start + batch_size].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                logits = model(x)
            logits = logits.float()
            losses.append(F.cross_entropy(logits, y, reduction="none").cpu())
            preds.append(logits.argmax(1).cpu())
    finally:
        model.train(was_training)
    if not losses:
        return EvalResult(float("nan"), torch.empty(0), torch.empty(0, dtype=torch.long))
    losses_t, preds_t = torch.cat(losses), torch.cat(preds)
    acc = float((preds_t == labels.cpu()).float().mean())
    return EvalResult(acc, losses_t, preds_t)


@torch.no_grad()
def embed(
    model: nn.Module,
    images: torch.Tensor,
    *,
    batch_size: int = 1024,
    device: torch.device | None = None,
    bf16: bool = False,
    logits: bool = False,
) -> torch.Tensor:
    """``model.features`` (or with ``logits``, the model's output) of every image, in eval mode, batched:
    float32 [N, D] on ``device``."""
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        out = []
        for start in range(0, len(images), batch_size):
            x = as_unit(images[start : start + batch_size].to(device, non_blocking=True))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out.append((model(x) if logits else model.features(x)).float())
        return torch.cat(out) if out else torch.empty(0, device=device)
    finally:
        model.train(was_training)


@dataclass
class History:
    epochs: list[dict[str, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def last(self) -> dict[str, float]:
        return self.epochs[-1] if self.epochs else {}


LossFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (logits, labels, inputs) -> loss


def batch_bounds(n: int, batch_size: int, batches: str = "even") -> list[int]:
    """One epoch's batch boundaries over ``n`` rows. Every trainer cuts its epochs this way (``fit``, the batched
    trainer, the methods' own loops).

    ``even`` (the default): ``ceil(n / batch_size)`` batches whose sizes differ by at most one row, so no epoch ends
    on a tiny batch (never a batch of one where n > 1 and batch_size > 1: batch norm cannot train on one sample). ``partial``: full batches and the remainder, as PyTorch's ``DataLoader(drop_last=False)`` cuts
    them (the references' loaders), except that a trailing batch of one joins the previous one (batch norm cannot
    train on one sample). The partial cut hurt: DC-U's MLP recipe (Adam 1e-3, batch 256) on the paper preset's
    42,500 images ends every epoch on a 4-image batch, whose full-size Adam step slowed and spiked training, so
    originals (42,500 images) trained worse than retraining (42,490, no tiny batch): reports/tail-batch-paper."""
    if batches == "even":
        k = -(-n // batch_size)
        if batch_size > 1 and 1 < n < 2 * k:  # batch 2, n odd: pairs and one triple, never a batch of one
            k = n // 2
        return [i * n // k for i in range(k + 1)] if k else [0]
    if batches != "partial":
        raise ConfigError(f"batches must be one of {', '.join(BATCHES)}, got {batches!r}")
    bounds = list(range(0, n, batch_size)) + [n]
    if len(bounds) > 2 and bounds[-1] - bounds[-2] == 1:
        del bounds[-2]
    return bounds


def batch_plan(n: int, cfg: TrainConfig) -> tuple[list[int], int]:
    """One epoch's batch boundaries over ``n`` samples and the run's total optimiser steps (``max_steps`` caps it)."""
    bounds = batch_bounds(n, cfg.batch_size, cfg.batches)
    total = (len(bounds) - 1) * cfg.epochs
    return bounds, min(total, cfg.max_steps) if cfg.max_steps else total


def fit(
    model: nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    cfg: TrainConfig,
    *,
    device: torch.device,
    seed: int = 0,
    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
    loss_fn: LossFn | None = None,
    evals: dict[str, tuple[torch.Tensor, torch.Tensor]] | None = None,
    sample_weights: torch.Tensor | None = None,
    on_epoch: Callable[[int], None] | None = None,
    after_step: Callable[[], None] | None = None,
    optimizer: torch.optim.Optimizer | None = None,
    extra_loss: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None,
    train_modules: list[nn.Module] | None = None,
    quiet: bool = False,
    desc: str = "train",
    label_weight: float = 1.0,
) -> History:
    """Train ``model`` in place on (images, labels) and return per-epoch loss, accuracy, seconds and the accuracy
    on each of ``evals``. Deterministic for a seed on a given device: the data order comes from a seeded CPU
    generator, dropout and augmentation from the seeded (forked) global RNG. ``sample_weights`` [N] turns the
    loss into the weighted mean of per-sample cross-entropies (e.g. a condensed image counting for its bucket).
    ``extra_loss(logits, x, idx)`` is added to the loss of every batch (x as the model saw it, augmented; idx the
    batch's row indices into ``images``), e.g. a distillation term; it composes with ``sample_weights`` and ``loss_fn``.
    ``label_weight`` scales the loss on the labels (the default loss or ``loss_fn``); 0 trains on ``extra_loss`` alone
    (the labels then only count the reported accuracy)."""
    n = int(labels.shape[0])
    if n == 0:
        raise ConfigError("cannot train on an empty set")
    if not (isinstance(label_weight, (int, float)) and math.isfinite(label_weight) and label_weight >= 0):
        raise ConfigError(f"label_weight must be a number >= 0, got {label_weight!r}")
    if label_weight == 0 and extra_loss is None:
        raise ConfigError("label_weight 0 leaves nothing to train on: it needs an extra loss")
    if sample_weights is not None:
        if loss_fn is not None or sample_weights.shape != (n,):
            raise ConfigError("sample_weights needs one weight per sample and the default loss")
        sample_weights = sample_weights.to(device).float()
    loss_fn = loss_fn or (lambda logits, y, x: F.cross_entropy(logits, y))
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    images, labels = images.to(device), labels.to(device)
    evals = {k: (x.to(device), y.to(device)) for k, (x, y) in (evals or {}).items()}
    if optimizer is None:
        opt = OPTIMIZERS.get(cfg.optimizer)([p for p in model.parameters() if p.requires_grad], cfg)
    else:
        opt = optimizer
        for group in opt.param_groups:
            group["lr"] = cfg.lr
            group["initial_lr"] = cfg.lr
    bounds, total = batch_plan(n, cfg)
    steps_per_epoch = len(bounds) - 1
    step = 0
    shape = SCHEDULES.get(cfg.schedule)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: shape(s, total))
    order_gen = generator(seed)
    history = History()
    t_start = time.perf_counter()
    with seeded(seed, device):
        epochs_bar = bar(range(cfg.epochs), desc=desc, quiet=quiet, unit="epoch")
        for epoch in epochs_bar:
            if on_epoch is not None:
                on_epoch(epoch)
            if train_modules is None:
                model.train()
            else:
                model.eval()
                for m in train_modules:
                    m.train()
            t0 = time.perf_counter()
            perm = torch.randperm(n, generator=order_gen).to(device)
            loss_sum = torch.zeros((), device=device)
            correct = torch.zeros((), device=device, dtype=torch.long)
            batches = bar(range(steps_per_epoch), desc=f"epoch {epoch + 1}", quiet=quiet, leave=False, unit="batch")
            for b in batches:
                if step >= total:
                    break
                step += 1
                idx = perm[bounds[b] : bounds[b + 1]]
                x, y = as_unit(images[idx]), labels[idx]
                if augment is not None:
                    x = augment(x)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    logits = model(x)
                loss = 0.0
                if label_weight > 0 and sample_weights is None:
                    loss = label_weight * loss_fn(logits.float(), y, x)
                elif label_weight > 0:
                    w = sample_weights[idx]
                    loss = label_weight * (F.cross_entropy(logits.float(), y, reduction="none") * w).sum() / w.sum()
                if extra_loss is not None:
                    loss = loss + extra_loss(logits.float(), x, idx)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                if after_step is not None:
                    after_step()
                loss_sum += loss.detach() * len(y)
                correct += (logits.detach().argmax(1) == y).sum()
                if not quiet and b % 20 == 0:
                    batches.set_postfix(loss=f"{loss.item():.3f}")
            batches.close()
            synchronize(device)
            row = {
                "epoch": epoch + 1,
                "loss": float(loss_sum) / n,
                "acc": float(correct) / n,
                "seconds": time.perf_counter() - t0,
            }
            last = epoch + 1 == cfg.epochs or step >= total
            if evals and (last or (cfg.eval_every and (epoch + 1) % cfg.eval_every == 0)):
                for name, (ex, ey) in evals.items():
                    row[f"{name}_acc"] = evaluate(model, ex, ey, device=device, bf16=cfg.bf16).accuracy
            history.epochs.append(row)
            epochs_bar.set_postfix({k: f"{v:.3f}" for k, v in row.items() if k.endswith(("loss", "acc"))})
            if step >= total:
                break
        epochs_bar.close()
    model.train(False)
    history.seconds = time.perf_counter() - t_start
    return history


# ------------------------------------------------------------------ a fresh model trained on a dataset
@dataclass
class TrainedModel:
    model: Classifier
    history: History
    train_eval: EvalResult
    test_eval: EvalResult
    val_eval: EvalResult | None = None

    def metrics(self) -> dict[str, float]:
        val = {"val_acc": self.val_eval.accuracy} if self.val_eval is not None else {}
        return {
            "train_acc": self.train_eval.accuracy,
            **val,
            "test_acc": self.test_eval.accuracy,
            "train_seconds": self.history.seconds,
            "seconds_per_epoch": self.history.seconds / max(len(self.history.epochs), 1),
        }


def build_model(arch: str, data: Data, seed: int, options: dict[str, Any] | None = None) -> Classifier:
    """A freshly initialised model; its initialisation depends only on ``seed``."""
    with seeded(seed):
        return create_model(arch, data.info, **(options or {}))


def train_on(
    data: Data,
    arch: str,
    cfg: TrainConfig,
    *,
    seed: int,
    device: torch.device,
    index: torch.Tensor | None = None,
    quiet: bool = False,
    model_options: dict[str, Any] | None = None,
    desc: str = "train",
) -> TrainedModel:
    """Train a fresh ``arch`` on ``data.train`` (or the rows ``index`` of it) and evaluate it on that set and
    on the test split."""
    train = data.train if index is None else data.train.subset(index.to(data.train.labels.device))
    model = build_model(arch, data, seed, model_options)
    history = fit(
        model,
        train.images,
        train.labels,
        cfg,
        device=device,
        seed=seed,
        loss_fn=getattr(model, "training_loss", None),  # e.g. convae's CE + reconstruction
        evals={"test": (data.test.images, data.test.labels)},
        quiet=quiet,
        desc=desc,
    )
    train_eval = evaluate(model, train.images, train.labels, device=device, bf16=cfg.bf16)
    test_eval = evaluate(model, data.test.images, data.test.labels, device=device, bf16=cfg.bf16)
    val_eval = (
        evaluate(model, data.val.images, data.val.labels, device=device, bf16=cfg.bf16)
        if data.val is not None
        else None
    )
    return TrainedModel(model, history, train_eval, test_eval, val_eval)


def checkpoint_meta(
    data: Data,
    cfg: TrainConfig,
    seed: int,
    trained: TrainedModel | None = None,
    resolved_config: dict[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """What a checkpoint records about where it came from."""
    meta: dict[str, Any] = {
        **data.split_meta(),
        "seed": seed,
        "train_config": cfg.to_dict(),
        "config": resolved_config or {},
    }
    if trained is not None:
        meta["metrics"] = trained.metrics()
        meta["history"] = trained.history.epochs
    meta.update(extra)
    return meta


def train_defaults() -> dict[str, Any]:
    """The registered defaults of training an original model (`unlearn train`): what a preset, a config file and
    the command's flags override. The recipe is :class:`TrainConfig`'s (DC-U's)."""
    return {
        "model": "cnn",
        "model_options": {},
        "seed": 0,
        "per_class": None,
        "val_fraction": DEFAULT_VAL_FRACTION,
        "train": TrainConfig().to_dict(),
    }
