"""MSG -- Masked Small Gradients, the NeurIPS-2023 Kaggle entry "kgltop2" as Deep Unlearn ships it
(``munl/unlearning/kgltop2.py``; docs/reference/unlearning-methods.md §1.5 item 13).

1. Saliency: ``g = grad[ sum over batches of mean CE on a random retain subset of |F| samples (batch 64) ]
   + grad[ sum over batches of -mean CE on F (batch ``batch_size``) ]``, model in train mode (as the reference,
   which runs it on a freshly loaded model: batch statistics, dropout on).
2. In every ``nn.Conv2d``, the ``round(init_rate * numel)`` weights with the smallest |g| are re-initialised
   (Kaiming normal, fan_out, ReLU gain); all other entries keep their value. Linear layers, heads and norm layers
   are untouched.
3. Fine-tune on the retain set with CE and SGD (lr, momentum, weight decay), model in train mode; every conv
   weight's gradient is multiplied by 1 on re-initialised entries and by 0.1 elsewhere. This is done with
   gradient hooks on the conv weights (removed afterwards), which scale the loss gradient before SGD adds weight
   decay -- exactly what the reference's ``MaskConv2d``/``Masker`` autograd function does. The returned model is a
   plain Classifier (no custom modules, no hooks left).
4. Learning rate per epoch (the reference's ``LinearAnnealingLR`` stepped once per epoch, A = (E+1)//2 warm-up
   epochs): epoch e (0-based) runs at ``lr * (e+1)/A`` for e+1 <= A, then ``lr * (E-e)/(E+1-A)`` (E = 5:
   1/3, 2/3, 1, 2/3, 1/3 of lr).

Defaults are ``KGLTop2.ORIGINAL_*``: init_rate 0.3, 5 epochs, batch 64, SGD lr 1e-3, momentum 0.9, weight decay 5e-4.
Searched: init_rate in [0, 1] plus the shared set.

Deviations from the reference, both reproduced by ``reference_bug=true``:
- The reference builds a new ``MaskConv2d`` and copies only the weight, so a conv layer WITH a bias gets a freshly
  initialised bias (torchvision's ResNet-18, the Kaggle model, has no conv biases, so this went unnoticed there).
  By default biases are kept; with ``reference_bug`` they are re-drawn with PyTorch's default Conv2d bias init
  (U(-1/sqrt(fan_in), 1/sqrt(fan_in))). Affects cnn, convnet and vgg16 (their convs have biases), not resnet18.
- The saliency pass in train mode updates batch-norm running statistics with the retain subset and the FORGET
  batches (a leak of F into the returned model's buffers). By default the buffers are restored after the saliency
  pass; with ``reference_bug`` the updated statistics are kept.

On an ``mlp`` (no Conv2d) nothing is re-initialised and no gradient is scaled: MSG reduces to fine-tuning on R
with the warm-up/decay schedule (the saliency pass is skipped, ``ctx.extra["conv_layers_touched"] = 0``).
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dcforget.runtime import generator, seeded
from dcforget.space import Float
from dcforget.train import as_unit

from .base import UnlearnContext, register
from .common import check_sgd_options, conv_layers, sgd, shuffled_batches, train_epochs

SALIENCY_RETAIN_BATCH = 64  # the reference's fixed batch size for the retain subset of the saliency pass


def warmup_linear_decay(lr: float, epochs: int) -> list[float]:
    """The reference's ``LinearAnnealingLR(num_annealing_steps=(E+1)//2, num_total_steps=E+1)``, stepped per
    epoch: the lr of epochs 0..E-1."""
    a = (epochs + 1) // 2
    return [lr * ((e + 1) / a if e + 1 <= a else (epochs - e) / (epochs + 1 - a)) for e in range(epochs)]


def saliency_gradients(
    model: nn.Module,
    xr: torch.Tensor,
    yr: torch.Tensor,
    xf: torch.Tensor,
    yf: torch.Tensor,
    *,
    batch_size: int,
    gen: torch.Generator,
    device: torch.device,
) -> None:
    """Leave in each parameter's ``.grad`` the sum over batches of grad(mean CE) on a random retain subset of
    |F| samples (batches of 64) plus grad(-mean CE) on F (batches of ``batch_size``). Train mode."""
    model.train()
    model.zero_grad(set_to_none=True)
    sub = torch.randperm(len(yr), generator=gen)[: len(yf)].to(xr.device)
    xs, ys = xr[sub], yr[sub]
    for idx in shuffled_batches(len(ys), SALIENCY_RETAIN_BATCH, gen, device):
        F.cross_entropy(model(as_unit(xs[idx])), ys[idx]).backward()
    for idx in shuffled_batches(len(yf), batch_size, gen, device):
        (-F.cross_entropy(model(as_unit(xf[idx])), yf[idx])).backward()


@torch.no_grad()
def reinit_small_saliency(model: nn.Module, rate: float, reset_bias: bool = False) -> dict[str, torch.Tensor]:
    """In every Conv2d, re-initialise (Kaiming normal, fan_out, relu) the ``round(rate * numel)`` weights whose
    ``.grad`` has the smallest magnitude; returns {conv name: bool mask of the re-initialised entries}. Draws from
    the global RNG (call inside ``seeded``). ``reset_bias``: also re-draw the conv's bias (the reference's bug)."""
    masks = {}
    for name, m in conv_layers(model):
        g = m.weight.grad
        if g is None:
            g = torch.zeros_like(m.weight)  # no gradient reached it: every |g| is 0, ties broken by topk
        mask = torch.zeros_like(m.weight, dtype=torch.bool)
        k = round(rate * mask.numel())
        if k:
            mask.view(-1)[torch.topk(-g.abs().flatten(), k).indices] = True
        fresh = torch.empty_like(m.weight)
        nn.init.kaiming_normal_(fresh, mode="fan_out", nonlinearity="relu")
        m.weight[mask] = fresh[mask]
        if reset_bias and m.bias is not None:
            fan_in = m.weight[0].numel()
            bound = 1 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            m.bias.uniform_(-bound, bound)
        masks[name] = mask
    return masks


def scale_conv_gradients(model: nn.Module, masks: dict[str, torch.Tensor], low: float = 0.1) -> list:
    """Hooks multiplying each masked conv weight's gradient by 1 on mask entries and ``low`` elsewhere; returns
    the handles (call ``.remove()`` on each when done)."""
    modules = dict(model.named_modules())
    handles = []
    for name, mask in masks.items():
        scale = torch.where(mask, 1.0, low).to(modules[name].weight.dtype)
        handles.append(modules[name].weight.register_hook(lambda g, s=scale: g * s))
    return handles


def _validate(o: dict[str, Any]) -> None:
    check_sgd_options(o, "msg", fraction=("init_rate",))


@register(
    "msg",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/kgltop2.py (NeurIPS-2023 unlearning challenge entry)",
    validate=_validate,
    space={"init_rate": Float(0.0, 1.0)},
    summary="Kaggle kgltop2: re-init the least salient conv weights, fine-tune on retain (x0.1 grads elsewhere)",
    epochs=5,
    batch_size=64,
    lr=1e-3,
    momentum=0.9,
    weight_decay=5e-4,
    init_rate=0.3,
    reference_bug=False,
)
def msg(ctx: UnlearnContext):
    o = ctx.options
    _validate(o)
    model = ctx.copy_original()
    xr, yr = ctx.retain()
    xf, yf = ctx.forget()
    gen = generator(ctx.seed)
    bug = bool(o["reference_bug"])
    convs = conv_layers(model)
    masks: dict[str, torch.Tensor] = {}
    if convs:
        buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
        with seeded(ctx.seed, ctx.device):
            saliency_gradients(model, xr, yr, xf, yf, batch_size=int(o["batch_size"]), gen=gen, device=ctx.device)
            masks = reinit_small_saliency(model, float(o["init_rate"]), reset_bias=bug)
        model.zero_grad(set_to_none=True)
        if not bug:  # the saliency pass must not leave F's batch statistics in the model
            with torch.no_grad():
                for k, b in model.named_buffers():
                    b.copy_(buffers[k])
    handles = scale_conv_gradients(model, masks)
    try:
        losses = train_epochs(
            model,
            xr,
            yr,
            sgd(model, o),
            warmup_linear_decay(float(o["lr"]), int(o["epochs"])),
            batch_size=int(o["batch_size"]),
            seed=ctx.seed + 1,
            device=ctx.device,
            quiet=ctx.quiet,
            desc="msg",
        )
    finally:
        for h in handles:
            h.remove()
    ctx.extra.update(
        {
            "conv_layers_touched": len(masks),
            "reinitialised_weights": int(sum(int(m.sum()) for m in masks.values())),
            "conv_weights": int(sum(m.numel() for m in masks.values())),
            "retain_loss": losses,
        }
    )
    return model
