"""Evaluation metrics every stage reports: the population membership-inference attack of DC-U / Deep Unlearn /
the NeurIPS-2023 kit (docs/reference/unlearning-methods.md §1.3, docs/reference/dcu.md §5.2).

A one-feature logistic regression on per-sample cross-entropy separates members (the forget set) from
non-members (the test set). Both sets are balanced by a seeded random subsample to the smaller size; the score
is the mean held-out accuracy over 10 stratified shuffle splits (test fraction 0.1). The regression is L2
regularised like scikit-learn's default (C=1, intercept unpenalised) and fitted by Newton's method, all splits
at once. Indiscernibility = 1 - |2 * MIA - 1|.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class MiaResult:
    accuracy: float  # mean held-out accuracy over the splits, in [0, 1]
    split_accuracies: list[float]
    n_per_side: int

    @property
    def indiscernibility(self) -> float:
        return 1.0 - abs(2.0 * self.accuracy - 1.0)


def _stratified_splits(n_per_side: int, n_splits: int, test_size: float, gen: torch.Generator) -> torch.Tensor:
    """[n_splits, 2n] boolean masks: True = held out; the same count of each class is held out in each split."""
    k = max(1, round(test_size * n_per_side))
    masks = torch.zeros(n_splits, 2 * n_per_side, dtype=torch.bool)
    for side in range(2):
        keys = torch.rand(n_splits, n_per_side, generator=gen)
        held = torch.argsort(keys, dim=1)[:, :k] + side * n_per_side
        masks.scatter_(1, held, True)
    return masks


def _fit_logistic(x: torch.Tensor, y: torch.Tensor, weight: torch.Tensor, c: float = 1.0, iters: int = 50):
    """Batched 1-feature logistic regression: x, y [n], weight [S, n] (0/1 training masks) -> (w, b) [S]."""
    s = weight.shape[0]
    theta = torch.zeros(s, 2, dtype=torch.float64)
    X = torch.stack([x, torch.ones_like(x)], 1)  # [n, 2]
    reg = torch.tensor([[1.0 / c, 0.0], [0.0, 0.0]], dtype=torch.float64)
    for _ in range(iters):
        p = torch.sigmoid(theta @ X.T)  # [S, n]
        grad = ((p - y) * weight) @ X + theta * torch.tensor([1.0 / c, 0.0], dtype=torch.float64)
        h = torch.einsum("sn,ni,nj->sij", p * (1 - p) * weight, X, X) + reg + 1e-9 * torch.eye(2, dtype=torch.float64)
        step = torch.linalg.solve(h, grad.unsqueeze(-1)).squeeze(-1)
        theta = theta - step
        if float(step.abs().max()) < 1e-10:
            break
    return theta


def population_mia(
    member_losses: torch.Tensor,
    nonmember_losses: torch.Tensor,
    *,
    n_splits: int = 10,
    test_size: float = 0.1,
    seed: int = 0,
) -> MiaResult:
    """Membership-inference accuracy of a loss-threshold logistic regression (0.5 = indistinguishable)."""
    m = member_losses.detach().double().cpu().flatten()
    t = nonmember_losses.detach().double().cpu().flatten()
    n = min(len(m), len(t))
    if n < 2:
        raise ValueError("population MIA needs at least 2 members and 2 non-members")
    gen = torch.Generator().manual_seed(seed)
    m = m[torch.randperm(len(m), generator=gen)[:n]]
    t = t[torch.randperm(len(t), generator=gen)[:n]]
    x = torch.cat([m, t])
    x = (x - x.mean()) / (x.std() + 1e-12)  # scale-free, as a standardised feature
    y = torch.cat([torch.ones(n), torch.zeros(n)]).double()
    held = _stratified_splits(n, n_splits, test_size, gen)
    theta = _fit_logistic(x, y, (~held).double())
    pred = (theta @ torch.stack([x, torch.ones_like(x)], 1).T) > 0  # [S, 2n]
    correct = (pred == y.bool()) & held
    accs = (correct.sum(1).double() / held.sum(1).double()).tolist()
    return MiaResult(sum(accs) / len(accs), accs, n)
