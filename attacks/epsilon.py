"""The NeurIPS-2023 unlearning-challenge metric (docs/reference/unlearning-methods.md §2.5; google-deepmind/unlearning_evaluation).

For each forget example, the scores (logit-scaled confidence log p_y - log(1 - p_y)) of N unlearned and N
retrained models form two samples; "positive" is the one with the larger median. Two families of decision rules,
100 thresholds per unit of score:
* single threshold t over the pooled range: predict positive when score >= t;
* double threshold [l, r]: predict the peakier sample (smaller range, width w) when l <= score <= r, with r from
  (peaky min + w - 2) to (peaky max + 2) and l within +-2 of r - w (400 values).
Per rule, with its FPR and FNR: both zero (perfect separation) -> infinity; one zero -> discarded; else
    eps = max(0, log(1 - delta - FPR) - log FNR, log(1 - delta - FNR) - log FPR),   delta = 1e-5
(a side whose log argument is negative is skipped; a rule with both sides skipped is discarded too).
eps of the example = the max over rules, capped at 50; an example whose samples' range ratio is under 1% gets 50.
Edge cases, as the challenge code (``metric.py``) behaves:
* both samples constant (range 0): the ratio is 0/0 = NaN, not under 1%, so the rules decide (distinct constants
  separate perfectly: 50);
* a pooled range under 1/100 gives no single-threshold rule (``linspace`` with 0 points);
* every rule discarded: the reference stops (``assert thr_eps, "... all thresholds gave nan epsilon"``); here
  :class:`EpsilonUndefinedError` (typed, so the CLI prints one line) names the example;
* "positive" is the sample with the larger ``np.median`` (the mean of the two middle values for even N; torch's
  ``median`` would take the lower one).
eps is bucketed in steps of 0.5 from 0 while the bucket ends at or below ceil(ln(N - 1)); buckets are worth
1, 1/2, 1/4, ...; anything beyond scores 0. N = 2 gives ceil(ln 1) = 0 and N = 1 gives -inf: no bucket at all, every
example scores 0 (nothing is divided by zero). F = mean points over the forget set; the final score is
F x (RA_unlearned / RA_retrained) x (TA_unlearned / TA_retrained).

Counts come from sorted samples (``searchsorted``), so each example costs O(rules x log N) rather than the
reference's rules x N comparison matrix, and nothing needs a GPU.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from dcforget.checkpoint import load_checkpoint
from dcforget.errors import DcForgetError
from dcforget.train import as_unit, evaluate

DELTA = 1e-5
EPSILON_CAP = 50.0
PER_UNIT = 100
BUFFER = 2.0


class EpsilonUndefinedError(DcForgetError, ValueError):
    """Scores for which the challenge metric is not defined (every decision rule discarded, mismatched or
    non-finite score matrices)."""


def logit_confidence(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """log p_y - log(1 - p_y), computed stably from logits: [..., N, K] -> [..., N]."""
    logp = torch.log_softmax(logits.double(), -1)
    lp_y = logp.gather(-1, labels.expand(*logits.shape[:-1]).unsqueeze(-1)).squeeze(-1)
    others = logp.scatter(-1, labels.expand(*logits.shape[:-1]).unsqueeze(-1), float("-inf"))
    return (lp_y - torch.logsumexp(others, -1)).float()


@torch.no_grad()
def confidences(
    model, images: torch.Tensor, labels: torch.Tensor, device: torch.device, batch: int = 1024
) -> torch.Tensor:
    """Logit-scaled confidence of ``model`` on every (image, label), eval mode, batched: float32 [N] on the CPU.
    Unlike the loss it does not saturate (a cross-entropy of exactly 0 in float32 ties many confident samples),
    so it is the score for ROC curves and low-FPR rates."""
    from dcforget.train import as_unit

    was = model.training
    model.eval()
    try:
        out = [
            logit_confidence(
                model(as_unit(images[s : s + batch].to(device))).float().cpu(), labels[s : s + batch].cpu()
            )
            for s in range(0, len(labels), batch)
        ]
    finally:
        model.train(was)
    return torch.cat(out) if out else torch.empty(0)


def _count_ge(sorted_s: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    return len(sorted_s) - torch.searchsorted(sorted_s, t, right=False)


def _count_in(sorted_s: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor) -> torch.Tensor:
    """#(lo <= s <= hi), elementwise over the threshold tensors."""
    return (torch.searchsorted(sorted_s, hi, right=True) - torch.searchsorted(sorted_s, lo, right=False)).clamp_min(0)


def _linspace(a: float, b: float) -> torch.Tensor:
    """``linspace(a, b, ceil((b - a) * 100))`` as the reference: no point at all when b == a."""
    return torch.linspace(a, b, max(int(math.ceil((b - a) * PER_UNIT)), 0), dtype=torch.float64)


def example_epsilon(pos: torch.Tensor, neg: torch.Tensor, delta: float = DELTA) -> float:
    """eps for one example: pos/neg are the N scores of the positive (larger-median) and negative samples."""
    pos, neg = pos.double(), neg.double()
    pos_diff, neg_diff = float(pos.max() - pos.min()), float(neg.max() - neg.min())
    largest, smallest = max(pos_diff, neg_diff), min(pos_diff, neg_diff)
    if largest > 0 and smallest / largest < 0.01:  # 0/0 is NaN in the reference: not peaky, the rules decide
        return EPSILON_CAP
    n_pos, n_neg = len(pos), len(neg)
    sp, sn = torch.sort(pos).values, torch.sort(neg).values
    # single threshold: predict "pos" when score >= t
    pooled = torch.cat([pos, neg])
    t = _linspace(float(pooled.min()), float(pooled.max()))
    tp_s, fp_s = _count_ge(sp, t), _count_ge(sn, t)
    fnr_s, fpr_s = (n_pos - tp_s) / n_pos, fp_s / n_neg
    # double threshold: predict the peakier sample inside [l, r]
    peaky, other = (sn, sp) if pos_diff >= neg_diff else (sp, sn)
    right = _linspace(float(peaky[0]) + smallest - BUFFER, float(peaky[-1]) + BUFFER)
    offsets = torch.linspace(-BUFFER, BUFFER, int(math.ceil(2 * BUFFER * PER_UNIT)), dtype=torch.float64)
    left = right[:, None] - smallest + offsets[None, :]
    hi = right[:, None].expand_as(left).contiguous()
    tp_d = _count_in(peaky, left, hi).flatten()
    fp_d = _count_in(other, left, hi).flatten()
    fnr_d, fpr_d = (len(peaky) - tp_d) / len(peaky), fp_d / len(other)
    fpr, fnr = torch.cat([fpr_s, fpr_d]).double(), torch.cat([fnr_s, fnr_d]).double()
    if bool(((fpr == 0) & (fnr == 0)).any()):
        return EPSILON_CAP  # perfect separation: infinity, capped as the reference does
    keep = (fpr > 0) & (fnr > 0)
    fpr, fnr = fpr[keep], fnr[keep]
    nan_to_ninf = lambda x: torch.nan_to_num(x, nan=float("-inf"))  # the reference's nanmax: log(<0) is skipped
    eps = torch.maximum(
        nan_to_ninf(torch.log(1 - delta - fpr) - torch.log(fnr)),
        nan_to_ninf(torch.log(1 - delta - fnr) - torch.log(fpr)),
    )
    eps = eps[torch.isfinite(eps)]
    if not len(eps):
        raise EpsilonUndefinedError(
            "every decision rule was discarded (FPR or FNR zero everywhere): the two samples cannot be told apart or "
            "together at 1/100 score resolution; the challenge code stops here too (use more, or less identical, "
            "models)"
        )
    return float(min(max(float(eps.max()), 0.0), EPSILON_CAP))


def per_example_epsilon(unlearned: torch.Tensor, retrained: torch.Tensor, *, delta: float = DELTA) -> torch.Tensor:
    """unlearned, retrained: [N_models, E] scores (the same N, as the reference requires) -> eps [E]."""
    u, r = _check_scores(unlearned, retrained)
    retrain_pos = _np_median(r) > _np_median(u)
    pos = torch.where(retrain_pos[None, :], r, u)
    neg = torch.where(retrain_pos[None, :], u, r)
    out = []
    for i in range(u.shape[1]):
        try:
            out.append(example_epsilon(pos[:, i], neg[:, i], delta))
        except EpsilonUndefinedError as err:
            raise EpsilonUndefinedError(f"forget example {i}: {err}") from None
    return torch.tensor(out, dtype=torch.float32)


def _np_median(x: torch.Tensor) -> torch.Tensor:
    """``np.median(x, axis=0)``: the mean of the two middle values for an even count."""
    s = torch.sort(x, 0).values
    n = s.shape[0]
    return s[n // 2] if n % 2 else (s[n // 2 - 1] + s[n // 2]) / 2


def _check_scores(unlearned: torch.Tensor, retrained: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    u, r = torch.as_tensor(unlearned).double().cpu(), torch.as_tensor(retrained).double().cpu()
    if u.dim() != 2 or u.shape != r.shape or u.shape[0] < 1 or u.shape[1] < 1:
        raise EpsilonUndefinedError(
            f"the epsilon metric needs two [models, examples] score matrices of one shape "
            f"(the same number of unlearned and retrained models); got {tuple(u.shape)} and "
            f"{tuple(r.shape)}"
        )
    if not (bool(torch.isfinite(u).all()) and bool(torch.isfinite(r).all())):
        raise EpsilonUndefinedError("non-finite scores (a model producing NaN/inf logits?)")
    return u, r


def bucket_points(eps: torch.Tensor, n_models: int) -> torch.Tensor:
    """Points per example: bucket k = [0.5k, 0.5(k+1)) is worth 2^-k while it ends at or below ceil(ln(N-1))."""
    top = math.ceil(math.log(n_models - 1)) if n_models >= 2 else -math.inf  # N = 2: 0, N = 1: ln 0 = -inf
    k = torch.floor(eps.double() / 0.5)
    pts = torch.pow(0.5, k)
    return torch.where(eps.double() < top, pts, torch.zeros_like(pts)).float()


@dataclass
class EpsilonScore:
    eps: torch.Tensor
    points: torch.Tensor
    forget_quality: float  # F
    final: float

    def summary(self) -> dict:
        return {
            "F": self.forget_quality,
            "final": self.final,
            "eps_median": float(self.eps.median()),
            "eps_mean": float(self.eps.mean()),
            "eps_capped": int((self.eps >= EPSILON_CAP).sum()),
            "examples": int(self.eps.numel()),
        }


def epsilon_score(
    unlearned: torch.Tensor, retrained: torch.Tensor, ra_ratio: float = 1.0, ta_ratio: float = 1.0, **kw
) -> EpsilonScore:
    eps = per_example_epsilon(unlearned, retrained, **kw)
    pts = bucket_points(eps, unlearned.shape[0])
    f = float(pts.mean())
    return EpsilonScore(eps, pts, f, f * ra_ratio * ta_ratio)


def score_checkpoints(paths, data, forget: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, float, float]:
    """What the score needs from a side's models (``paths``: checkpoints of ``data``'s training set): each model's
    logit-scaled confidences on the forget examples (``[models, examples]``), and the side's mean retain and test
    accuracy (eval mode, no augmentation). Checkpoints are loaded one at a time."""
    on = lambda t: t.to(data.train.labels.device)
    fx, fy = data.train.images[on(forget)], data.train.labels[on(forget)]
    keep = torch.ones(len(data.train), dtype=torch.bool)
    keep[forget.cpu()] = False
    confs, ra, ta = [], [], []
    for p in paths:
        m = load_checkpoint(p, fingerprint=data.fingerprint()).model.to(device).eval()
        with torch.no_grad():
            logits = torch.cat([m(as_unit(fx[s : s + 1024]).to(device)) for s in range(0, len(fy), 1024)])
        confs.append(logit_confidence(logits.cpu(), fy.cpu()))
        ra.append(evaluate(m, data.train.images[on(keep)], data.train.labels[on(keep)], device=device).accuracy)
        ta.append(evaluate(m, data.test.images, data.test.labels, device=device).accuracy)
    return torch.stack(confs), sum(ra) / len(ra), sum(ta) / len(ta)
