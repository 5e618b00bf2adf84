"""The membership-inference variants other unlearning papers report next to the population MIA
(docs/reference/unlearning-methods.md §2.1 and §2.4). Both train an attack on retain (member) vs test (non-member) outputs of the
model under attack, then apply it to the forget set:

* ``svc_mia`` -- SalUn / Unlearn-Sparse ``SVC_MIA``: one RBF SVC (C=3, gamma="auto", scikit-learn, as there) per
  feature -- correctness, confidence p_y, entropy, modified entropy (Song & Mittal) and the full probability
  vector -- fitted on |test| retain samples (members) vs the test set (non-members). "MIA-efficacy" = the share of
  the forget set predicted non-member; SalUn's README reports the ``confidence`` one. Higher = more forgotten
  (retraining's value is the reference, not 1.0).
* ``entropy_lr_mia`` -- SSD's: logistic regression on output entropy, same members / non-members; the reported
  value is the share of the forget set predicted member. Lower = more forgotten.

``svc_mia`` needs scikit-learn (``pip install dcforget[attacks]``); an RBF SVC costs O(n^2), so
``max_per_side`` caps the members and non-members it is fitted on (a seeded subsample; None = the protocol's
|test|).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from dcforget.errors import ConfigError
from dcforget.metrics import _fit_logistic

SVC_FEATURES = ("correctness", "confidence", "entropy", "m_entropy", "prob")


def entropy(probs: torch.Tensor) -> torch.Tensor:
    return -(probs * probs.clamp_min(1e-30).log()).sum(1)


def m_entropy(probs: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """Song & Mittal's modified entropy: -(1-p_y) log p_y - sum_{i != y} p_i log(1 - p_i)."""
    log_p = probs.clamp_min(1e-30).log()
    log_rev = (1 - probs).clamp_min(1e-30).log()
    onehot = F.one_hot(labels, probs.shape[1]).bool()
    mod_p = torch.where(onehot, 1 - probs, probs)
    mod_log = torch.where(onehot, log_p, log_rev)
    return -(mod_p * mod_log).sum(1)


def features(logits: torch.Tensor, labels: torch.Tensor) -> dict[str, torch.Tensor]:
    """The five SVC_MIA feature sets, [n, d] float64 each, from logits and labels."""
    p = logits.double().softmax(1)
    return {
        "correctness": (p.argmax(1) == labels).double()[:, None],
        "confidence": p.gather(1, labels[:, None]),
        "entropy": entropy(p)[:, None],
        "m_entropy": m_entropy(p, labels)[:, None],
        "prob": p,
    }


def _balanced(n: int, cap: int | None, gen: torch.Generator) -> torch.Tensor:
    return torch.randperm(n, generator=gen)[: n if cap is None else min(n, cap)]


def svc_mia(
    retain: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    forget: tuple[torch.Tensor, torch.Tensor],
    *,
    max_per_side: int | None = None,
    seed: int = 0,
) -> dict:
    """(logits, labels) of retain, test and forget samples -> {feature: share of forget predicted non-member}."""
    try:
        from sklearn.svm import SVC
    except ImportError:  # pragma: no cover - exercised only without the extra
        raise ConfigError("the SVC MIA needs scikit-learn: pip install 'dcforget[attacks]'") from None
    gen = torch.Generator().manual_seed(seed)
    n = min(len(retain[1]), len(test[1]))
    if n < 2 or len(forget[1]) == 0:
        raise ConfigError("the SVC MIA needs at least 2 retain and 2 test samples and a non-empty forget set")
    n = n if max_per_side is None else min(n, max_per_side)
    r_idx = _balanced(len(retain[1]), n, gen)
    t_idx = _balanced(len(test[1]), n, gen)
    fr = features(retain[0][r_idx], retain[1][r_idx])
    ft = features(test[0][t_idx], test[1][t_idx])
    ff = features(*forget)
    out = {}
    for name in SVC_FEATURES:
        x = torch.cat([fr[name], ft[name]]).numpy()
        y = torch.cat([torch.ones(n), torch.zeros(n)]).numpy()
        clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
        out[name] = float(1.0 - clf.predict(ff[name].numpy()).mean())
    return {"efficacy": out, "fitted_per_side": n}


def entropy_lr_mia(
    retain: tuple[torch.Tensor, torch.Tensor],
    test: tuple[torch.Tensor, torch.Tensor],
    forget: tuple[torch.Tensor, torch.Tensor],
    *,
    seed: int = 0,
) -> float:
    """SSD's attack: share of the forget set a retain-vs-test logistic regression on entropy calls a member."""
    gen = torch.Generator().manual_seed(seed)
    n = min(len(retain[1]), len(test[1]))
    if n < 2 or len(forget[1]) == 0:
        raise ConfigError("the entropy MIA needs at least 2 retain and 2 test samples and a non-empty forget set")
    er = entropy(retain[0][_balanced(len(retain[1]), n, gen)].double().softmax(1))
    et = entropy(test[0][_balanced(len(test[1]), n, gen)].double().softmax(1))
    ef = entropy(forget[0].double().softmax(1))
    x = torch.cat([er, et])
    mu, sd = x.mean(), x.std() + 1e-12
    theta = _fit_logistic(
        (x - mu) / sd, torch.cat([torch.ones(n), torch.zeros(n)]).double(), torch.ones(1, 2 * n, dtype=torch.float64)
    )[0]
    return float((((ef - mu) / sd) * theta[0] + theta[1] > 0).double().mean())
