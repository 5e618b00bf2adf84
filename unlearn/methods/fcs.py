"""FCS -- Forget by Contrast and Smoothing: the NeurIPS-2023 Kaggle entry "kgltop1" (the winning solution) as Deep
Unlearn ships it (``munl/unlearning/kgltop1.py``; docs/reference/unlearning-methods.md §1.5 item 12).

Model in train mode throughout; three SGD optimisers over all parameters, each with its own momentum buffer:
1. Stage 1, one shuffled pass over F (batch ``batch_size``): minimise ``KL(uniform || softmax(f(x_F)))``
   (``KLDivLoss(batchmean)`` of the log-softmax against the uniform distribution), SGD ``lr``/``momentum``/
   ``weight_decay`` (0.005, 0.9, 0).
2. Stage 2, ``epochs`` times:
   a. forget round over zipped (F, R) batches (a fresh shuffle of each; zip stops at the shorter): loss
      ``-mean log_softmax(f(x_F) f(x_R)^T / temperature, dim=-1)`` with the retain logits detached; SGD
      ``forget_lr``/``forget_momentum``/``forget_weight_decay`` (3e-4, 0.9, 0), cosine annealing per step to
      ``eta_min`` over ``T_max = (batches of F) x epochs``;
   b. retain round, one shuffled pass over R with CE; SGD ``retain_lr * batch_size / 64`` (the reference's scaling),
      ``retain_momentum``, ``retain_weight_decay`` (1e-3, 0.9, 1e-2), constant.

Defaults are ``KGLTop1.ORIGINAL_*``: 8 epochs, batch 256, temperature 1.15, eta_min 1e-6 and the three optimisers
above. Searched (``KGLTop1.HYPER_PARAMETERS``): the shared lr / weight decay / momentum (stage 1's optimiser), batch
size and epochs; retain_lr, forget_lr, retain_weight_decay, forget_weight_decay log-uniform in [1e-5, 1e-1];
retain_momentum and forget_momentum fixed 0.9; eta_min log-uniform in [1e-6, 1e-1]; temperature uniform in
[0.01, 5] (the reference's [0, 5] with the lower end moved off 0, where the loss divides by zero).

No deviation from the reference (an ``eta_min`` above ``forget_lr`` is allowed, as there: the cosine then rises).
It needs only logits, so it runs unchanged on every architecture, ``mlp`` included (it trains all parameters).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F

from dcforget.errors import ConfigError
from dcforget.progress import bar
from dcforget.runtime import generator, seeded
from dcforget.space import Fixed, Float
from dcforget.train import as_unit

from .base import UnlearnContext, register
from .common import check_sgd_options, num_batches, sgd, shuffled_batches


def uniform_kl(logits: torch.Tensor) -> torch.Tensor:
    """KL(uniform || softmax(logits)), batch mean."""
    uniform = torch.full_like(logits, 1.0 / logits.shape[1])
    return F.kl_div(F.log_softmax(logits, dim=-1), uniform, reduction="batchmean")


def contrastive_forget_loss(
    forget_logits: torch.Tensor, retain_logits: torch.Tensor, temperature: float
) -> torch.Tensor:
    """-mean log_softmax(f_F f_R^T / T) over the retain axis; no gradient reaches the retain logits."""
    return -F.log_softmax(forget_logits @ retain_logits.detach().T / temperature, dim=-1).mean()


def _validate(o: dict[str, Any]) -> None:
    check_sgd_options(
        o,
        "fcs",
        positive=("retain_lr", "forget_lr", "temperature"),
        nonneg=("retain_weight_decay", "forget_weight_decay", "eta_min"),
        momentum=("retain_momentum", "forget_momentum"),
    )


_LOG_RATE = Float(1e-5, 1e-1, log=True)


@register(
    "fcs",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/kgltop1.py (NeurIPS-2023 unlearning challenge winner)",
    validate=_validate,
    space={
        "retain_lr": _LOG_RATE,
        "retain_weight_decay": _LOG_RATE,
        "retain_momentum": Fixed(0.9),
        "forget_lr": _LOG_RATE,
        "forget_weight_decay": _LOG_RATE,
        "forget_momentum": Fixed(0.9),
        "temperature": Float(0.01, 5.0),
        "eta_min": Float(1e-6, 1e-1, log=True),
    },
    summary="Kaggle kgltop1: push F to uniform, then contrast F against R and fine-tune on R, 8 rounds",
    epochs=8,
    batch_size=256,
    lr=0.005,
    momentum=0.9,
    weight_decay=0.0,
    retain_lr=1e-3,
    retain_momentum=0.9,
    retain_weight_decay=1e-2,
    forget_lr=3e-4,
    forget_momentum=0.9,
    forget_weight_decay=0.0,
    temperature=1.15,
    eta_min=1e-6,
)
def fcs(ctx: UnlearnContext):
    o = ctx.options
    _validate(o)
    model = ctx.copy_original()
    dev = ctx.device
    xr, yr = ctx.retain()
    xf, _ = ctx.forget()
    if len(xf) == 0:
        raise ConfigError("fcs needs a non-empty forget set")
    bs, epochs, temp = int(o["batch_size"]), int(o["epochs"]), float(o["temperature"])
    opt = sgd(model, o)
    opt_forget = sgd(model, o, "forget_")
    opt_retain = sgd(model, o, "retain_", lr=float(o["retain_lr"]) * bs / 64)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(
        opt_forget, T_max=num_batches(len(xf), bs) * epochs, eta_min=float(o["eta_min"])
    )
    gen = generator(ctx.seed)

    def step(optimizer: torch.optim.Optimizer, loss: torch.Tensor) -> float:
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return float(loss.detach())

    history: dict[str, list[float]] = {"uniform_kl": [], "contrastive": [], "retain_ce": []}
    model.train()
    with seeded(ctx.seed, dev):
        kl = [step(opt, uniform_kl(model(as_unit(xf[idx])))) for idx in shuffled_batches(len(xf), bs, gen, dev)]
        history["uniform_kl"].append(sum(kl) / len(kl))
        for _ in bar(range(epochs), desc="fcs", quiet=ctx.quiet, unit="epoch"):
            model.train()
            fb = shuffled_batches(len(xf), bs, gen, dev)
            rb = shuffled_batches(len(xr), bs, gen, dev)
            con = []
            for fi, ri in zip(fb, rb):
                out_f, out_r = model(as_unit(xf[fi])), model(as_unit(xr[ri])).detach()
                con.append(step(opt_forget, contrastive_forget_loss(out_f, out_r, temp)))
                sched.step()
            ce = [
                step(opt_retain, F.cross_entropy(model(as_unit(xr[idx])), yr[idx]))
                for idx in shuffled_batches(len(xr), bs, gen, dev)
            ]
            history["contrastive"].append(sum(con) / max(len(con), 1))
            history["retain_ce"].append(sum(ce) / len(ce))
    model.eval()
    ctx.extra.update({"retain_lr_scaled": float(o["retain_lr"]) * bs / 64, **history})
    return model
