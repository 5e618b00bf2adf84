"""K-means in torch: k-means++ initialisation (seeded), Lloyd iterations with batched distance matrices, on
whatever device the data is on."""

from __future__ import annotations

import torch

from .errors import ConfigError


def _sq_dists(x: torch.Tensor, c: torch.Tensor, x_sq: torch.Tensor) -> torch.Tensor:
    return (x_sq[:, None] - 2.0 * x @ c.T + (c * c).sum(1)[None, :]).clamp_min_(0.0)


def kmeans_plus_plus(x: torch.Tensor, k: int, gen: torch.Generator) -> torch.Tensor:
    """k-means++ seeding: each new centre drawn with probability proportional to D(x)^2."""
    n = x.shape[0]
    centres = torch.empty(k, x.shape[1], dtype=x.dtype, device=x.device)
    x_sq = (x * x).sum(1)
    dist_to = lambda j: (x_sq - 2.0 * (x @ x[j]) + x_sq[j]).clamp_min_(0.0)  # matvec, no [n, d] temporary
    first = int(torch.randint(n, (1,), generator=gen))
    centres[0] = x[first]
    d2 = dist_to(first)
    for i in range(1, k):
        total = float(d2.sum())
        if total <= 0:  # fewer distinct points than k: pick any
            j = int(torch.randint(n, (1,), generator=gen))
        else:
            j = int(torch.multinomial((d2 / total).double().cpu(), 1, generator=gen))
        centres[i] = x[j]
        d2 = torch.minimum(d2, dist_to(j))
    return centres


def kmeans(
    x: torch.Tensor, k: int, *, seed: int = 0, iters: int = 100, tol: float = 1e-4
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """Cluster rows of ``x`` [n, d] into ``k`` clusters. Returns (centroids [k, d], assignment [n], iterations).

    ``tol`` is relative to the data's mean per-feature variance (as scikit-learn). Clusters that empty out are
    re-seeded with the point farthest from its centre, so every cluster ends non-empty."""
    n = x.shape[0]
    if not 1 <= k <= n:
        raise ConfigError(f"k-means needs 1 <= k <= number of points ({n}), got k={k}")
    x = x.float()
    gen = torch.Generator().manual_seed(seed)
    c = kmeans_plus_plus(x, k, gen)
    x_sq = (x * x).sum(1)
    threshold = tol * float(x.var(0).mean()) if n > 1 else 0.0
    assign = torch.zeros(n, dtype=torch.long, device=x.device)
    it = 0
    for it in range(1, iters + 1):
        d = _sq_dists(x, c, x_sq)
        dmin, assign = d.min(1)
        counts = torch.bincount(assign, minlength=k)
        new = torch.zeros_like(c).index_add_(0, assign, x)
        empty = counts == 0
        if bool(empty.any()):
            far = torch.argsort(dmin, descending=True)[: int(empty.sum())]
            new[empty] = x[far]
            counts[empty] = 1
            assign[far] = torch.nonzero(empty).flatten()
        new = new / counts[:, None].to(x.dtype)
        shift = float(((new - c) ** 2).sum(1).max())
        c = new
        if shift <= threshold:
            break
    d = _sq_dists(x, c, x_sq)
    assign = d.argmin(1)
    # make sure no cluster is empty in the final assignment (possible after the last move)
    counts = torch.bincount(assign, minlength=k)
    if bool((counts == 0).any()):
        for j in torch.nonzero(counts == 0).flatten().tolist():
            donor = int(torch.argmax(torch.bincount(assign, minlength=k)))
            members = torch.nonzero(assign == donor).flatten()
            assign[members[torch.argmax(d[members, j] - d[members, donor])]] = j
    return c, assign, it
