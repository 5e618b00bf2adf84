import pytest
import torch

from dcforget.metrics import population_mia


def test_identical_distributions_give_about_half():
    g = torch.Generator().manual_seed(0)
    a, b = torch.rand(4000, generator=g), torch.rand(4000, generator=g)
    res = population_mia(a, b)
    assert abs(res.accuracy - 0.5) < 0.03 and res.indiscernibility > 0.94
    assert len(res.split_accuracies) == 10 and res.n_per_side == 4000


def test_separated_distributions_give_one():
    res = population_mia(torch.rand(500) * 0.1, 1.0 + torch.rand(800))
    assert res.accuracy == 1.0 and res.indiscernibility == 0.0 and res.n_per_side == 500


def test_partial_overlap_matches_the_bayes_accuracy():
    # members ~ N(0,1), non-members ~ N(2,1): the best threshold (at 1) is right with probability Phi(1) = 0.8413
    g = torch.Generator().manual_seed(1)
    res = population_mia(torch.randn(20000, generator=g), torch.randn(20000, generator=g) + 2.0)
    assert res.accuracy == pytest.approx(0.8413, abs=0.01)


def test_seeded_and_balanced():
    a, b = torch.rand(300), torch.rand(50) + 0.3
    assert population_mia(a, b, seed=3).split_accuracies == population_mia(a, b, seed=3).split_accuracies
    assert population_mia(a, b).n_per_side == 50
    with pytest.raises(ValueError):
        population_mia(torch.rand(1), torch.rand(5))
