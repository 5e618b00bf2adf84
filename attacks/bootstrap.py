"""Weighted ROC statistics and their bootstrap intervals: AUC, accuracy and TPR at low FPR of attack scores, with a
bootstrap over groups of fixed scores (:func:`bootstrap_roc`). U-LiRA's intervals resample splits and refit the
attack in each replicate instead (:func:`attacks.ulira.cluster_bootstrap`, on :func:`weighted_curves`), since its
scores depend on the splits drawn."""

from __future__ import annotations

from typing import Any

import torch


def weighted_curves(
    scores: torch.Tensor, is_pos: torch.Tensor, weights: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """(fpr, tpr) [B, n+1] for B rows of sample weights [B, n] (higher score = member). ``scores`` is one set of
    scores [n] shared by the rows, or one per row [B, n]. Tied scores form one point of the curve (the position of
    the tie's last member carries it; the other members repeat the previous point), so a tie costs half the area
    between, as the usual ROC with ties; repeated points add no area and change no statistic of :func:`roc_stats`."""
    rows = weights.shape[0]
    scores = scores.expand(rows, -1) if scores.dim() == 1 else scores
    order = torch.argsort(scores, dim=1, descending=True)
    s = torch.gather(scores, 1, order)
    y = is_pos.double().expand(rows, -1).gather(1, order)
    w = torch.gather(weights.double(), 1, order)
    tp, fp = torch.cumsum(w * y, 1), torch.cumsum(w * (1 - y), 1)
    n = s.shape[1]
    last = torch.cat([s[:, 1:] != s[:, :-1], torch.ones(rows, 1, dtype=torch.bool)], 1)
    pos = torch.arange(n).expand(rows, -1)
    end = torch.where(last, pos, torch.full_like(pos, n)).flip(1).cummin(1).values.flip(1)  # each one's tie's end
    tp, fp = tp.gather(1, end), fp.gather(1, end)
    zero = torch.zeros(rows, 1, dtype=torch.float64)
    tpr = torch.cat([zero, tp / tp[:, -1:].clamp_min(1e-12)], 1)
    fpr = torch.cat([zero, fp / fp[:, -1:].clamp_min(1e-12)], 1)
    return fpr, tpr


def roc_stats(fpr: torch.Tensor, tpr: torch.Tensor, levels=(0.01, 0.001)) -> dict[str, torch.Tensor]:
    """AUC, accuracy (the best threshold's balanced accuracy) and TPR at each FPR level, per row."""
    out = {"auc": torch.trapezoid(tpr, fpr, dim=1), "accuracy": (0.5 * (tpr + 1 - fpr)).max(1).values}
    for level in levels:
        out[f"tpr_at_{level * 100:g}pct_fpr"] = (
            torch.where(fpr <= level + 1e-12, tpr, torch.zeros_like(tpr)).max(1).values
        )
    return out


def bootstrap_roc(
    member_scores: torch.Tensor,
    nonmember_scores: torch.Tensor,
    groups: torch.Tensor,
    n_groups: int,
    *,
    bootstrap: int = 1000,
    seed: int = 0,
    chunk: int = 50,
) -> dict[str, Any]:
    """AUC, accuracy and TPR at 1% and 0.1% FPR of member vs non-member scores, with 95% percentile intervals from
    a bootstrap over groups: ``groups[j]`` (in [0, n_groups)) is the group of the pair (member_scores[j],
    nonmember_scores[j]), e.g. the target model; each replicate draws n_groups groups with replacement and weighs
    every pair by how often its group was drawn."""
    pos, neg = member_scores.double().flatten().cpu(), nonmember_scores.double().flatten().cpu()
    groups = groups.flatten().cpu()
    scores = torch.cat([pos, neg])
    is_pos = torch.cat([torch.ones(len(pos), dtype=torch.bool), torch.zeros(len(neg), dtype=torch.bool)])
    both = torch.cat([groups, groups])
    point = {
        k: float(v[0])
        for k, v in roc_stats(*weighted_curves(scores, is_pos, torch.ones(1, len(scores), dtype=torch.float64))).items()
    }
    out: dict[str, Any] = dict(point)
    if bootstrap:
        g = torch.Generator().manual_seed(seed)
        reps: dict[str, list[torch.Tensor]] = {k: [] for k in point}
        for start in range(0, bootstrap, chunk):
            b = min(chunk, bootstrap - start)
            draws = torch.randint(n_groups, (b, n_groups), generator=g)
            counts = torch.zeros(b, n_groups, dtype=torch.float64).scatter_add_(
                1, draws, torch.ones(b, n_groups, dtype=torch.float64)
            )
            for k, v in roc_stats(*weighted_curves(scores, is_pos, counts[:, both])).items():
                reps[k].append(v)
        for k, v in reps.items():
            lo, hi = torch.quantile(torch.cat(v), torch.tensor([0.025, 0.975], dtype=torch.float64)).tolist()
            out[f"{k}_ci"] = [lo, hi]
    return out
