"""Weighted ROC statistics and their bootstrap intervals: AUC, accuracy and TPR at low FPR of attack scores, with a
bootstrap over groups of scores (e.g. the target models of U-LiRA)."""

from __future__ import annotations

from typing import Any

import torch


def _weighted_curves(scores: torch.Tensor, is_pos: torch.Tensor, weights: torch.Tensor
                     ) -> tuple[torch.Tensor, torch.Tensor]:
    """(fpr, tpr) [B, T+1] for B rows of sample weights [B, n] over one set of scores (higher = member)."""
    order = torch.argsort(scores, descending=True)
    s, y, w = scores[order], is_pos[order].double(), weights[:, order]
    tp, fp = torch.cumsum(w * y, 1), torch.cumsum(w * (1 - y), 1)
    last = torch.cat([s[1:] != s[:-1], torch.tensor([True])])
    zero = torch.zeros(len(w), 1, dtype=torch.float64)
    tpr = torch.cat([zero, tp[:, last] / tp[:, -1:].clamp_min(1e-12)], 1)
    fpr = torch.cat([zero, fp[:, last] / fp[:, -1:].clamp_min(1e-12)], 1)
    return fpr, tpr


def roc_stats(fpr: torch.Tensor, tpr: torch.Tensor, levels=(0.01, 0.001)) -> dict[str, torch.Tensor]:
    """AUC, accuracy (the best threshold's balanced accuracy) and TPR at each FPR level, per row."""
    out = {"auc": torch.trapezoid(tpr, fpr, dim=1), "accuracy": (0.5 * (tpr + 1 - fpr)).max(1).values}
    for level in levels:
        out[f"tpr_at_{level * 100:g}pct_fpr"] = torch.where(fpr <= level + 1e-12, tpr, torch.zeros_like(tpr)).max(1).values
    return out


def bootstrap_roc(member_scores: torch.Tensor, nonmember_scores: torch.Tensor, groups: torch.Tensor,
                  n_groups: int, *, bootstrap: int = 1000, seed: int = 0, chunk: int = 50) -> dict[str, Any]:
    """AUC, accuracy and TPR at 1% and 0.1% FPR of member vs non-member scores, with 95% percentile intervals from
    a bootstrap over groups: ``groups[j]`` (in [0, n_groups)) is the group of the pair (member_scores[j],
    nonmember_scores[j]), e.g. the target model; each replicate draws n_groups groups with replacement and weighs
    every pair by how often its group was drawn."""
    pos, neg = member_scores.double().flatten().cpu(), nonmember_scores.double().flatten().cpu()
    groups = groups.flatten().cpu()
    scores = torch.cat([pos, neg])
    is_pos = torch.cat([torch.ones(len(pos), dtype=torch.bool), torch.zeros(len(neg), dtype=torch.bool)])
    both = torch.cat([groups, groups])
    point = {k: float(v[0]) for k, v in roc_stats(*_weighted_curves(scores, is_pos, torch.ones(1, len(scores),
                                                                                                dtype=torch.float64))).items()}
    out: dict[str, Any] = dict(point)
    if bootstrap:
        g = torch.Generator().manual_seed(seed)
        reps: dict[str, list[torch.Tensor]] = {k: [] for k in point}
        for start in range(0, bootstrap, chunk):
            b = min(chunk, bootstrap - start)
            draws = torch.randint(n_groups, (b, n_groups), generator=g)
            counts = torch.zeros(b, n_groups, dtype=torch.float64).scatter_add_(1, draws, torch.ones(b, n_groups,
                                                                                                     dtype=torch.float64))
            for k, v in roc_stats(*_weighted_curves(scores, is_pos, counts[:, both])).items():
                reps[k].append(v)
        for k, v in reps.items():
            lo, hi = torch.quantile(torch.cat(v), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
            out[f"{k}_ci"] = [lo, hi]
    return out
