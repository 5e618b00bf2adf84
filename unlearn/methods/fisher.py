"""Fisher forgetting (Golatkar et al., as in Unlearn-Sparse's fisher_new; unlearning-methods.md §1.5 item 8):
a diagonal Fisher F over the retain set (for each class y, batches' mean p_y times the squared gradient of
CE(x, y)), then theta <- theta0 + sqrt(var) * N(0, 1) with var = alpha / (F + 1e-8), clamped at 1e3 (1e2 for the
classifier), x10 for the classifier and 1-D parameters. No training step."""

import torch
import torch.nn.functional as F

from dcforget.progress import bar
from dcforget.runtime import seeded
from dcforget.train import as_unit

from .base import UnlearnContext, register


@register("fisher", summary="add noise scaled by the inverse diagonal Fisher of the retain set (alpha 1e-7)",
          alpha=1e-7, batch_size=256)
def fisher(ctx: UnlearnContext):
    o = ctx.options
    model = ctx.copy_original().eval()
    params = [p for p in model.parameters() if p.requires_grad]
    fish = [torch.zeros_like(p) for p in params]
    x, _ = ctx.retain()
    bs = int(o["batch_size"])
    batches = range(0, len(x), bs)
    k = ctx.data.info.num_classes
    for s in bar(batches, desc="fisher", quiet=ctx.quiet, unit="batch"):
        xb = as_unit(x[s:s + bs])
        for y in range(k):
            logits = model(xb)
            w = F.softmax(logits, 1)[:, y].mean().detach()
            loss = F.cross_entropy(logits, torch.full((len(xb),), y, device=xb.device))
            grads = torch.autograd.grad(loss, params)
            for f, g in zip(fish, grads):
                f += w * g.detach() ** 2
    head = {id(p) for p in model.final.head.parameters()}
    with torch.no_grad(), seeded(ctx.seed, ctx.device):
        for p, f in zip(params, fish):
            f /= len(batches)
            var = (float(o["alpha"]) / (f + 1e-8)).clamp(max=1e2 if id(p) in head else 1e3)
            if id(p) in head or p.dim() == 1:
                var = var * 10
            p.add_(var.sqrt() * torch.randn_like(p))
    return model
