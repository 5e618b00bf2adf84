"""ROC curves, AUC and TPR at a fixed FPR for attack scores (higher score = "member")."""

from __future__ import annotations

import torch


def roc_curve(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(fpr, tpr) at every threshold, from (0,0) to (1,1); ties are handled as one threshold."""
    s = torch.cat([member_scores.double().flatten(), nonmember_scores.double().flatten()]).cpu()
    y = torch.cat([torch.ones(member_scores.numel()), torch.zeros(nonmember_scores.numel())]).double()
    order = torch.argsort(s, descending=True)
    s, y = s[order], y[order]
    tp, fp = torch.cumsum(y, 0), torch.cumsum(1 - y, 0)
    last = torch.cat([s[1:] != s[:-1], torch.tensor([True])])  # end of each run of equal scores
    tpr = torch.cat([torch.zeros(1), tp[last] / max(float(y.sum()), 1.0)])
    fpr = torch.cat([torch.zeros(1), fp[last] / max(float((1 - y).sum()), 1.0)])
    return fpr, tpr


def auc(member_scores: torch.Tensor, nonmember_scores: torch.Tensor) -> float:
    fpr, tpr = roc_curve(member_scores, nonmember_scores)
    return float(torch.trapezoid(tpr, fpr))


def tpr_at_fpr(member_scores: torch.Tensor, nonmember_scores: torch.Tensor, fpr_level: float) -> float:
    """The largest TPR whose FPR does not exceed ``fpr_level``."""
    fpr, tpr = roc_curve(member_scores, nonmember_scores)
    ok = fpr <= fpr_level + 1e-12
    return float(tpr[ok].max())
