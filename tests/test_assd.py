"""Adaptive SSD sets SSD's selection threshold from the checkpoint: alpha is the reference's percentile of the
importance ratios (100 - ln(1 + 100 * forget share)), so it selects about the same share of parameters on any
checkpoint, where SSD's fixed alpha can select thousands on one and none on another."""

import copy
import math

import numpy as np
import pytest
import torch
from conftest import param_copy as _params
from conftest import run_method as _run
from conftest import trained_cnn_and_mlp

from dcforget.errors import ConfigError
from unlearn.methods import METHODS
from unlearn.methods.assd import percentile, threshold
from unlearn.methods.ssd import importances

SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"


@pytest.fixture(scope="module")
def setup():
    return trained_cnn_and_mlp(SPEC, 6, 10)


def test_the_percentile_is_the_references():
    assert percentile(0.1) == pytest.approx(100 - math.log(11))  # a CIFAR-10 class: the top 2.4% of ratios
    assert percentile(10 / 2125) == pytest.approx(100 - math.log(1 + 1000 / 2125))
    assert 99.5 < percentile(0.001) < 100 and percentile(1.0) == pytest.approx(100 - math.log(101))
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match="share"):
            percentile(bad)


def test_the_threshold_is_a_percentile_of_the_finite_ratios():
    full = {"a": torch.tensor([1.0, 2.0, 0.0, 0.0]), "b": torch.arange(1.0, 101.0)}
    forget = {"a": torch.tensor([3.0, 2.0, 5.0, 0.0]), "b": torch.arange(1.0, 101.0) ** 2}  # a[2] inf, a[3] nan
    ratios = np.concatenate([[3.0, 1.0], np.arange(1.0, 101.0)])
    assert threshold(full, forget, 0.05) == pytest.approx(np.percentile(ratios, 100 - math.log(6)))
    with pytest.raises(ValueError, match="finite"):
        threshold({"a": torch.zeros(3)}, {"a": torch.ones(3)}, 0.1)


@pytest.mark.parametrize("arch", ["cnn", "mlp"])
def test_assd_dampens_what_the_adaptive_threshold_selects(setup, arch):
    data, cnn, mlp = setup
    original = cnn if arch == "cnn" else mlp
    res = _run(original, data, "assd", "class:1", batch_size=8, order="stored")  # retain, then forget
    xf, yf = data.train.images[res.split.forget], data.train.labels[res.split.forget]
    xr, yr = data.train.images[res.split.retain], data.train.labels[res.split.retain]
    model = copy.deepcopy(original)
    fimp = importances(model, xf, yf, 8)
    dimp = importances(model, torch.cat([xr, xf]), torch.cat([yr, yf]), 8)
    share = len(yf) / (len(yf) + len(yr))
    ratios = torch.cat([(fimp[n] / dimp[n]).reshape(-1) for n in dimp])
    alpha = float(np.percentile(ratios[torch.isfinite(ratios)].numpy(), 100 - math.log1p(100 * share)))
    extra = res.report["method_extra"]
    assert extra["alpha"] == pytest.approx(alpha, rel=1e-5) and extra["percentile"] == pytest.approx(
        100 - math.log1p(100 * share)
    )
    before, after = _params(original), _params(res.model)
    chosen = 0
    for n, p in before.items():
        where = fimp[n] > alpha * dimp[n]
        factor = torch.ones_like(p)
        factor[where] = (dimp[n][where] / fimp[n][where]).clamp(max=1.0)  # lam 1, the reference's
        assert torch.allclose(after[n], p * factor, rtol=1e-5, atol=1e-7), n
        chosen += int(where.sum())
    assert chosen == extra["selected_parameters"] > 0
    # about the percentile's share of the finite ratios is selected (plus parameters the full set never moves)
    finite = int(torch.isfinite(ratios).sum())
    top = finite * (100 - extra["percentile"]) / 100
    assert top - 1 <= chosen <= top + 1 + int((~torch.isfinite(ratios) & (ratios > 0)).sum())


def test_assd_adapts_where_ssds_fixed_alpha_does_not():
    """Scale one checkpoint's importance ratios (a model whose forget gradients are fainter): a fixed alpha selects
    nothing on the fainter one, the percentile selects as many parameters on both."""
    full = {"w": torch.ones(1000)}
    strong = {"w": torch.linspace(0.1, 100.0, 1000)}
    faint = {"w": strong["w"] / 10}
    k = [int((f["w"] > threshold(full, f, 0.1) * full["w"]).sum()) for f in (strong, faint)]
    assert k[0] == k[1] == 24  # the top 2.4%
    assert int((faint["w"] > 63.0 * full["w"]).sum()) == 0 < int((strong["w"] > 63.0 * full["w"]).sum())


def test_assd_is_registered_with_the_references_defaults_and_refuses_bad_options(setup):
    m = METHODS.get("assd")
    assert m.defaults == {"lam": 1.0, "batch_size": 128, "order": "shuffled"}
    assert not m.zero_shot and "2402.10098" in m.reference and set(m.space) == {"lam", "batch_size", "order"}
    data, _, mlp = setup
    for opts, message in (({"lam": 0}, "lam"), ({"batch_size": 0}, "batch_size"), ({"order": "sorted"}, "order")):
        with pytest.raises(ConfigError, match=message):
            _run(mlp, data, "assd", **opts)
