"""Zero-shot is enforced, not promised (a zero-shot method's context holds the forget set only and refuses retain
data; its report says what it saw), and the parameter-level methods move the model as defined: SSD and LFSSD dampen
exactly the parameters their rule selects, by exactly their factor; JiT takes the reference's SGD steps on the
Lipschitz loss, from the forget images alone."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import param_copy as _params
from conftest import run_method as _run
from conftest import trained_cnn_and_mlp

from dcforget.errors import ConfigError
from dcforget.runtime import generator
from dcforget.train import as_unit
from unlearn.methods import METHODS, Method, UnlearnContext, ZeroShotAccessError
from unlearn.methods.ssd import importances

CPU = torch.device("cpu")
SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"


@pytest.fixture(scope="module")
def setup():
    return trained_cnn_and_mlp(SPEC, 6, 10)


def test_a_zero_shot_method_gets_the_forget_set_and_nothing_else(setup, monkeypatch):
    data, _, mlp = setup
    seen = {}

    def spy(ctx: UnlearnContext):
        seen["train"] = ctx.data.train.images.clone()
        seen["test"], seen["val"] = len(ctx.data.test), ctx.data.val
        for call in (ctx.retain, ctx.forgotten_classes, ctx.remembrance):
            with pytest.raises(ZeroShotAccessError, match="zero-shot"):
                call()
        seen["forget"] = ctx.forget()[0].clone()
        return ctx.copy_original()

    monkeypatch.setitem(METHODS._items, "spy", Method(spy, {}, "spy", zero_shot=True))
    res = _run(mlp, data, "spy", "random:0.25")
    forget_images = data.train.images[res.split.forget]
    assert torch.equal(seen["train"], forget_images) and torch.equal(seen["forget"], forget_images)
    assert seen["test"] == 0 and seen["val"] is None
    assert res.report["data_seen"] == {"zero_shot": True, "forget": 34, "retain": 0, "validation": 0, "test": 0}
    assert res.report["retain_size"] == 102 and res.report["retain_acc"] > 0  # evaluated on the real split
    other = _run(mlp, data, "finetune", "random:0.25", epochs=1)
    assert other.report["data_seen"] == {"zero_shot": False, "forget": 34, "retain": 102, "validation": 24, "test": 80}
    assert METHODS.get("jit").zero_shot and not METHODS.get("ssd").zero_shot and not METHODS.get("lfssd").zero_shot


def test_ssd_dampens_exactly_what_its_rule_selects(setup):
    data, cnn, _ = setup
    res = _run(cnn, data, "ssd", "class:1", alpha=2.0, lam=0.5, batch_size=8, order="stored")  # retain, then forget
    xf, yf = data.train.images[res.split.forget], data.train.labels[res.split.forget]
    xr, yr = data.train.images[res.split.retain], data.train.labels[res.split.retain]
    model = copy.deepcopy(cnn).eval()
    # the reference's importance: squared gradient of each batch's MEAN loss, averaged over batches
    by_hand = {n: torch.zeros_like(p) for n, p in model.named_parameters()}
    for lo in range(0, len(yf), 8):
        model.zero_grad()
        F.cross_entropy(model(as_unit(xf[lo : lo + 8])), yf[lo : lo + 8]).backward()
        for n, p in model.named_parameters():
            by_hand[n] += p.grad.pow(2)
    fimp = importances(model, xf, yf, 8)
    for n in by_hand:
        assert torch.allclose(fimp[n], by_hand[n] / 5, rtol=1e-5, atol=1e-12), n  # 34 forget images: 5 batches
    dimp = importances(model, torch.cat([xr, xf]), torch.cat([yr, yf]), 8)  # retain, then forget
    before, after = _params(cnn), _params(res.model)
    chosen = 0
    for n, p in before.items():
        where = fimp[n] > 2.0 * dimp[n]
        factor = torch.ones_like(p)
        factor[where] = (0.5 * dimp[n][where] / fimp[n][where]).clamp(max=1.0)
        assert torch.allclose(after[n], p * factor, rtol=1e-5, atol=1e-7), n
        assert torch.equal(after[n][~where], p[~where])  # the rest untouched
        chosen += int(where.sum())
    assert chosen == res.report["method_extra"]["selected_parameters"] > 0
    assert res.report["forget_acc"] < 0.5  # the forgotten class is damaged


def test_lfssd_uses_the_label_free_absolute_importance(setup):
    data, _, mlp = setup
    res = _run(mlp, data, "lfssd", "random:0.25", alpha=1.5, batch_size=64)
    xf = data.train.images[res.split.forget]
    model = copy.deepcopy(mlp).eval()
    model.zero_grad()
    model(as_unit(xf)).pow(2).sum(1).mean().backward()  # 34 forget images: one batch
    labels_ignored = importances(
        model,
        xf,
        torch.zeros(len(xf), dtype=torch.long),  # labels are not read
        64,
        lambda logits, y: logits.pow(2).sum(1).mean(),
        "abs",
    )
    for n, p in model.named_parameters():
        assert torch.allclose(labels_ignored[n], p.grad.abs(), rtol=1e-5, atol=1e-12), n
    assert res.report["method_extra"]["selected_parameters"] > 0
    assert res.report["data_seen"]["retain"] == 102  # label-free, not zero-shot


def test_jit_takes_the_reference_steps_from_forget_images_only(setup):
    data, cnn, _ = setup
    opts = dict(sigma=0.05, lr=1e-3, n_samples=3, batch_size=4)
    res = _run(cnn, data, "jit", "random:0.25", **opts)
    assert res.report["data_seen"]["retain"] == 0 and res.report["method_extra"]["steps"] == 9  # 34 images, batch 4
    xf = data.train.images[res.split.forget]
    model = copy.deepcopy(cnn).eval()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3)
    gen = generator(0)
    mean, std = model.normalize.mean, model.normalize.std
    for lo in range(0, 34, 4):
        x = as_unit(xf[lo : lo + 4])
        xn = (x - mean) / std
        loss = 0.0
        noise = torch.randn((3, *xn.shape), generator=gen) * 0.05
        for i in range(3):  # one noisy copy at a time, as the reference
            xn2 = torch.clamp(xn + noise[i], min=xn.min(), max=xn.max())
            with torch.no_grad():
                out2 = model(xn2 * std + mean)
            out = model(x)
            loss = (
                loss
                + (
                    torch.linalg.vector_norm(out - out2, dim=1) / torch.linalg.vector_norm((xn - xn2).flatten(1), dim=1)
                ).sum()
            )
        opt.zero_grad()
        (loss / 3).backward()
        opt.step()
    for (n, p), q in zip(model.named_parameters(), res.model.parameters()):
        assert torch.allclose(p, q, rtol=1e-4, atol=1e-6), n
    assert any(not torch.equal(p, q) for p, q in zip(cnn.parameters(), res.model.parameters()))
    # the reference's accumulated gradients (never zeroed between batches) take other steps
    bug = _run(cnn, data, "jit", "random:0.25", **opts, reference_bug=True)
    assert not all(torch.allclose(p, q) for p, q in zip(bug.model.parameters(), res.model.parameters()))


@pytest.mark.parametrize(
    "method, opts, message",
    [
        ("ssd", {"alpha": 0}, "alpha"),
        ("ssd", {"batch_size": 0}, "batch_size"),
        ("lfssd", {"lam": -1}, "lam"),
        ("jit", {"sigma": 0}, "sigma"),
        ("jit", {"mode": "fast"}, "mode"),
        ("jit", {"n_samples": 1.5}, "n_samples"),
    ],
)
def test_bad_options_are_refused_before_any_work(setup, method, opts, message):
    data, _, mlp = setup
    with pytest.raises(ConfigError, match=message):
        _run(mlp, data, method, **opts)
