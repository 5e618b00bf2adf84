import math
import random

import pytest
import torch

from attacks.epsilon import EPSILON_CAP, bucket_points, epsilon_score, example_epsilon, logit_confidence


def _definition(pos, neg, delta=1e-5):
    """The metric's definition, written as plainly as possible (loops, no sorting tricks)."""
    pos, neg = [float(v) for v in pos], [float(v) for v in neg]
    pd, nd = max(pos) - min(pos), max(neg) - min(neg)
    if min(pd, nd) / max(pd, nd) < 0.01:
        return EPSILON_CAP
    rules = []
    lo, hi = min(pos + neg), max(pos + neg)
    k = max(math.ceil((hi - lo) * 100), 1)
    for i in range(k):
        t = lo + (hi - lo) * i / (k - 1) if k > 1 else lo
        fpr = sum(v >= t for v in neg) / len(neg)
        fnr = sum(v < t for v in pos) / len(pos)
        rules.append((fpr, fnr))
    peaky, other = (neg, pos) if pd >= nd else (pos, neg)
    w = min(pd, nd)
    a, b = min(peaky) + w - 2, max(peaky) + 2
    kr = max(math.ceil((b - a) * 100), 1)
    for i in range(kr):
        r = a + (b - a) * i / (kr - 1) if kr > 1 else a
        for j in range(400):
            left = r - w - 2 + 4 * j / 399
            tpr = sum(left <= v <= r for v in peaky) / len(peaky)
            fpr = sum(left <= v <= r for v in other) / len(other)
            rules.append((fpr, 1 - tpr))
    best = 0.0
    for fpr, fnr in rules:
        if fpr == 0 and fnr == 0:
            return EPSILON_CAP
        if fpr == 0 or fnr == 0:
            continue
        for keep, other in ((1 - delta - fpr, fnr), (1 - delta - fnr, fpr)):
            if keep > 0:  # log of a negative number is undefined: that side of the rule is skipped
                best = max(best, math.log(keep) - math.log(other))
    return min(best, EPSILON_CAP)


@pytest.mark.parametrize("seed, shift, scale", [(0, 0.0, 1.0), (1, 1.0, 1.0), (2, 0.5, 0.3), (3, 3.0, 2.0)])
def test_matches_the_definition(seed, shift, scale):
    rng = random.Random(seed)
    pos = torch.tensor([rng.gauss(shift, scale) for _ in range(24)])
    neg = torch.tensor([rng.gauss(0.0, 1.0) for _ in range(24)])
    assert example_epsilon(pos, neg) == pytest.approx(_definition(pos, neg), rel=1e-6, abs=1e-9)


def test_epsilon_grows_with_the_gap_between_gaussians():
    g = torch.Generator().manual_seed(0)
    eps = [example_epsilon(torch.randn(256, generator=g) + mu, torch.randn(256, generator=g)) for mu in (0.0, 1.0, 3.0)]
    assert eps[0] < eps[1] < eps[2]


def test_identical_distributions_score_well_and_separated_ones_score_zero():
    g = torch.Generator().manual_seed(1)
    same = epsilon_score(torch.randn(128, 20, generator=g), torch.randn(128, 20, generator=g))
    shifted = epsilon_score(torch.randn(128, 20, generator=g) + 1.5, torch.randn(128, 20, generator=g))
    assert same.forget_quality > 2 * shifted.forget_quality > 0
    sep = epsilon_score(torch.randn(64, 5) + 100, torch.randn(64, 5), ra_ratio=0.9)
    assert (sep.eps == EPSILON_CAP).all() and sep.forget_quality == 0.0 and sep.final == 0.0
    peaky = example_epsilon(torch.full((50,), 1.0) + torch.linspace(0, 1e-4, 50), torch.randn(50, generator=g))
    assert peaky == EPSILON_CAP


def test_buckets_and_final_score():
    pts = bucket_points(torch.tensor([0.0, 0.4, 0.5, 1.2, 6.9, 7.0, 50.0]), 512)  # ceil(ln 511) = 7
    assert pts.tolist() == [1.0, 1.0, 0.5, 0.25, 0.5 ** 13, 0.0, 0.0]
    g = torch.Generator().manual_seed(1)
    s = epsilon_score(torch.randn(100, 8, generator=g), torch.randn(100, 8, generator=g), ra_ratio=0.5, ta_ratio=0.8)
    assert s.final == pytest.approx(s.forget_quality * 0.4)


def test_logit_confidence():
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    p = torch.softmax(logits, 1)[0, 0]
    assert float(logit_confidence(logits, torch.tensor([0]))) == pytest.approx(float(torch.log(p) - torch.log(1 - p)), abs=1e-6)
