import pytest
import torch

from dcforget.augment import DSA, FAMILIES
from dcforget.errors import ConfigError

MEAN = (0.49, 0.48, 0.45)


def _x(n=6, seed=0):
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("family", FAMILIES)
def test_gradients_reach_pixels_through_every_family(family):
    dsa = DSA((3, 16, 16), MEAN, strategy=family)
    x = _x().requires_grad_(True)
    y = dsa(x, seed=0)
    (g,) = torch.autograd.grad((y * torch.randn_like(y)).sum(), x)
    assert torch.isfinite(g).all() and g.abs().sum() > 0


@pytest.mark.parametrize("family", FAMILIES)
def test_same_seed_same_result_and_shape(family):
    dsa = DSA((3, 16, 16), MEAN, strategy=family)
    x = _x()
    a, b = dsa(x, seed=7), dsa(x, seed=7)
    assert a.shape == x.shape and torch.equal(a, b)
    assert torch.isfinite(a).all()
    if family != "color":  # geometric families only move, erase or fill pixels: range stays in [0, 1]
        assert a.min() >= -1e-5 and a.max() <= 1 + 1e-5


def test_different_seeds_differ_and_all_families_get_drawn():
    dsa = DSA((3, 16, 16), MEAN)
    x = _x()
    outs = [dsa(x, seed=s) for s in range(12)]
    assert any(not torch.equal(outs[0], o) for o in outs[1:])
    drawn = set()
    for s in range(60):
        torch.manual_seed(s)
        drawn.add(dsa.sample(x.shape, same_on_batch=True, device=x.device).family)
    assert drawn == set(FAMILIES)


@pytest.mark.parametrize("family", FAMILIES)
def test_siamese_shares_one_draw(family):
    dsa = DSA((3, 16, 16), MEAN, strategy=family)
    x = _x(4)
    for seed in range(4):
        real, syn = dsa.siamese(x, x.clone(), seed=seed)
        assert torch.allclose(real, syn, atol=1e-6)


@pytest.mark.parametrize("family", ["crop", "scale", "rotate", "color", "cutout"])
def test_per_sample_mode_draws_per_image(family):
    dsa = DSA((3, 16, 16), MEAN, strategy=family)
    x = _x(1).expand(8, -1, -1, -1).contiguous()
    y = dsa(x, seed=3)
    assert any(not torch.allclose(y[0], y[i]) for i in range(1, 8))


def test_seeded_call_leaves_global_rng_alone():
    dsa = DSA((3, 16, 16), MEAN)
    torch.manual_seed(5)
    expected = torch.rand(2)
    torch.manual_seed(5)
    dsa(_x(), seed=1)
    assert torch.equal(torch.rand(2), expected)


def test_bad_configuration():
    with pytest.raises(ConfigError, match="unknown DSA family"):
        DSA((3, 16, 16), MEAN, strategy="color_blur")
    with pytest.raises(ConfigError):
        DSA((3, 16, 16), (0.5,))
    with pytest.raises(ConfigError, match="expects images"):
        DSA((3, 16, 16), MEAN)(torch.rand(2, 3, 8, 8))
