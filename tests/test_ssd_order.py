"""SSD's importance batches and issue #32's defect: with the authors' unshuffled ``ConcatDataset((retain, forget))``,
the forget set fills whole batches at the end of the I_D pass, so ``I_D >= (forget batches / all batches) * I_Df``
and ``I_Df > alpha * I_D`` can never hold once alpha reaches ``all batches / forget batches``; a class request to a
10-class set then selects nothing at alpha 10. The default (``order="shuffled"``, SUPREME's loaders) mixes the
forget set into every batch and selects."""

import pytest
import torch
from conftest import run_method as _run
from conftest import trained_cnn_and_mlp

from dcforget.errors import ConfigError
from unlearn.methods import METHODS
from unlearn.methods.ssd import importance_sets

SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"  # 34 training images per class after validation


@pytest.fixture(scope="module")
def setup():
    return trained_cnn_and_mlp(SPEC, 6, 10)


def test_the_orders_batch_what_they_say():
    yr = torch.tensor([2, 0, 1, 0, 2, 1])
    xr = torch.arange(6).view(6, 1) * 10 + yr.view(6, 1)  # rows tell which retain image they are
    xf, yf = torch.tensor([[100], [101]]), torch.tensor([3, 3])
    (f, _), (d, yd) = importance_sets(xr, yr, xf, yf, "stored", 0)
    assert torch.equal(f, xf) and torch.equal(d, torch.cat([xr, xf])) and torch.equal(yd, torch.cat([yr, yf]))
    (f, _), (d, yd) = importance_sets(xr, yr, xf, yf, "classwise", 0)
    assert torch.equal(yd, torch.tensor([0, 0, 1, 1, 2, 2, 3, 3]))  # retain class by class (stable), then forget
    assert d.flatten().tolist() == [10, 30, 21, 51, 2, 42, 100, 101]
    (f1, yf1), (d1, yd1) = importance_sets(xr, yr, xf, yf, "shuffled", 5)
    (f2, _), (d2, _) = importance_sets(xr, yr, xf, yf, "shuffled", 5)
    assert torch.equal(d1, d2) and torch.equal(f1, f2)  # seeded
    assert sorted(d1.flatten().tolist()) == sorted(torch.cat([xr, xf]).flatten().tolist())  # a permutation
    assert not torch.equal(d1, torch.cat([xr, xf]))
    assert torch.equal(yd1, torch.where(d1.flatten() >= 100, 3, d1.flatten() % 10))  # labels follow


def test_the_unshuffled_concatenation_caps_the_ratio_and_the_shuffle_forgets(setup):
    data, _, mlp = setup
    # class 1: 34 forget and 102 retain images; batches of 17 align exactly: 6 retain + 2 forget batches, so the
    # stored order's I_D holds the two I_Df batches and I_Df <= 4 * I_D everywhere: alpha 4 can select nothing
    opts = dict(alpha=4.0, lam=1.0, batch_size=17)
    stored = _run(mlp, data, "ssd", "class:1", order="stored", **opts)
    assert stored.report["method_extra"]["selected_parameters"] == 0
    assert stored.report["forget_acc"] == _run(mlp, data, "none", "class:1").report["forget_acc"]
    shuffled = _run(mlp, data, "ssd", "class:1", **opts)  # the default order
    assert shuffled.report["options"]["order"] == "shuffled"
    assert shuffled.report["method_extra"]["selected_parameters"] > 0
    assert shuffled.report["forget_acc"] < stored.report["forget_acc"]
    lf_stored = _run(mlp, data, "lfssd", "class:1", order="stored", **opts)
    assert lf_stored.report["method_extra"]["selected_parameters"] == 0  # the same cap (|g| averaged over batches)
    assert _run(mlp, data, "lfssd", "class:1", **opts).report["method_extra"]["selected_parameters"] > 0


def test_order_is_validated():
    assert METHODS.get("ssd").defaults["order"] == "shuffled" == METHODS.get("lfssd").defaults["order"]
    for name in ("ssd", "lfssd"):
        with pytest.raises(ConfigError, match="order"):
            METHODS.get(name).validate({"order": "sorted"})
