"""NegGrad+ (docs/reference/unlearning-methods.md §1.5 item 4): over retain batches, cycling forget batches, minimise
alpha * [CE(R) + wd/2 ||theta - theta0||^2] - (1 - alpha) * CE(F), model in eval mode (batch-norm statistics
frozen), SGD.

torchunlearn's ``NegGrad(retain_lambda=alpha)`` (Harry24k/machine-unlearning-pytorch
``torchunlearn/unlearn/trainers/neggrad.py``; experiments/parity.py compares it with this method) is this objective
without the proximal term (SGD's weight decay towards 0 instead) and with the model in train mode (dropout on). At
its README's retain_lambda 0.5, lr 0.01, 5 epochs both collapse on the CPU parity checkpoint: torchunlearn's to
chance accuracy, ours to non-finite weights, which the request refuses (reports/parity-cpu)."""

import itertools

import torch
import torch.nn.functional as F

from dcforget.progress import bar
from dcforget.runtime import generator, seeded
from dcforget.space import Float
from dcforget.train import as_unit

from .base import UnlearnContext, register


@register(
    "neggrad-plus",
    reference="Deep Unlearn (Cadet et al.) munl/unlearning/neggradplus.py (from meghdadk/SCRUB notebooks)",
    summary="retain CE plus a proximal term, minus forget CE (alpha 0.95)",
    epochs=10,
    batch_size=256,
    lr=0.01,
    momentum=0.9,
    weight_decay=5e-4,
    alpha=0.95,
    space={"alpha": Float(0.0, 1.0)},
)
def neggrad_plus(ctx: UnlearnContext):
    o = ctx.options
    model = ctx.copy_original().eval()
    theta0 = [p.detach().clone() for p in model.parameters()]
    xr, yr = ctx.retain()
    xf, yf = ctx.forget()
    opt = torch.optim.SGD(model.parameters(), lr=float(o["lr"]), momentum=float(o["momentum"]))
    gen = generator(ctx.seed)
    bs, alpha, wd = int(o["batch_size"]), float(o["alpha"]), float(o["weight_decay"])
    dev = ctx.device
    with seeded(ctx.seed, dev):
        for _ in bar(range(int(o["epochs"])), desc="neggrad-plus", quiet=ctx.quiet, unit="epoch"):
            pr = torch.randperm(len(yr), generator=gen).to(dev)
            pf = torch.randperm(len(yf), generator=gen).to(dev)
            forget_batches = itertools.cycle([pf[i : i + bs] for i in range(0, len(pf), bs)])
            for i in range(0, len(pr), bs):
                r, f = pr[i : i + bs], next(forget_batches)
                prox = sum(((p - p0) ** 2).sum() for p, p0 in zip(model.parameters(), theta0))
                loss = alpha * (F.cross_entropy(model(as_unit(xr[r])), yr[r]) + wd / 2 * prox) - (
                    1 - alpha
                ) * F.cross_entropy(model(as_unit(xf[f])), yf[f])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    return model
