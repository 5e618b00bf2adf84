"""A post-hoc concept bottleneck model (PCBM, Yuksekgonul et al. 2023) on top of a trained classifier, and the
ranking of each class's concepts by Integrated Gradients.

The PCBM maps an image to its concept scores (bank.ConceptBank.scores of the classifier's embedding), standardises
them with the training set's mean and std (a fixed affine map, so one penalty strength suits any bank), and
classifies them with one sparse linear layer: a multinomial logistic regression with the elastic-net penalty
``lam * (alpha * |W|_1 + (1 - alpha) / 2 * |W|_2^2)`` -- the reference's ``SGDClassifier(log_loss, elasticnet)``
objective, defaults lam = 1e-5 and alpha = 0.99 as there -- fitted here by full-batch accelerated proximal gradient
(FISTA: gradient steps on the smooth part, soft-thresholding for the L1 part) instead of SGD, so it is deterministic
and its zeros are exact. Its test
accuracy is reported beside the original classifier's.

Ranking (:func:`rank_concepts`): for each class y, the mean over the class's training images of the Integrated
Gradients (captum) of logit y with respect to the concept scores, from a baseline score vector s' (``baseline``:
``"low"``, each concept's 5th percentile over the training set -- "the concept barely shown" -- by default, or
``"mean"``, or ``"zero"``). For this linear PCBM, IG is exactly ``W_eff[y, c] * (s_c - s'_c)`` (``W_eff`` the
weight on raw scores), which :func:`closed_form_ig` computes and a test checks captum against; a concept ranks high
for a class when the class's images show it more than the baseline and the PCBM counts it for the class."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from dcforget.errors import ConfigError

from .bank import ConceptBank, ConceptError

BASELINES = ("low", "mean", "zero")


class PCBM(nn.Module):
    """Concept scores [N, K] -> logits [N, classes]: standardise, then one linear layer."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor, num_classes: int) -> None:
        super().__init__()
        self.register_buffer("mean", mean.float())
        self.register_buffer("std", std.float().clamp_min(1e-6))
        self.linear = nn.Linear(len(mean), num_classes)
        nn.init.zeros_(self.linear.weight)
        nn.init.zeros_(self.linear.bias)

    def forward(self, scores: torch.Tensor) -> torch.Tensor:
        return self.linear((scores - self.mean) / self.std)

    @property
    def effective_weight(self) -> torch.Tensor:
        """The weight on raw concept scores: logits = scores @ W_eff.T + const."""
        return self.linear.weight / self.std[None, :]

    def sparsity(self) -> float:
        """Share of exactly-zero weights."""
        return float((self.linear.weight == 0).float().mean())


@dataclass
class FittedPCBM:
    model: PCBM
    train_acc: float
    val_acc: float | None
    steps: int


def fit_pcbm(
    scores: torch.Tensor,
    labels: torch.Tensor,
    num_classes: int,
    *,
    lam: float = 1e-5,
    alpha: float = 0.99,
    steps: int = 500,
    lr: float = 1.0,
    val: tuple[torch.Tensor, torch.Tensor] | None = None,
) -> FittedPCBM:
    """The elastic-net logistic regression of the module's docstring on concept scores [N, K]."""
    if not (lam >= 0 and 0 <= alpha <= 1 and steps >= 1 and lr > 0):
        raise ConfigError("PCBM needs lam >= 0, 0 <= alpha <= 1, steps >= 1, lr > 0")
    scores, labels = scores.float(), labels.long().to(scores.device)
    m = PCBM(scores.mean(0), scores.std(0), num_classes).to(scores.device)
    z = (scores - m.mean) / m.std
    # step 1/L: the softmax cross-entropy's gradient is (1/2) lambda_max(Z'Z/N)-Lipschitz in W (plus the L2 part)
    lip = 0.5 * float(torch.linalg.eigvalsh(z.T @ z / len(z)).max()) + 0.5 + lam * (1 - alpha)
    step = lr / lip
    w, b = m.linear.weight, m.linear.bias
    w_prev, b_prev, t_k = w.detach().clone(), b.detach().clone(), 1.0
    for _ in range(steps):  # FISTA: accelerated proximal gradient
        w.grad = b.grad = None
        loss = F.cross_entropy(m.linear(z), labels) + lam * (1 - alpha) / 2 * (w * w).sum()
        loss.backward()
        with torch.no_grad():
            w_new = w - step * w.grad
            w_new = torch.sign(w_new) * (w_new.abs() - step * lam * alpha).clamp_min(0)  # prox of the L1 part
            b_new = b - step * b.grad
            t_next = (1 + (1 + 4 * t_k * t_k) ** 0.5) / 2
            mom = (t_k - 1) / t_next
            w.copy_(w_new + mom * (w_new - w_prev))
            b.copy_(b_new + mom * (b_new - b_prev))
            w_prev, b_prev, t_k = w_new, b_new, t_next
    with torch.no_grad():
        w.copy_(w_prev)
        b.copy_(b_prev)
    m.eval()
    with torch.no_grad():
        tr = float((m(scores).argmax(1) == labels).float().mean())
        va = None
        if val is not None and len(val[1]):
            va = float((m(val[0].float()).argmax(1) == val[1].to(scores.device)).float().mean())
    return FittedPCBM(m, tr, va, steps)


def baseline_scores(train_scores: torch.Tensor, kind: str = "low") -> torch.Tensor:
    if kind == "low":
        return torch.quantile(train_scores.float(), 0.05, dim=0)
    if kind == "mean":
        return train_scores.float().mean(0)
    if kind == "zero":
        return torch.zeros(train_scores.shape[1], device=train_scores.device)
    raise ConfigError(f"IG baseline must be one of {', '.join(BASELINES)}, not {kind!r}")


def integrated_gradients(
    pcbm: PCBM, scores: torch.Tensor, target: int | torch.Tensor, baseline: torch.Tensor, n_steps: int = 32
) -> torch.Tensor:
    """captum's Integrated Gradients of logit ``target`` w.r.t. the concept scores [N, K], from ``baseline`` [K]."""
    try:
        from captum.attr import IntegratedGradients
    except ImportError:  # pragma: no cover - captum is in the concepts extra
        raise ConfigError("ranking concepts needs captum: pip install 'dcforget[concepts]'") from None
    ig = IntegratedGradients(pcbm)
    base = baseline.to(scores.device).float()[None].expand_as(scores).contiguous()
    return ig.attribute(scores.float(), baselines=base, target=target, n_steps=n_steps).detach()


def closed_form_ig(pcbm: PCBM, scores: torch.Tensor, target: int, baseline: torch.Tensor) -> torch.Tensor:
    """IG of a linear PCBM in closed form: W_eff[target, c] * (s_c - s'_c)."""
    return pcbm.effective_weight[target][None] * (scores - baseline.to(scores.device)[None])


def rank_concepts(
    pcbm: PCBM, bank: ConceptBank, scores: torch.Tensor, labels: torch.Tensor, baseline: torch.Tensor
) -> dict[int, list[dict[str, Any]]]:
    """Per class present in ``labels``: every concept with its mean IG attribution over the class's images, best
    first."""
    out = {}
    labels = labels.to(scores.device)
    for c in torch.unique(labels).tolist():
        s = scores[labels == c]
        a = integrated_gradients(pcbm, s, int(c), baseline).mean(0).cpu()
        order = torch.argsort(a, descending=True).tolist()
        out[int(c)] = [{"concept": bank.names[i], "attribution": float(a[i])} for i in order]
    return out


def check_class(c: int, num_classes: int) -> int:
    if not isinstance(c, int) or isinstance(c, bool) or not 0 <= c < num_classes:
        raise ConceptError(f"class {c!r} is out of range: the model has classes 0..{num_classes - 1}")
    return c
