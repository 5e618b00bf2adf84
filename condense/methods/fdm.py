"""DC-U's fast distribution matching (dcu.md §2.1), all buckets at once.

Per bucket b with members x_1..x_n: weights w (init 1/n, free), image s_b = sum_i w_i x_i, loss
||mean_i phi(x_i) - phi(s_b)||^2 with phi the frozen model's embedding, Adam on w. Buckets are padded to the
largest and optimised together, chunk by chunk; the loss is the sum of the per-bucket losses, so each bucket's
weights get exactly their own bucket's gradient, and Adam (elementwise) steps them exactly as a per-bucket loop
would (the reference's batched script matched the mean over all buckets instead: a bug). The embedder runs in
eval mode, so a bucket's embedding does not depend on the other buckets in the batch.

Blending happens in [0,1] pixel space (the reference blends normalised images; the two agree when the weights
sum to 1).
"""

from __future__ import annotations

import torch

from dcforget.progress import bar
from dcforget.train import as_unit

from .base import Condensed, CondenseJob, register


def bucket_targets(features: torch.Tensor, buckets) -> torch.Tensor:
    """Mean embedding of each bucket's members: [B, D]."""
    owner = buckets.owner().to(features.device)
    sums = torch.zeros(len(buckets), features.shape[1], device=features.device).index_add_(
        0, owner, features[buckets.indices.to(features.device)].float())
    return sums / buckets.sizes.to(features.device)[:, None].float()


def fdm_blend(model, members: torch.Tensor, mask: torch.Tensor, target: torch.Tensor, *, steps: int, lr: float,
              bf16: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Optimise blend weights for a batch of buckets. members [b, M, C, H, W] (zero where padded), mask [b, M],
    target [b, D]. Returns (images [b, C, H, W], weights [b, M])."""
    sizes = mask.sum(1, keepdim=True).float()
    w = (mask.float() / sizes).requires_grad_(True)
    # a one-image bucket is already optimal (its image is its mean); its gradient is float noise that Adam's
    # scale invariance would turn into full-size steps, so it is frozen
    frozen = (sizes == 1).expand_as(w)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps):
        s = torch.einsum("bm,bmchw->bchw", w, members)
        with torch.autocast(members.device.type, dtype=torch.bfloat16, enabled=bf16):
            f = model.features(s)
        loss = ((f.float() - target) ** 2).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        w.grad[frozen] = 0.0
        opt.step()
    with torch.no_grad():
        return torch.einsum("bm,bmchw->bchw", w, members), w.detach()


@register("fdm", bucket_based=True, summary="DC-U fast distribution matching: a learned blend per bucket",
          steps=100, lr=1e-3, chunk=512, bf16=False)
def fdm(job: CondenseJob) -> Condensed:
    o = job.options
    model, buckets = job.model, job.buckets
    params = list(model.parameters())
    flags = [p.requires_grad for p in params]
    for p in params:
        p.requires_grad_(False)
    model.eval()
    targets = bucket_targets(job.features, buckets)
    idx, mask = buckets.padded(job.device)
    out = torch.empty(len(buckets), *job.images.shape[1:], device=job.device)
    chunk = int(o["chunk"])
    try:
        for s in bar(range(0, len(buckets), chunk), desc="fdm", quiet=job.quiet, unit="chunk"):
            e = min(s + chunk, len(buckets))
            m = mask[s:e]
            members = as_unit(job.images[idx[s:e]]) * m[:, :, None, None, None]
            out[s:e], _ = fdm_blend(model, members, m, targets[s:e], steps=int(o["steps"]), lr=float(o["lr"]),
                                    bf16=bool(o["bf16"]))
    finally:
        for p, f in zip(params, flags):
            p.requires_grad_(f)
    return Condensed(out, buckets, torch.full((len(buckets),), -1, dtype=torch.long), "bucket")
