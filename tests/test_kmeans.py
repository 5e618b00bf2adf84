import pytest
import torch

from dcforget.errors import ConfigError
from dcforget.kmeans import kmeans


def _blobs(k=6, n=40, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(k, d, generator=g) * 20
    truth = torch.arange(k).repeat_interleave(n)
    return centres[truth] + torch.randn(k * n, d, generator=g), truth


def test_recovers_separated_blobs():
    x, truth = _blobs()
    c, assign, _ = kmeans(x, 6, seed=0)
    # each found cluster is exactly one true blob
    pairs = torch.unique(torch.stack([assign, truth]), dim=1)
    assert pairs.shape[1] == 6 and len(torch.unique(pairs[0])) == 6 and len(torch.unique(pairs[1])) == 6


def test_seeded_and_every_cluster_non_empty():
    x = torch.randn(300, 8, generator=torch.Generator().manual_seed(1))
    c1, a1, _ = kmeans(x, 40, seed=3)
    c2, a2, _ = kmeans(x, 40, seed=3)
    assert torch.equal(a1, a2) and torch.equal(c1, c2)
    assert torch.bincount(a1, minlength=40).min() >= 1
    _, a3, _ = kmeans(x, 40, seed=4)
    assert not torch.equal(a1, a3)


def test_k_equal_n_and_duplicates():
    x = torch.zeros(5, 3)
    _, a, _ = kmeans(x, 5, seed=0)
    assert sorted(a.tolist()) == [0, 1, 2, 3, 4]


def test_bad_k():
    with pytest.raises(ConfigError):
        kmeans(torch.randn(4, 2), 5)
    with pytest.raises(ConfigError):
        kmeans(torch.randn(4, 2), 0)
