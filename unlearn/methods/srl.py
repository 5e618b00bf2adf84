"""SRL, Successive Random Labels (Deep Unlearn ``munl/unlearning/successive_random_labels.py``, which reuses
``salun.RandomRelabel``; docs/reference/unlearning-methods.md §1.5 item 3).

Every epoch trains the original on ``F (with random labels) ∪ R``, shuffled together, with cross-entropy and SGD
(model in train mode). Each forget sample gets a fresh label drawn uniformly from all classes (it may equal its true
label) every time it is read -- the reference's ``RandomRelabelDataset`` draws one in ``__getitem__`` -- and since
an item is read once per epoch, this draws a new label vector for F at the start of every epoch. Retain labels are
kept. One optimiser for the whole run, constant learning rate (the reference builds a scheduler and discards it).

Defaults: SRL has no ``ORIGINAL_*`` constants; Deep Unlearn runs it with ``unlearner_basic_config`` (munl/settings.py
and munl/configurations.py: ``DEFAULT_UNLEARN_EPOCHS`` 5, batch 256, SGD lr 0.1, momentum 0.9, weight decay 5e-4).
Search space: the shared set only (``HYPER_PARAMETERS = munl.settings.HYPER_PARAMETERS``).

Deviations: labels and the order come from the request's seed (the reference re-seeds ``RandomState(123)`` every
epoch, so only the shuffled read order makes epochs differ); a trailing batch of one sample joins the previous
batch (BatchNorm cannot train on one sample), as in ``dcforget.train.fit``.

On an MLP (or any architecture) it runs unchanged: every parameter trains.

``random_relabel_epoch`` is the shared loop; SalUn (``salun.py``) calls it with a gradient mask.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from dcforget.errors import ForgetSpecError
from dcforget.progress import bar
from dcforget.runtime import generator, seeded
from dcforget.train import as_unit

from .base import UnlearnContext, register
from .common import check_sgd_options, num_batches, sgd, shuffled_batches, train_pass


def draw_random_labels(n: int, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """``n`` labels uniform over all ``num_classes`` classes, from the CPU generator ``gen``."""
    return torch.randint(0, num_classes, (n,), generator=gen)


def random_relabel_epoch(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    n_forget: int,
    num_classes: int,
    opt: torch.optim.Optimizer,
    *,
    batch_size: int,
    gen: torch.Generator,
    mask: dict[str, torch.Tensor] | None = None,
    after_step: Callable[[], None] | None = None,
) -> dict[str, float]:
    """One epoch of random-label training (the reference's ``RandomRelabel``) on ``x``/``y``, whose first
    ``n_forget`` rows are the forget set (their labels in ``y`` are ignored and redrawn) and the rest the retain
    set. Draws fresh forget labels, shuffles F ∪ R together, and minimises the batch-mean CE in train mode. With
    ``mask`` (parameter name -> 0/1 tensor), each gradient is multiplied by its mask before the optimiser step;
    ``after_step`` runs after every step. Returns the epoch's mean loss and how many forget labels were drawn."""
    dev = x.device
    n = len(y)
    labels = y.clone()
    labels[:n_forget] = draw_random_labels(n_forget, num_classes, gen).to(dev)
    batches = shuffled_batches(n, batch_size, gen, dev)
    named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]

    def apply_mask() -> None:
        for name, p in named:
            if p.grad is not None and name in mask:
                p.grad.mul_(mask[name])

    loss_sum = train_pass(
        model,
        x,
        labels,
        opt,
        batches,
        lambda logits, yb, xb: F.cross_entropy(logits, yb),
        before_step=apply_mask if mask is not None else None,
        after_step=after_step,
    )
    return {"loss": loss_sum / n, "forget_relabelled": n_forget}


def relabel_data(ctx: UnlearnContext) -> tuple[torch.Tensor, torch.Tensor, int]:
    """F then R, stacked once (images as stored, labels as given; F's labels are redrawn every epoch)."""
    xf, yf = ctx.forget()
    xr, yr = ctx.retain()
    if len(yf) == 0:
        raise ForgetSpecError("random-label unlearning needs a non-empty forget set")
    if xf.dtype != xr.dtype:
        xf, xr = as_unit(xf), as_unit(xr)
    return torch.cat([xf, xr]).to(ctx.device), torch.cat([yf, yr]).to(ctx.device), len(yf)


@register(
    "srl",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/successive_random_labels.py (salun.RandomRelabel)",
    summary="successive random labels: train on F (fresh uniform labels every epoch) ∪ R, CE, SGD",
    validate=lambda o: check_sgd_options(o, "srl"),
    epochs=5,
    batch_size=256,
    lr=0.1,
    momentum=0.9,
    weight_decay=5e-4,
)
def srl(ctx: UnlearnContext):
    o = ctx.options
    check_sgd_options(o, "srl")
    model = ctx.copy_original()
    x, y, nf = relabel_data(ctx)
    k = ctx.data.info.num_classes
    opt = sgd(model, o)
    gen = generator(ctx.seed)
    losses = []
    with seeded(ctx.seed, ctx.device):
        for _ in bar(range(int(o["epochs"])), desc="srl", quiet=ctx.quiet, unit="epoch"):
            stats = random_relabel_epoch(model, x, y, nf, k, opt, batch_size=int(o["batch_size"]), gen=gen)
            losses.append(stats["loss"])
    ctx.extra.update(
        {
            "epochs_run": len(losses),
            "epoch_losses": [round(v, 5) for v in losses],
            "forget_relabelled_per_epoch": nf,
            "steps_per_epoch": num_batches(len(y), int(o["batch_size"])),
        }
    )
    return model
