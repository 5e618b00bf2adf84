"""JiT: zero-shot unlearning by Lipschitz smoothing around the forget samples (Foster, Fogarty, Schoepf, Oztireli,
Brintrup, "Zero-Shot Machine Unlearning at Scale via Lipschitz Regularization", arXiv 2402.01401, retitled "An
Information Theoretic Approach to Machine Unlearning"; authors' code ``jwf40/Information-Theoretic-Unlearning``,
``src/lipschitz.py`` ``Lipschitz.modify_weight`` and ``lipschitz_forgetting``; ../shared/reference/more-methods.md
§1). Sees the model and the forget images only (no labels, no retain data: registered zero-shot, so the request
gives it nothing else).

One pass over the forget set in its order, batches of ``batch_size`` (the reference's 128), plain SGD (lr ``lr``)
over every parameter. Per batch x, in the model's NORMALISED input space (as the reference, whose loader
normalises): N = ``n_samples`` noisy copies ``x'_i = clamp(x + sigma * eps_i, min(x), max(x))``, eps ~ N(0, 1)
element-wise and the bounds the min and max of the whole batch tensor; ``y = f(x)`` with gradient, ``y'_i = f(x'_i)``
without; the loss ``(1/N) sum_i sum_b ||y_b - y'_i,b|| / ||x_b - x'_i,b||`` (summed over the batch, so the step
grows with the batch size, as in the reference); one SGD step. In eval mode the N copies go through the model as
one batch (the same outputs as one at a time).

Choices where the reference is loose or wrong, each with a switch that reproduces it:

* ``mode`` -- ``"eval"`` (default): BatchNorm uses its running statistics and dropout is off, so the noisy copies
  neither move BN statistics nor add dropout noise. The reference never calls ``eval()`` (a loaded model is in
  train mode): ``"train"`` reproduces that.
* ``reference_bug`` -- the reference zeroes gradients once before the loop, never per batch, so with more than one
  forget batch each step applies the SUM of all gradients so far. False (default) zeroes them per batch; True
  accumulates as the reference does.

Defaults: the authors' code's random-forgetting setting for its 32-pixel network (``src/forget_random_main.py``,
VGG16: ``lipschitz_weighting`` = sigma 0.01, lr 3e-4; ``n_samples`` 25 in every main file; forget batch 128 in
``forget_random_main.py``); its full-class setting is sigma 0.5 with the same lr. Other settings that carry the name
(issue #32 checked them against the code): the wrapper ``lipschitz_forgetting``'s own keyword defaults are sigma 0.1,
lr 0.01, N 25 (every main file overrides sigma and lr); SUPREME 0.1.5's ``jit`` defaults are sigma 0.1, lr 1e-3,
N 10, forget batch = its ``-batch_size`` (64 or 128 by entry point) -- ``--option sigma=0.1 --option lr=1e-3
--option n_samples=10 --option batch_size=64`` runs that setting. The
algorithm box of the paper (its Algorithm 1) names sigma, lr and N but gives no values. Searched: sigma and lr,
log-uniform.
"""

from __future__ import annotations

import torch

from dcforget.runtime import generator, seeded
from dcforget.space import Fixed, Float
from dcforget.train import as_unit

from .base import UnlearnContext, register
from .common import require


def check(o: dict) -> None:
    require(
        o,
        "jit",
        positive_int=("batch_size", "n_samples"),
        positive=("sigma", "lr"),
        choices={"mode": ("eval", "train")},
        flags=("reference_bug",),
    )


def _step(model, opt, x, mean, std, k, sigma, gen, accumulate: bool) -> float:
    """One JiT step on the batch ``x`` (unit-space images); returns its loss."""
    xn = (x - mean) / std  # the reference's input space
    noise = torch.randn((k, *xn.shape), generator=gen).to(x.device) * sigma
    xn2 = torch.clamp(xn.unsqueeze(0) + noise, min=xn.min(), max=xn.max())  # [N, B, C, H, W]
    if not accumulate:
        opt.zero_grad(set_to_none=True)
    out = model(x)
    with torch.no_grad():
        x2 = xn2 * std + mean
        if model.training:  # train-mode BN normalises by its batch: one copy at a time, as the reference
            out2 = torch.stack([model(x2[i]) for i in range(k)])
        else:  # no batch dependence: the N copies together, about 1,024 images a pass
            flat = x2.flatten(0, 1)
            step = max(len(x), 1024 // max(len(x), 1) * len(x))
            out2 = torch.cat([model(flat[i : i + step]) for i in range(0, len(flat), step)]).view(k, len(x), -1)
    in_norm = torch.linalg.vector_norm((xn.unsqueeze(0) - xn2).flatten(2), dim=2)  # [N, B]
    out_norm = torch.linalg.vector_norm(out.unsqueeze(0) - out2, dim=2)
    loss = (out_norm / in_norm).sum() / k
    loss.backward()
    opt.step()
    return float(loss.detach())


@register(
    "jit",
    reference="Foster et al., arXiv 2402.01401 (TMLR 2025); jwf40/Information-Theoretic-Unlearning "
    "src/lipschitz.py, settings of src/forget_random_main.py (VGG16, random forgetting)",
    zero_shot=True,
    validate=check,
    shared_space=False,
    summary="JiT: Lipschitz smoothing of the output around each forget image (zero-shot: forget images only)",
    space={
        "sigma": Float(1e-3, 1.0, log=True),
        "lr": Float(1e-5, 1e-1, log=True),
        "n_samples": Fixed(25),
        "batch_size": Fixed(128),
        "mode": Fixed("eval"),
        "reference_bug": Fixed(False),
    },
    sigma=0.01,
    lr=3e-4,
    n_samples=25,
    batch_size=128,
    mode="eval",
    reference_bug=False,
)
def jit(ctx: UnlearnContext):
    o = ctx.options
    check(o)
    model = ctx.copy_original()
    model.train(o["mode"] == "train")
    opt = torch.optim.SGD(model.parameters(), lr=float(o["lr"]))
    xf, _ = ctx.forget()  # labels are not used
    norm = model.normalize
    mean, std = norm.mean.to(ctx.device), norm.std.to(ctx.device)
    n, k, bs, sigma = len(xf), int(o["n_samples"]), int(o["batch_size"]), float(o["sigma"])
    gen = generator(ctx.seed)
    opt.zero_grad(set_to_none=True)
    losses = []
    with seeded(ctx.seed, ctx.device):  # dropout's draws in train mode
        for lo in range(0, n, bs):
            losses.append(
                _step(
                    model,
                    opt,
                    as_unit(xf[lo : lo + bs]).to(ctx.device),
                    mean,
                    std,
                    k,
                    sigma,
                    gen,
                    bool(o["reference_bug"]),
                )
            )
    ctx.extra.update(steps=len(losses), mean_loss=sum(losses) / max(len(losses), 1))
    return model.eval()
