"""Many models of one architecture trained at once, in one process, with ``torch.func``.

``fit_many`` trains M models, each on its own rows of one image tensor (``subsets``: an [M, n] index tensor, one
row per model, all of the same length n) from its own seed, and returns them stacked (``Stack``). It is ``fit``
run M times, fused: model m is initialised as ``build_model(arch, data, seeds[m])``, visits its rows in the order
``fit`` would (``torch.randperm(n, generator=generator(seeds[m]))`` every epoch, the same batch boundaries), and
takes the same optimiser steps under the same schedule. The forward pass is ``vmap`` over ``functional_call`` of
one module with the M models' parameters stacked along a new first dimension; the loss is the sum of the M
models' mean cross-entropies, so each stacked parameter's gradient is, slice by slice, that model's own gradient;
and the optimisers of :data:`dcforget.train.OPTIMIZERS` (SGD, Adam) act element by element, so one optimiser over
the stacked parameters steps every model as its own optimiser would. The result equals training the models one
by one up to float rounding (a test checks it).

Limits: models with batch-norm running statistics are refused (``vmap`` cannot update per-model buffers in
place); dropout draws differ from one-by-one training (``randomness="different"``: independent per model, but
not the same numbers); no augmentation (the shadow models of U-LiRA train without it, as ``train_on`` does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call, stack_module_state, vmap

from .datasets import Data
from .errors import ConfigError
from .models import Classifier
from .runtime import generator, seeded
from .train import OPTIMIZERS, SCHEDULES, TrainConfig, as_unit, batch_plan, build_model


@dataclass
class Stack:
    """M models of one architecture: ``base`` (structure and shared buffers) and the stacked parameters."""

    base: Classifier
    params: dict[str, torch.Tensor]  # name -> [M, ...]
    buffers: dict[str, torch.Tensor]  # shared by every model (normalisation constants)
    seconds: float = 0.0

    def __len__(self) -> int:
        return int(next(iter(self.params.values())).shape[0])

    def state_dict(self, m: int) -> dict[str, torch.Tensor]:
        return {
            **{k: v[m].detach().clone() for k, v in self.params.items()},
            **{k: v.detach().clone() for k, v in self.buffers.items()},
        }

    def model(self, m: int) -> Classifier:
        """Model ``m`` as an ordinary module (a copy)."""
        import copy

        net = copy.deepcopy(self.base)
        net.load_state_dict(self.state_dict(m))
        return net.eval()

    def _forward(self, shared_input: bool):
        def one(p, x):
            return functional_call(self.base, (p, self.buffers), (x,))

        return vmap(one, in_dims=(0, None if shared_input else 0), randomness="different")

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch_size: int = 1024, bf16: bool = False) -> torch.Tensor:
        """Every model's logits on every image, in eval mode: float32 [M, N, classes]."""
        self.base.eval()
        device = next(iter(self.params.values())).device
        fwd = self._forward(shared_input=True)
        out = []
        for start in range(0, len(images), batch_size):
            x = as_unit(images[start : start + batch_size].to(device))
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                out.append(fwd(self.params, x).float())
        return torch.cat(out, 1)


def stack_models(models: list[nn.Module]) -> Stack:
    """Stack ordinary models of one architecture (e.g. to continue training them together)."""
    if not models:
        raise ConfigError("no models to stack")
    import copy

    params, _ = stack_module_state(models)
    base = copy.deepcopy(models[0])
    buffers = {k: v.detach().clone() for k, v in base.named_buffers()}
    return Stack(base, {k: v.detach().clone() for k, v in params.items()}, buffers)


def _check_batchable(model: nn.Module) -> None:
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats:
            raise ConfigError(
                f"batched training cannot train {type(m).__name__} with running statistics; "
                f"train this architecture one model at a time"
            )


def fit_many(
    arch: str,
    data: Data,
    subsets: torch.Tensor,
    seeds: list[int],
    cfg: TrainConfig,
    *,
    device: torch.device,
    model_options: dict[str, Any] | None = None,
    start: Stack | None = None,
) -> Stack:
    """Train ``len(seeds)`` models on ``data.train`` rows ``subsets[m]`` (see the module's docstring); with
    ``start``, continue from those models instead of fresh ones (their order follows ``seeds``)."""
    if subsets.dim() != 2 or subsets.shape[0] != len(seeds):
        raise ConfigError(
            f"subsets must be [models, n] with one row per seed, got {tuple(subsets.shape)} for {len(seeds)} seeds"
        )
    m_count, n = subsets.shape
    if n == 0:
        raise ConfigError("cannot train on an empty set")
    if start is None:
        models = [build_model(arch, data, s, model_options) for s in seeds]
        for net in models:
            _check_batchable(net)
        stack = stack_models(models)
    else:
        if len(start) != m_count:
            raise ConfigError(f"start holds {len(start)} models, not {m_count}")
        _check_batchable(start.base)
        stack = Stack(start.base, {k: v.detach().clone() for k, v in start.params.items()}, dict(start.buffers))
    stack.base.to(device).train()
    params = {k: v.to(device).requires_grad_(True) for k, v in stack.params.items()}
    buffers = {k: v.to(device) for k, v in stack.buffers.items()}
    stack = Stack(stack.base, params, buffers)
    images, labels = data.train.images.to(device), data.train.labels.to(device)
    subsets = subsets.to(device)
    opt = OPTIMIZERS.get(cfg.optimizer)(list(params.values()), cfg)
    bounds, total = batch_plan(n, cfg)
    steps_per_epoch = len(bounds) - 1
    shape = SCHEDULES.get(cfg.schedule)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: shape(s, total))
    gens = [generator(s) for s in seeds]
    fwd = stack._forward(shared_input=False)
    rows = torch.arange(m_count, device=device)[:, None]
    step = 0
    t0 = time.perf_counter()
    with seeded(seeds[0], device):
        for _ in range(cfg.epochs):
            perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(device)
            order = subsets[rows, perms]  # [M, n]: each model's rows, in its own order
            for b in range(steps_per_epoch):
                if step >= total:
                    break
                step += 1
                idx = order[:, bounds[b] : bounds[b + 1]]  # [M, B]
                x, y = as_unit(images[idx]), labels[idx]
                with torch.autocast(device.type, dtype=torch.bfloat16, enabled=cfg.bf16):
                    logits = fwd(params, x)  # [M, B, classes]
                loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten(), reduction="none")
                loss = loss.view(m_count, -1).mean(1).sum()  # each model's mean loss; gradients stay per model
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if step >= total:
                break
    stack.base.eval()
    stack.params = {k: v.detach() for k, v in params.items()}
    stack.seconds = time.perf_counter() - t0
    return stack
