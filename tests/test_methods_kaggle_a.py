"""Deep Unlearn's Kaggle methods FCS, MSG, CFW, PRMQ, CT (kgltop1-5) on generated data: each moves the model as
defined (which weights change and how), reproduces the reference's bugs only when asked, and runs on an MLP."""

import copy
import json

import pytest
import torch
import torch.nn.functional as F
from conftest import trained_cnn_and_mlp  # noqa: E402
from torch import nn

import unlearn.methods.cfw as cfw_mod
import unlearn.methods.ct  # noqa: F401  (registers "ct")
import unlearn.methods.fcs as fcs_mod
import unlearn.methods.msg as msg_mod
import unlearn.methods.prmq as prmq_mod  # noqa: F401
from dcforget.datasets import load_data
from dcforget.errors import ConfigError
from dcforget.forget import ForgetSpec
from dcforget.models import create_model
from dcforget.space import Fixed, Float, resolve
from dcforget.train import TrainConfig, as_unit, evaluate, train_on
from unlearn.methods import METHODS
from unlearn.methods.base import UnlearnContext
from unlearn.methods.common import cosine_per_epoch
from unlearn.request import cumulative_split, unlearn_request

CPU = torch.device("cpu")
SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"
TINY = 1e-9  # a learning rate that leaves the weights where the method's non-training steps put them


@pytest.fixture(scope="module")
def setup():
    return trained_cnn_and_mlp(SPEC, cnn_epochs=8, mlp_epochs=5)


def _params(model):
    return {k: v.detach().clone() for k, v in model.named_parameters()}


class _Result:
    def __init__(self, model, split, extra):
        self.model, self.split, self.report = model, split, {"method_extra": extra}


def _run(model, data, method, spec="random:0.2", **opts):
    """The method as ``unlearn_request`` runs it (options validated, defaults filled in, the original in eval mode on
    a copy), without the request's evaluation (MIA), which would dominate these tests' time."""
    m = METHODS.get(method)
    unknown = set(opts) - set(m.defaults)
    assert not unknown, unknown
    if m.validate is not None:
        m.validate(dict(opts))
    split = cumulative_split(data, ForgetSpec.parse(spec), 0, None)
    ctx = UnlearnContext(model.eval(), data, split, CPU, 0, {**m.defaults, **opts}, quiet=True)
    out = m.run(ctx).eval()
    json.dumps(ctx.extra)  # what a method reports must be JSON-able
    assert all(bool(torch.isfinite(t).all()) for t in out.state_dict().values() if t.is_floating_point())
    return _Result(out, split, ctx.extra)


def _plain(model, original):
    """A plain Classifier: same state_dict keys (in order), standard modules, no hooks left."""
    assert list(model.state_dict()) == list(original.state_dict())
    for m in model.modules():
        assert not m._forward_pre_hooks and not m._forward_hooks and not m._backward_hooks
        if isinstance(m, nn.Conv2d):
            assert type(m) is nn.Conv2d
    for p in model.parameters():
        assert not p._backward_hooks


def test_registered_with_reference_defaults_and_spaces():
    for name in ("fcs", "msg", "cfw", "prmq", "ct"):
        assert name in METHODS.names() and not METHODS.get(name).zero_shot
    assert METHODS.get("msg").defaults["init_rate"] == 0.3 and METHODS.get("msg").space["init_rate"] == Float(0, 1)
    assert METHODS.get("cfw").defaults["sigma_start"] == 0.6 and METHODS.get("cfw").defaults["sigma_final"] == 0.005
    assert METHODS.get("ct").defaults == {
        "epochs": 3,
        "batch_size": 64,
        "lr": 1e-3,
        "momentum": 0.9,
        "weight_decay": 5e-4,
    }
    fcs = METHODS.get("fcs")
    assert fcs.defaults["temperature"] == 1.15 and fcs.defaults["retain_weight_decay"] == 1e-2
    assert fcs.space["forget_momentum"] == Fixed(0.9) and fcs.space["momentum"] == Fixed(0.9)
    prmq = METHODS.get("prmq")
    assert prmq.defaults["epochs"] == 3.2 and prmq.defaults["prune_amount"] == 0.99
    assert resolve(prmq.space, 50)["epochs"] == Float(1.0, 10.0)  # Deep Unlearn's float epochs in [1, ceil(0.2 E)]
    assert set(METHODS.get("ct").space) == {"lr", "weight_decay", "momentum", "batch_size", "epochs"}


@pytest.mark.parametrize(
    "method, opts",
    [
        ("msg", {"init_rate": 1.5}),
        ("fcs", {"temperature": 0.0}),
        ("prmq", {"prune_amount": -0.1}),
        ("cfw", {"sigma_start": -1.0}),
        ("ct", {"epochs": 0}),
    ],
)
def test_bad_options_are_refused(setup, method, opts):
    data, cnn, _ = setup
    with pytest.raises(ConfigError):
        unlearn_request(cnn, data, "random:0.2", method, device=CPU, options=opts, quiet=True)


# ------------------------------------------------------------------ CT
def test_ct_transposes_every_conv_kernel_and_never_reads_the_forget_set(setup, monkeypatch):
    data, cnn, _ = setup
    monkeypatch.setattr(UnlearnContext, "forget", lambda self: pytest.fail("ct read the forget set"))
    before = _params(cnn)
    res = _run(cnn, data, "ct", lr=TINY, epochs=1, batch_size=128)
    after = _params(res.model)
    convs = [n for n, m in res.model.named_modules() if isinstance(m, nn.Conv2d)]
    assert res.report["method_extra"]["conv_layers_touched"] == len(convs) == 4
    for k in before:
        expect = before[k].transpose(2, 3) if k.removesuffix(".weight") in convs and k.endswith("weight") else before[k]
        assert torch.allclose(after[k], expect, atol=1e-6), k
        if k.removesuffix(".weight") in convs and k.endswith("weight"):
            assert not torch.allclose(after[k], before[k], atol=1e-3)  # 3x3 kernels are not symmetric
    _plain(res.model, cnn)


def test_ct_is_plain_fine_tuning_on_an_mlp(setup):
    data, _, mlp = setup
    res = _run(mlp, data, "ct", epochs=2, lr=0.05)
    assert res.report["method_extra"]["conv_layers_touched"] == 0
    assert any(not torch.equal(a, b) for a, b in zip(res.model.parameters(), mlp.parameters()))


def test_cosine_per_epoch_matches_torch():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.3)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=4)
    lrs = []
    for _ in range(4):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert cosine_per_epoch(0.3, 4) == pytest.approx(lrs)


# ------------------------------------------------------------------ MSG
def test_msg_reinitialises_exactly_the_least_salient_conv_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3), nn.Flatten(), nn.Linear(2, 2))
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            m.weight.grad = torch.randn_like(m.weight)
    before = _params(model)
    masks = msg_mod.reinit_small_saliency(model, 0.25)
    assert set(masks) == {"0", "2"}
    for name, mask in masks.items():
        w0, w1, g = before[f"{name}.weight"], model.get_submodule(name).weight, model.get_submodule(name).weight.grad
        assert int(mask.sum()) == round(0.25 * mask.numel())
        assert g.abs()[mask].max() <= g.abs()[~mask].min()  # the smallest |g| were chosen
        assert torch.equal(w1[~mask], w0[~mask]) and bool((w1[mask] != w0[mask]).all())
        assert torch.equal(model.get_submodule(name).bias, before[f"{name}.bias"])  # biases kept by default
    assert torch.equal(model[4].weight, before["4.weight"])  # linear layers untouched
    msg_mod.reinit_small_saliency(model, 0.25, reset_bias=True)  # the reference's fresh MaskConv2d bias
    assert not torch.equal(model[0].bias, before["0.bias"])


def test_msg_schedule_warms_up_then_decays():
    assert msg_mod.warmup_linear_decay(1.0, 5) == pytest.approx([1 / 3, 2 / 3, 1, 2 / 3, 1 / 3])
    assert msg_mod.warmup_linear_decay(1.0, 1) == [1.0]
    assert msg_mod.warmup_linear_decay(1.0, 2) == pytest.approx([1.0, 0.5])


def test_msg_scales_conv_gradients_x1_on_reinitialised_entries_and_x0_1_elsewhere(setup, monkeypatch):
    """One full-batch SGD step without momentum or weight decay on a convnet (GroupNorm, no dropout: train mode is
    deterministic): theta = theta_reinit - lr * scale * grad CE(R) with scale 1 on the mask, 0.1 off it (convs),
    1 elsewhere."""
    data, _, _ = setup
    net = train_on(
        data,
        "convnet",
        TrainConfig(epochs=2, batch_size=32),
        seed=0,
        device=CPU,
        quiet=True,
        model_options={"width": 8, "depth": 2},
    ).model
    seen = {}
    real = msg_mod.reinit_small_saliency

    def spy(model, rate, reset_bias=False):
        masks = real(model, rate, reset_bias)
        seen["model"], seen["masks"] = copy.deepcopy(model), masks
        return masks

    monkeypatch.setattr(msg_mod, "reinit_small_saliency", spy)
    lr = 0.5
    res = _run(net, data, "msg", epochs=1, batch_size=1000, momentum=0.0, weight_decay=0.0, lr=lr, init_rate=0.4)
    ref = seen["model"]
    ref.zero_grad(set_to_none=True)
    ref.train()
    idx = res.split.retain
    F.cross_entropy(ref(as_unit(data.train.images[idx])), data.train.labels[idx]).backward()
    out = dict(res.model.named_parameters())
    assert set(seen["masks"]) == {"beginning.1", "final.body.0"}
    for name, p in ref.named_parameters():
        scale = torch.ones_like(p)
        if name.removesuffix(".weight") in seen["masks"] and name.endswith("weight"):
            scale = torch.where(seen["masks"][name.removesuffix(".weight")], 1.0, 0.1)
        assert torch.allclose(out[name], p.detach() - lr * scale * p.grad, atol=1e-6, rtol=1e-4), name
    extra = res.report["method_extra"]
    assert extra["conv_layers_touched"] == 2
    assert extra["reinitialised_weights"] == sum(round(0.4 * m.numel()) for m in seen["masks"].values())
    _plain(res.model, net)


def test_msg_restores_batchnorm_statistics_after_the_saliency_pass(setup, monkeypatch):
    data, cnn, _ = setup
    seen = {}

    def no_training(model, *a, **k):
        seen["buffers"] = {n: b.clone() for n, b in model.named_buffers()}
        return []

    monkeypatch.setattr(msg_mod, "train_epochs", no_training)
    _run(cnn, data, "msg", init_rate=0.3)
    assert all(torch.equal(seen["buffers"][n], b) for n, b in cnn.named_buffers())
    _run(cnn, data, "msg", init_rate=0.3, reference_bug=True)  # the reference lets F batches update them
    assert not torch.equal(seen["buffers"]["beginning.2.running_mean"], cnn.beginning[2].running_mean)


def test_msg_on_an_mlp_is_fine_tuning(setup):
    data, _, mlp = setup
    res = _run(mlp, data, "msg", epochs=2, lr=0.05)
    assert res.report["method_extra"]["conv_layers_touched"] == 0
    assert res.report["method_extra"]["reinitialised_weights"] == 0
    assert any(not torch.equal(a, b) for a, b in zip(res.model.parameters(), mlp.parameters()))


# ------------------------------------------------------------------ CFW
def test_cfw_noises_only_the_stem_conv(setup):
    data, cnn, _ = setup
    before = _params(cnn)
    res = _run(cnn, data, "cfw", lr=TINY, epochs=2, sigma_start=0.5, sigma_final=0.0, batch_size=128)
    after = _params(res.model)
    assert res.report["method_extra"]["noised_layers"] == ["beginning.1"]
    for k in before:
        if k == "beginning.1.weight":
            assert 0.45 < float((after[k] - before[k]).std()) < 0.55  # 864 draws of N(0, 0.5)
        else:
            assert torch.allclose(after[k], before[k], atol=1e-6), k


@pytest.mark.parametrize("epochs, expect_std", [(2, 0.3), (1, 0.0)])
def test_cfw_adds_the_final_noise_before_the_last_epoch_only(setup, epochs, expect_std):
    data, cnn, _ = setup
    res = _run(cnn, data, "cfw", lr=TINY, epochs=epochs, sigma_start=0.0, sigma_final=0.3, batch_size=128)
    d = (res.model.beginning[1].weight - cnn.beginning[1].weight).detach()
    assert float(d.std()) == pytest.approx(expect_std, abs=0.04)
    assert res.report["method_extra"]["final_noise_applied"] == (epochs >= 2)


def test_cfw_stem_conv_per_architecture():
    info = load_data(SPEC).info
    for arch, channels in [("resnet18", 64), ("convnet", 128), ("cnn", 32)]:
        name, layer = cfw_mod.stem_conv(create_model(arch, info))
        assert name == "beginning.1" and layer.out_channels == channels and layer.in_channels == 3
    assert cfw_mod.stem_conv(create_model("mlp", info)) is None


def test_cfw_class_weights_per_sample_and_the_reference_bug():
    y = torch.tensor([0, 0, 0, 1])
    w = cfw_mod.balanced_class_weights(y, 3)
    assert w.tolist() == pytest.approx([4 / 6, 2.0, 0.0])  # sklearn "balanced" over the 2 classes present
    logits = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0], [1.0, 0.0, 0.0], [3.0, 0.0, 0.0]])
    ce = F.cross_entropy(logits, y, reduction="none")
    assert cfw_mod.class_weighted_ce(logits, y, w) == pytest.approx(float((ce * w[y]).mean()))
    bug = cfw_mod.class_weighted_ce(logits, y, w, reference_bug=True)
    assert bug == pytest.approx(float(ce.mean() * w[y].mean()))
    assert abs(float(bug) - float(cfw_mod.class_weighted_ce(logits, y, w))) > 0.1


def test_cfw_on_an_mlp_adds_no_noise_and_fine_tunes(setup):
    data, _, mlp = setup
    res = _run(mlp, data, "cfw", "class:1", epochs=2, lr=0.05)
    extra = res.report["method_extra"]
    assert extra["noised_layers"] == [] and extra["conv_layers_touched"] == 0
    assert extra["class_weights"][1] == 0.0  # no retain sample of the forgotten class
    assert any(not torch.equal(a, b) for a, b in zip(res.model.parameters(), mlp.parameters()))


def test_cfw_is_deterministic(setup):
    data, cnn, _ = setup
    a = _run(cnn, data, "cfw", epochs=2, batch_size=128).model
    b = _run(cnn, data, "cfw", epochs=2, batch_size=128).model
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))


# ------------------------------------------------------------------ PRMQ
def test_prmq_prunes_globally_by_magnitude_and_reinitialises_the_pruned_weights(setup):
    _, cnn, _ = setup
    model = copy.deepcopy(cnn)
    before = _params(model)
    keys = list(model.state_dict())
    prunable = [
        k
        for k in before
        if k.startswith(
            ("beginning.1.", "beginning.5.", "intermediate.0.", "intermediate.4.", "final.head.0.", "final.head.3.")
        )
    ]
    total = sum(before[k].numel() for k in prunable)
    threshold = torch.cat([before[k].abs().flatten() for k in prunable]).kthvalue(round(0.9 * total)).values
    counts = prmq_mod.prune_and_reinit(model, 0.9)
    assert counts["prunable"] == total and counts["pruned"] == round(0.9 * total)
    after = _params(model)
    for k in prunable:
        kept = before[k].abs() > threshold
        assert torch.equal(after[k][kept], before[k][kept]), k  # the largest magnitudes survive unchanged
        if k.endswith("bias"):
            assert bool((after[k][~kept] == 0).all())  # pruned biases stay 0, as the reference
        else:
            m = model.get_submodule(k.removesuffix(".weight"))
            bound = (1.0 / m.weight[0].numel()) ** 0.5
            assert bool((after[k][~kept].abs() <= bound).all()) and bool((after[k][~kept] != 0).all())
    for k in before:
        if k not in prunable:
            assert torch.equal(after[k], before[k])  # batch norm untouched
    assert list(model.state_dict()) == keys  # no weight_orig / weight_mask, original order
    _plain(model, cnn)


def test_prmq_end_to_end_keeps_the_unpruned_weights_and_rounds_to_fp16(setup):
    data, cnn, _ = setup
    res = _run(cnn, data, "prmq", lr=TINY, prune_amount=0.5, epochs=0.5, batch_size=16)
    for t in res.model.state_dict().values():
        if t.is_floating_point():
            assert torch.equal(t, t.half().float())
    extra = res.report["method_extra"]
    per_epoch = -(-len(res.split.retain) // 16) - (len(res.split.retain) % 16 == 1)
    assert extra["steps"] == int(per_epoch * 0.5)
    assert extra["pruned"] == round(0.5 * extra["prunable"])
    old, new = dict(cnn.named_parameters()), dict(res.model.named_parameters())
    convlin = [k for k, m in cnn.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    same = sum(
        int(torch.isclose(new[f"{k}.{p}"], old[f"{k}.{p}"], rtol=2e-3, atol=1e-6).sum())
        for k in convlin
        for p in ("weight", "bias")
    )
    assert abs(same / extra["prunable"] - 0.5) < 0.01
    _plain(res.model, cnn)
    bug = _run(cnn, data, "prmq", lr=TINY, prune_amount=0.5, epochs=0.5, batch_size=16, reference_bug=True)
    assert bug.report["method_extra"]["steps"] == int(per_epoch * 0.5) + 1  # the reference's num_iters > max_iters


def test_prmq_entropy_loss_and_class_weights():
    w = prmq_mod.class_weights(torch.tensor([0, 0, 2, 2, 2, 2]), 3)
    assert w.tolist() == pytest.approx([2**-0.1, 0.0, 4**-0.1])
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    assert prmq_mod.entropy(logits).tolist() == pytest.approx([0.6931472, 0.0], abs=1e-6)


def test_prmq_on_an_mlp_prunes_its_linear_layers_under_class_forgetting(setup):
    data, _, mlp = setup
    res = _run(mlp, data, "prmq", "class:1", epochs=1.0)
    extra = res.report["method_extra"]
    assert extra["conv_layers_touched"] == 0 and extra["linear_layers_touched"] == 3
    assert extra["pruned"] == round(0.99 * extra["prunable"])


# ------------------------------------------------------------------ FCS
def test_fcs_contrastive_loss_is_detached_from_the_retain_logits():
    torch.manual_seed(0)
    f = torch.randn(3, 4, requires_grad=True)
    r = torch.randn(5, 4, requires_grad=True)
    loss = fcs_mod.contrastive_forget_loss(f, r, 1.15)
    assert float(loss.detach()) == pytest.approx(float(-F.log_softmax(f.detach() @ r.detach().T / 1.15, dim=1).mean()))
    loss.backward()
    assert r.grad is None and f.grad is not None
    z = torch.randn(6, 4)
    assert float(fcs_mod.uniform_kl(z)) == pytest.approx(
        float((0.25 * (torch.log(torch.tensor(0.25)) - F.log_softmax(z, 1))).sum(1).mean()), rel=1e-5
    )


def test_fcs_stage_one_pushes_forget_predictions_towards_uniform(setup):
    """With the stage-2 optimisers all but off, only stage 1 (KL to uniform on F) moves the model."""
    data, cnn, _ = setup
    res = _run(cnn, data, "fcs", epochs=1, lr=0.05, forget_lr=TINY, retain_lr=TINY, batch_size=4)
    x = as_unit(data.train.images[res.split.forget])

    def kl(model):
        with torch.no_grad():
            return float(fcs_mod.uniform_kl(model.eval()(x)))

    # 7.4 -> 3.8 here; with lr also tiny (a control) the train-mode passes' BN statistics alone give 7.2
    assert kl(res.model) < 0.6 * kl(cnn)
    assert len(res.report["method_extra"]["contrastive"]) == 1


def test_fcs_raises_the_forget_loss_of_a_class_and_keeps_the_rest(setup):
    """At the reference's settings FCS moves slowly (it was tuned for random forgetting): on this tiny set the
    forgotten class's loss rises many-fold while the retain set stays fitted."""
    data, cnn, _ = setup
    forget = torch.nonzero(data.train.labels == 1).flatten()
    before = evaluate(cnn, data.train.images[forget], data.train.labels[forget]).losses.mean()
    res = _run(cnn, data, "fcs", "class:1", batch_size=32)
    retain = res.split.retain
    after = evaluate(res.model, data.train.images[forget], data.train.labels[forget]).losses.mean()
    r = evaluate(res.model, data.train.images[retain], data.train.labels[retain])
    assert after > 10 * before and after > 2 * r.losses.mean() and r.accuracy > 0.95
    assert len(res.report["method_extra"]["retain_ce"]) == 8
    _plain(res.model, cnn)


def test_fcs_runs_on_an_mlp(setup):
    data, _, mlp = setup
    res = _run(mlp, data, "fcs", epochs=2, batch_size=32)
    assert any(not torch.equal(a, b) for a, b in zip(res.model.parameters(), mlp.parameters()))
