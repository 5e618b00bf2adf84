"""SalUn, saliency unlearning (Fan et al., ICLR 2024), as Deep Unlearn ports it (``munl/unlearning/salun.py``:
``save_gradient_ratio`` + ``RandomRelabel``, from Unlearn-Saliency ``generate_mask.py`` and ``unlearn/RL.py``;
docs/reference/unlearning-methods.md §1.5 item 6 and §2.1).

1. Saliency mask, on a copy of the original in eval mode: ``g = |sum over F of grad_theta(-CE(f(x), y))|`` for every
   parameter; the global top ``threshold`` fraction of all coordinates (``int(N * threshold)`` of the N, ties by
   position) gets mask 1, the rest 0. The sum is taken over forget chunks of ``batch_size`` with ``reduction="sum"``
   (one backward per chunk; the chunking only bounds memory).
2. ``epochs`` epochs of random-label training (``srl.random_relabel_epoch``): F with fresh uniform labels ∪ R,
   shuffled, CE, SGD, model in train mode, every gradient multiplied by its mask before the step.
3. ``restore_masked`` (default true): upstream SalUn's fix (Unlearn-Saliency PR #33, issue #32 "weight decay changes
   the masked parameters"): after every step the masked-out coordinates are set back to theta0 and their momentum
   buffer is zeroed, so weight decay (added by SGD after the mask) cannot move them. ``restore_masked=false``
   reproduces Deep Unlearn's port, which predates the fix: with weight decay > 0 the masked-out weights shrink.
   BatchNorm running statistics are buffers, not parameters, and move in both modes (as upstream).

Defaults: the authors' code (``Classification/arg_parser.py``: SGD momentum 0.9, weight decay 5e-4, batch 256,
``--unlearn_lr`` 0.01, 10 unlearning epochs; ``mask/with_0.5.pt``: threshold 0.5). Deep Unlearn's port runs
momentum 0 and weight decay 0 (``SaliencyUnlearning.ORIGINAL_*``, the defaults before issue #32:
``--option momentum=0 --option weight_decay=0`` reproduces it). The authors' README example for ResNet-18 on
CIFAR-10 uses lr 0.013. Batches: forget (random labels) and retain samples are one shuffled set
(``ConcatDataset`` in ``unlearn/RL.py``), not torchunlearn's fixed forget:retain mix. Search: threshold in [0, 1] plus the shared set (``munl.settings.HYPER_PARAMETERS``). The reference also
searches the "mask optimiser" lr / momentum / weight decay; that optimiser is never built (the mask pass only calls
``zero_grad`` on the training optimiser), so those dimensions change nothing and are left out.

``reference_bug`` (default false) reproduces the port's mask pass exactly: its ``optimizer`` belongs to the model
being unlearned, not to the deep copy the mask is computed on, so ``zero_grad`` never clears the copy's gradients;
batch b's ``.grad`` holds the sum of the batch-mean gradients of batches 1..b and the port adds up those running
sums, weighting the (shuffled) forget batches B, B-1, ..., 1. The default is the intended ``|sum over F|``
(per-sample sum; the port's batch means only rescale it when all batches have the same size).

torchunlearn's ``SalUn`` (Harry24k/machine-unlearning-pytorch ``torchunlearn/unlearn/trainers/salun.py``; compared
in experiments/parity.py as a named variant, reports/parity-cpu) differs in two places: its trainer pairs every retain
batch with a forget batch of the same size (``MergedLoaders`` cycles the shorter forget loader), loss
``CE(R) + CE(F, random labels)``, so it takes about as many random-label steps on F as steps on R in an epoch (here
F is its share of one shuffled set, as in the authors' ``RL.py``); and its mask ranks the mean over batches of
``|batch-mean gradient|`` (here ``|gradient summed over F|``, the authors' ``generate_mask.py``). At its README's
settings it forgets a random 10% much harder than ours, retain accuracy falling with it.

Works on every architecture the same way (all parameters are ranked together); on an MLP that is its three linear
layers.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from dcforget.progress import bar
from dcforget.runtime import generator, seeded
from dcforget.space import Float
from dcforget.train import as_unit

from .base import UnlearnContext, register
from .common import check_sgd_options, num_batches, sgd
from .srl import random_relabel_epoch, relabel_data


def forget_gradient(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    batch_size: int,
    reference_bug: bool = False,
    gen: torch.Generator | None = None,
) -> dict[str, torch.Tensor]:
    """``sum over (x, y) of grad(-CE)`` for every trainable parameter of a copy of ``model`` in eval mode, by name
    (chunks of ``batch_size``, summed CE). ``reference_bug``: Deep Unlearn's accumulation instead (see the module
    docstring): shuffled batches of ``batch_size``, batch-mean CE, never-cleared ``.grad`` added up after each batch."""
    m = copy.deepcopy(model).eval()
    named = [(k, p) for k, p in m.named_parameters() if p.requires_grad]
    total = {k: torch.zeros_like(p) for k, p in named}
    dev = next(m.parameters()).device
    if not reference_bug:
        for s in range(0, len(y), batch_size):
            loss = -F.cross_entropy(
                m(as_unit(x[s : s + batch_size].to(dev))), y[s : s + batch_size].to(dev), reduction="sum"
            )
            grads = torch.autograd.grad(loss, [p for _, p in named], allow_unused=True)
            for (k, _), g in zip(named, grads):
                if g is not None:
                    total[k] += g
        return total
    perm = torch.randperm(len(y), generator=gen).to(y.device)
    for s in range(0, len(y), batch_size):
        idx = perm[s : s + batch_size]
        (-F.cross_entropy(m(as_unit(x[idx].to(dev))), y[idx].to(dev))).backward()  # .grad accumulates
        for k, p in named:
            if p.grad is not None:
                total[k] += p.grad
    return total


def saliency_mask(grads: dict[str, torch.Tensor], threshold: float) -> dict[str, torch.Tensor]:
    """0/1 float masks: 1 on the ``int(N * threshold)`` coordinates of largest ``|g|`` over all parameters together
    (ties broken by position, parameters in order)."""
    scores = torch.cat([g.abs().flatten() for g in grads.values()])
    k = int(len(scores) * threshold)
    flat = torch.zeros_like(scores)
    flat[torch.argsort(scores, descending=True, stable=True)[:k]] = 1.0
    out, start = {}, 0
    for name, g in grads.items():
        out[name] = flat[start : start + g.numel()].view_as(g)
        start += g.numel()
    return out


def _check(o: dict) -> None:
    check_sgd_options(o, "salun", fraction=("threshold",), flags=("restore_masked", "reference_bug"))


@register(
    "salun",
    reference="Fan et al., ICLR 2024; OPTML-Group/Unlearn-Saliency Classification/generate_mask.py, "
    "unlearn/RL.py, arg_parser.py (as Deep Unlearn (Cadet et al.) munl/unlearning/salun.py "
    "ports it)",
    summary="saliency mask (top fraction of |forget gradient|), then masked random-label training",
    validate=_check,
    space={"threshold": Float(0.0, 1.0)},
    epochs=10,
    batch_size=256,
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    threshold=0.5,
    restore_masked=True,
    reference_bug=False,
)
def salun(ctx: UnlearnContext):
    o = ctx.options
    _check(o)
    bs = int(o["batch_size"])
    model = ctx.copy_original()
    x, y, nf = relabel_data(ctx)
    gen = generator(ctx.seed)
    grads = forget_gradient(model, x[:nf], y[:nf], batch_size=bs, reference_bug=bool(o["reference_bug"]), gen=gen)
    mask = saliency_mask(grads, float(o["threshold"]))
    named = dict(model.named_parameters())
    theta0 = {k: p.detach().clone() for k, p in named.items()}
    opt = sgd(model, o)
    keep = {k: m.bool() for k, m in mask.items()}

    @torch.no_grad()
    def restore() -> None:
        for k, p in named.items():
            if k not in keep:
                continue
            p.copy_(torch.where(keep[k], p, theta0[k]))
            buf = opt.state.get(p, {}).get("momentum_buffer")
            if buf is not None:
                buf.mul_(mask[k])

    losses = []
    with seeded(ctx.seed, ctx.device):
        for _ in bar(range(int(o["epochs"])), desc="salun", quiet=ctx.quiet, unit="epoch"):
            stats = random_relabel_epoch(
                model,
                x,
                y,
                nf,
                ctx.data.info.num_classes,
                opt,
                batch_size=bs,
                gen=gen,
                mask=mask,
                after_step=restore if o["restore_masked"] else None,
            )
            losses.append(stats["loss"])
    with torch.no_grad():
        ones = int(sum(int(m.sum()) for m in mask.values()))
        total = sum(m.numel() for m in mask.values())
        drift = max(
            (
                float((p - theta0[k]).abs()[~keep[k]].max())
                for k, p in named.items()
                if k in keep and bool((~keep[k]).any())
            ),
            default=0.0,
        )
    ctx.extra.update(
        {
            "threshold": float(o["threshold"]),
            "mask_ones": ones,
            "parameters": total,
            "mask_fraction": ones / max(total, 1),
            "restore_masked": bool(o["restore_masked"]),
            "masked_out_max_drift": drift,
            "epochs_run": len(losses),
            "epoch_losses": [round(v, 5) for v in losses],
            "steps_per_epoch": num_batches(len(y), bs),
        }
    )
    return model
