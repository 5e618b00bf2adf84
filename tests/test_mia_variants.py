"""The SVC / entropy MIA variants against closed-form truths."""

import pytest
import torch

from attacks.mia_variants import entropy, entropy_lr_mia, m_entropy, svc_mia

pytest.importorskip("sklearn")


def _logits(confident: bool, n: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 5, (n,), generator=g)
    x = torch.randn(n, 5, generator=g) * 0.3
    x[torch.arange(n), y] += 6.0 if confident else 0.0  # members: confident and right; non-members: unsure
    return x, y


def test_entropies_match_their_definitions():
    p = torch.tensor([[0.7, 0.2, 0.1]], dtype=torch.float64)
    assert float(entropy(p)) == pytest.approx(
        -(
            0.7 * torch.log(torch.tensor(0.7)) + 0.2 * torch.log(torch.tensor(0.2)) + 0.1 * torch.log(torch.tensor(0.1))
        ).item()
    )
    want = -(
        0.3 * torch.log(torch.tensor(0.7)) + 0.2 * torch.log(torch.tensor(0.8)) + 0.1 * torch.log(torch.tensor(0.9))
    )
    assert float(m_entropy(p, torch.tensor([0]))) == pytest.approx(want.item())


def test_separated_outputs_are_found_and_identical_ones_are_not():
    members, nonmembers = _logits(True, 200, 0), _logits(False, 200, 1)
    # a forget set that looks like members: predicted member (efficacy ~0, member rate ~1)
    res = svc_mia(members, nonmembers, _logits(True, 100, 2))
    assert res["efficacy"]["confidence"] < 0.05 and res["efficacy"]["entropy"] < 0.05
    assert entropy_lr_mia(members, nonmembers, _logits(True, 100, 2)) > 0.95
    # a forget set that looks like never-seen data: predicted non-member
    res = svc_mia(members, nonmembers, _logits(False, 100, 3))
    assert res["efficacy"]["confidence"] > 0.95
    assert entropy_lr_mia(members, nonmembers, _logits(False, 100, 3)) < 0.05
    # members and non-members drawn alike: on fresh draws of both the attack's accuracy is a coin toss
    a, b = _logits(False, 300, 4), _logits(False, 300, 5)
    held_m, held_n = svc_mia(a, b, _logits(False, 400, 6)), svc_mia(a, b, _logits(False, 400, 7))
    acc = 0.5 * (1 - held_m["efficacy"]["confidence"]) + 0.5 * held_n["efficacy"]["confidence"]
    assert abs(acc - 0.5) < 0.08
