"""Deep Unlearn's KDE (kgltop6), RNI (kgltop7), IU (WoodFisher), CF-k and EU-k on generated data: each moves the model
as defined (which tensors change and which stay, the exact first SGD steps, the reference recursion), and each runs
on an MLP."""

import copy

import pytest
import torch
import torch.nn.functional as F

import unlearn.methods.cf_k as cf_k_mod
import unlearn.methods.eu_k  # noqa: F401  (registers eu-k)
import unlearn.methods.iu  # noqa: F401  (registers iu)
import unlearn.methods.kde as kde_mod
import unlearn.methods.rni as rni_mod
from dcforget.datasets import load_data
from dcforget.errors import ConfigError
from dcforget.models import create_model
from dcforget.runtime import seeded
from dcforget.train import TrainConfig, as_unit, train_on
from unlearn.methods import METHODS
from unlearn.methods.base import UnlearnContext
from unlearn.methods.cf_k import last_blocks, model_blocks
from unlearn.methods.rni import norm_parameter_names
from unlearn.request import unlearn_request

CPU = torch.device("cpu")
SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"
SMALL_CNN = {"channels": [8, 16, 32, 32], "hidden": 64}  # DC-U's cnn, narrower: the tests stay a few seconds


@pytest.fixture(scope="module")
def setup():
    data = load_data(SPEC)
    cfg = TrainConfig(epochs=6, batch_size=32)
    cnn = train_on(data, "cnn", cfg, seed=0, device=CPU, quiet=True, model_options=SMALL_CNN).model
    mlp = train_on(data, "mlp", cfg, seed=0, device=CPU, quiet=True, model_options={"hidden": [64, 32]}).model
    return data, cnn, mlp


def _run(model, data, method, spec="random:0.2", **opts):
    return unlearn_request(model, data, spec, method, device=CPU, options=opts, quiet=True)


def _params(model):
    return {k: p.detach().clone() for k, p in model.named_parameters()}


def _retain(data, res):
    idx = res.split.retain
    return data.train.images[idx], data.train.labels[idx]


class _FitSpy:
    """Records what each fit call of a method module got, then runs it."""

    def __init__(self, module, monkeypatch):
        self.calls, self.real = [], module.fit
        monkeypatch.setattr(module, "fit", self)

    def __call__(self, model, images, labels, cfg, **kw):
        opt = kw.get("optimizer")
        self.calls.append(
            {
                "images": images.clone(),
                "labels": labels.clone(),
                "lr": cfg.lr,
                "optimizer": opt,
                "momentum": opt.param_groups[0]["momentum"] if opt is not None else cfg.momentum,
                "trainable": {k for k, p in model.named_parameters() if p.requires_grad},
            }
        )
        return self.real(model, images, labels, cfg, **kw)


# ------------------------------------------------------------------ blocks (CF-k / EU-k)
def test_blocks_per_architecture():
    info = load_data(SPEC).info
    expect = {
        "mlp": ["beginning.2", "intermediate.0"],
        "cnn": ["beginning.1", "beginning.5", "intermediate.0", "intermediate.4"],
        "convnet": ["beginning.1", "intermediate.0", "final.body.0"],
        "resnet18": ["stem", "layer1", "layer2", "layer3", "layer4"],
    }
    for arch, names in expect.items():
        m = create_model(arch, info)
        blocks = model_blocks(m)
        assert [n for n, _ in blocks] == names, arch
        # every parameter outside the head is in exactly one block
        inside = [id(p) for _, ms in blocks for mod in ms for p in mod.parameters()]
        head = {id(p) for p in m.final.head.parameters()}
        assert len(inside) == len(set(inside)) and set(inside) | head == {id(p) for p in m.parameters()}, arch
        assert [n for n, _ in last_blocks(m, 1)] == names[-1:]
        assert [n for n, _ in last_blocks(m, 10)] == names  # more than there are: all
        assert [n for n, _ in last_blocks(m, 10, freeze_stem=True)] == names[1:]
    r = create_model("resnet18", info)
    assert model_blocks(r)[-1][1][0] is r.final.body[0]  # layer4, as the reference's get_resnet_blocks
    # RNI's normalisation tensors: the downsample BatchNorms count unless the reference's name test is asked for
    assert len(norm_parameter_names(r)) - len(norm_parameter_names(r, reference_names=True)) == 6


def _manual_cfk(model, modules, xr, yr, lr, wd, steps):
    """Full-batch SGD without momentum on CE + wd/2 ||theta - theta0||^2 over ``modules``, eval mode."""
    model.eval().requires_grad_(False)
    params = [p for m in modules for p in m.parameters()]
    for p in params:
        p.requires_grad_(True)
    theta0 = [p.detach().clone() for p in params]
    for _ in range(steps):
        prox = sum(((p - q) ** 2).sum() for p, q in zip(params, theta0))
        loss = F.cross_entropy(model(as_unit(xr)), yr) + wd / 2 * prox
        gs = torch.autograd.grad(loss, params)
        with torch.no_grad():
            for p, g in zip(params, gs):
                p -= lr * g
    return model


def test_cf_k_is_exactly_frozen_sgd_with_the_proximal_term(setup, monkeypatch):
    data, cnn, _ = setup
    spy = _FitSpy(cf_k_mod, monkeypatch)
    # batch larger than the retain set: one full batch per epoch, so the two steps can be recomputed by hand
    res = _run(cnn, data, "cf-k", num_blocks=1, epochs=2, lr=0.05, weight_decay=5.0, batch_size=512)
    after, before = _params(res.model), _params(cnn)
    block = {k for k in before if k.startswith("intermediate.4.") or k.startswith("intermediate.5.")}
    head = {k for k in before if k.startswith("final.head.")}
    for k in before:
        assert torch.equal(after[k], before[k]) == (k not in block | head), k
    for (k, b), b0 in zip(res.model.named_buffers(), cnn.buffers()):  # eval mode: BN statistics untouched
        assert torch.equal(b, b0), k
    assert all(c["momentum"] == 0.0 and c["trainable"] == block | head for c in spy.calls)
    ref = copy.deepcopy(cnn)
    xr, yr = _retain(data, res)
    _manual_cfk(ref, [ref.intermediate[4], ref.intermediate[5], ref.final.head], xr, yr, 0.05, 5.0, 2)
    for k, p in ref.named_parameters():
        assert torch.allclose(after[k], p, atol=1e-6), k


def test_cf_k_step_decay_follows_scrub(setup, monkeypatch):
    data, cnn, _ = setup
    spy = _FitSpy(cf_k_mod, monkeypatch)
    res = _run(cnn, data, "cf-k", num_blocks=10, epochs=10, batch_size=512, lr=0.01)
    assert [c["lr"] for c in spy.calls] == pytest.approx([0.01] * 6 + [0.001] * 3 + [0.0001])
    assert len({id(c["optimizer"]) for c in spy.calls}) == 1
    assert spy.calls[0]["trainable"] == set(_params(cnn))  # num_blocks above the block count: everything
    assert res.report["method_extra"]["unfrozen_blocks"] == [
        "beginning.1",
        "beginning.5",
        "intermediate.0",
        "intermediate.4",
    ]


def test_eu_k_reinitialises_then_fine_tunes(setup):
    data, cnn, _ = setup
    res = _run(cnn, data, "eu-k", num_blocks=1, epochs=2, lr=0.05, weight_decay=5.0, batch_size=512)
    ref = copy.deepcopy(cnn)
    ctx = UnlearnContext(cnn, data, res.split, CPU, 0, {})
    fresh = ctx.fresh_model(ctx.derived_seed("eu-k"))  # what the request builds: a seed derived from its seed 0
    same_seed = ctx.fresh_model()  # seed 0 itself: in the benchmark, the original's own initial weights
    assert ctx.derived_seed("eu-k") == UnlearnContext(cnn, data, res.split, CPU, 0, {}).derived_seed("eu-k") != 0
    assert not torch.equal(fresh.final.head[3].weight, same_seed.final.head[3].weight)
    for name in ("intermediate.4", "intermediate.5", "final.head"):
        ref.get_submodule(name).load_state_dict(fresh.get_submodule(name).state_dict())
    xr, yr = _retain(data, res)
    _manual_cfk(ref, [ref.intermediate[4], ref.intermediate[5], ref.final.head], xr, yr, 0.05, 5.0, 2)
    after, before = _params(res.model), _params(cnn)
    for k, p in ref.named_parameters():
        assert torch.allclose(after[k], p, atol=1e-6), k
        touched = k.startswith(("intermediate.4", "intermediate.5", "final.head"))
        assert torch.equal(after[k], before[k]) == (not touched), k
    # fresh init also resets the BN running statistics of the re-initialised block; the reference init keeps them
    assert torch.equal(res.model.intermediate[5].running_var, torch.ones(32))
    ref_init = _run(cnn, data, "eu-k", num_blocks=1, epochs=1, lr=1e-12, init="reference", batch_size=512)
    m = ref_init.model
    assert torch.equal(m.intermediate[5].running_var, cnn.intermediate[5].running_var)
    assert torch.allclose(m.intermediate[5].weight, torch.ones(32)) and m.final.head[3].bias.abs().max() < 1e-9
    assert torch.equal(m.intermediate[0].weight, cnn.intermediate[0].weight)


# ------------------------------------------------------------------ KDE
def test_kde_resets_first_conv_and_head_exactly(setup):
    data, cnn, _ = setup
    res = _run(cnn, data, "kde", epochs=0, retain_epochs=0)
    ref = copy.deepcopy(cnn)
    with seeded(0, CPU):
        ref.beginning[1].reset_parameters()
        ref.final.head[0].reset_parameters()
        ref.final.head[3].reset_parameters()
    reset = {
        "beginning.1.weight",
        "beginning.1.bias",
        "final.head.0.weight",
        "final.head.0.bias",
        "final.head.3.weight",
        "final.head.3.bias",
    }
    for (k, p), p0, q in zip(res.model.named_parameters(), cnn.parameters(), ref.parameters()):
        assert torch.equal(p, q), k
        assert torch.equal(p, p0) == (k not in reset), k
    ex = res.report["method_extra"]
    assert ex["first_layer"] == "beginning.1" and ex["first_layer_kind"] == "Conv2d"


def _kl_to_teacher(student, teacher, x, t):
    with torch.no_grad():
        return float(kde_mod.kl_t(student(as_unit(x)), teacher(as_unit(x)), t))


def test_kde_warm_up_distils_on_retain_or_val(setup, monkeypatch):
    data, cnn, _ = setup
    spy = _FitSpy(kde_mod, monkeypatch)
    reset = _run(cnn, data, "kde", epochs=0, retain_epochs=0).model
    res = _run(cnn, data, "kde", epochs=3, retain_epochs=3, lr=0.01)
    xr, _ = _retain(data, res)
    warm, *retain = spy.calls
    assert torch.equal(warm["images"], xr) and int(warm["labels"].abs().sum()) == 0  # retain images, unlabelled
    assert [c["lr"] for c in retain] == pytest.approx([1e-3, 7.5e-4, 2.5e-4])  # cosine, stepped per epoch
    assert len({id(c["optimizer"]) for c in retain}) == 1 and retain[0]["momentum"] == 0.9
    spy.calls.clear()
    # the warm-up alone pulls the reset student towards the teacher (at T = 1, where the un-rescaled KL is not tiny)
    warm_only = _run(cnn, data, "kde", epochs=3, retain_epochs=0, lr=0.1, temperature=1.0).model
    assert _kl_to_teacher(warm_only, cnn, xr, 1.0) < 0.5 * _kl_to_teacher(reset, cnn, xr, 1.0)
    spy.calls.clear()
    val = _run(cnn, data, "kde", epochs=1, retain_epochs=0, warmup_data="val")
    assert torch.equal(spy.calls[0]["images"], data.val.images)  # the reference's (leaky) choice, on request
    assert val.report["method_extra"]["warmup_size"] == len(data.val.labels)


# ------------------------------------------------------------------ RNI
def test_rni_trains_only_the_drawn_tensors_and_the_norms(setup):
    data, cnn, _ = setup
    res = _run(cnn, data, "rni", epochs=1, fine_epochs=0, lr=0.01)
    ex = res.report["method_extra"]
    chosen = set(ex["selected"][0])
    norms = norm_parameter_names(cnn)
    assert len(chosen) == 9 and not chosen & norms and len(norms) == 8 and ex["noised"] == [[]]
    ref = copy.deepcopy(cnn)
    with seeded(0, CPU):
        ref.final.head[0].reset_parameters()
        ref.final.head[3].reset_parameters()
    after, before, reset = _params(res.model), _params(cnn), _params(ref)
    for k in before:
        start = reset[k]  # the head starts from its reset values, the rest from the original
        assert torch.equal(after[k], start) == (k not in chosen | norms), k


def test_rni_noise_lands_only_on_newly_selected_tensors(setup):
    data, cnn, _ = setup
    # an lr of 1e-12 makes training a no-op, so every change outside the head is noise
    res = _run(
        cnn,
        data,
        "rni",
        epochs=5,
        fine_epochs=0,
        reset_epochs=1,
        lr=1e-12,
        momentum=0.0,
        weight_decay=0.0,
        origin_noise=0.04,
    )
    ex = res.report["method_extra"]
    assert ex["noised"][0] == []  # no noise before reset_epochs
    seen = set(ex["selected"][0])
    for ep in range(1, 5):
        hit = set(ex["noised"][ep])
        assert hit <= set(ex["selected"][ep]) and not hit & seen and len(hit) <= 6
        seen |= set(ex["selected"][ep])
    noised = {k for ks in ex["noised"] for k in ks}
    assert noised, "the draw should noise at least one new tensor in 4 epochs"
    after, before = _params(res.model), _params(cnn)
    for k in before:
        if k.startswith("final.head."):
            continue
        diff = after[k] - before[k]
        assert (diff.abs().max() > 1e-4) == (k in noised), k
        if k in noised and diff.numel() > 1000:
            assert 0.035 < float(diff.std()) < 0.045, k


def test_rni_final_epochs_train_everything_with_the_fine_lr(setup, monkeypatch):
    data, cnn, _ = setup
    spy = _FitSpy(rni_mod, monkeypatch)
    _run(cnn, data, "rni", epochs=9, fine_epochs=4, batch_size=128)
    assert [c["lr"] for c in spy.calls] == pytest.approx([2e-4] * 5 + [2e-4, 2e-4, 2e-4, 1e-3])
    everything = set(_params(cnn))
    assert all(c["trainable"] != everything for c in spy.calls[:5])
    assert all(c["trainable"] == everything for c in spy.calls[5:])


# ------------------------------------------------------------------ IU
def _reference_iu(model, xr, yr, xf, yf, alpha, n_damp, samples):
    """A literal port of Wfisher.py / woodfisher (batch size 1, flat vectors)."""
    model = copy.deepcopy(model).eval()
    params = list(model.parameters())
    flat = lambda loss: torch.cat([g.reshape(-1) for g in torch.autograd.grad(loss, params)])
    nf, nr = len(yf), len(yr)
    gf = flat(F.cross_entropy(model(as_unit(xf)), yf, reduction="sum"))
    gr = flat(F.cross_entropy(model(as_unit(xr)), yr, reduction="sum"))
    k = gf / (nf + nr) - gr * nf / ((nf + nr) * nr)
    o = None
    for i in range(samples):
        g = flat(F.cross_entropy(model(as_unit(xr[i : i + 1])), yr[i : i + 1]))
        if o is None:
            o = g.clone()
        else:
            tmp = o @ g
            k = k - (k @ g / (n_damp + tmp)) * o
            o = o - (tmp / (n_damp + tmp)) * o
    with torch.no_grad():
        at = 0
        for p in params:
            p += alpha * k[at : at + p.numel()].view_as(p)
            at += p.numel()
    return model


def test_iu_reproduces_the_reference_woodfisher_update(setup):
    data, cnn, _ = setup
    # a small damping makes the rank-one corrections matter; "first" walks the retain set in order, as the reference
    res = _run(cnn, data, "iu", alpha=50.0, damping=0.05, hessian_samples=40, chunk_size=16, sample_order="first")
    xr, yr = _retain(data, res)
    idx = res.split.forget
    # in float64: the float32 port itself is off by ~3e-5 of the step (long float32 vector recursions), ours by ~1e-6
    ref = _reference_iu(
        copy.deepcopy(cnn).double(), xr, yr, data.train.images[idx], data.train.labels[idx], 50.0, 0.05, 40
    )
    flat = lambda m: torch.cat([p.detach().double().flatten() for p in m.parameters()])
    step = flat(ref) - flat(cnn)
    assert float(step.norm()) > 1.0 and float((flat(res.model) - flat(ref)).norm()) < 1e-5 * float(step.norm())
    ex = res.report["method_extra"]
    assert ex["hessian_samples"] == 40 and abs(ex["b"]) > 0
    unchanged = _run(cnn, data, "iu", alpha=0.0)
    assert all(torch.equal(p, q) for p, q in zip(unchanged.model.parameters(), cnn.parameters()))
    assert unchanged.report["method_extra"]["hessian_samples"] == len(xr)  # fewer retain samples than 1002


# ------------------------------------------------------------------ the MLP, options, spaces
def test_all_five_run_on_an_mlp(setup):
    data, _, mlp = setup
    kde = _run(mlp, data, "kde", epochs=1, retain_epochs=1).report["method_extra"]
    assert kde["first_layer"] == "beginning.2" and kde["first_layer_kind"] == "Linear"  # no conv: the first Linear
    rni = _run(mlp, data, "rni", epochs=3, fine_epochs=1).report["method_extra"]
    assert rni["norm_tensors"] == 0 and all(len(s) == 6 for s in rni["selected"])  # 6 tensors < 9: all, every epoch
    assert rni["noised"] == [[], []]  # everything was selected in epoch 0, so nothing is "new" later
    cfk = _run(mlp, data, "cf-k", epochs=1).report["method_extra"]
    assert cfk["blocks"] == ["beginning.2", "intermediate.0"] and cfk["unfrozen_blocks"] == ["intermediate.0"]
    euk = _run(mlp, data, "eu-k", epochs=1, num_blocks=5, augment="crop_flip").report["method_extra"]
    assert euk["unfrozen_blocks"] == ["beginning.2", "intermediate.0"] and euk["augment"] == "crop_flip"
    iu = _run(mlp, data, "iu", hessian_samples=50).report["method_extra"]
    assert iu["hessian_samples"] == 50 and iu["step_norm"] > 0


@pytest.mark.parametrize(
    "method, opts, match",
    [
        ("kde", {"warmup_data": "test"}, "warmup_data"),
        ("kde", {"temperature": 0.0}, "temperature"),
        ("rni", {"fine_lr_factors": []}, "fine_lr_factors"),
        ("rni", {"epochs": 0}, "epochs"),
        ("iu", {"sample_order": "last"}, "sample_order"),
        ("iu", {"damping": 0.0}, "damping"),
        ("cf-k", {"num_blocks": -1}, "num_blocks"),
        ("cf-k", {"lr": 0.0}, "lr"),
        ("eu-k", {"init": "kaiming"}, "init"),
        ("eu-k", {"augment": "blur"}, "DSA"),
    ],
)
def test_bad_options_are_refused(setup, method, opts, match):
    data, cnn, _ = setup
    with pytest.raises(ConfigError, match=match):
        _run(cnn, data, method, **opts)


def test_registration_defaults_and_spaces():
    kde, rni, iu, cfk, euk = (METHODS.get(n) for n in ("kde", "rni", "iu", "cf-k", "eu-k"))
    assert kde.defaults["temperature"] == 5.0 and kde.defaults["batch_size"] == 64
    assert {"temperature", "retain_epochs", "retain_lr", "retain_weight_decay", "lr", "epochs"} <= set(kde.space)
    assert rni.defaults["noise_ratio"] == 0.7 and {"noise_ratio", "origin_noise", "fine_epochs"} <= set(rni.space)
    assert iu.defaults["alpha"] == 0.2 and set(iu.space) == {"alpha", "batch_size"}
    assert set(cfk.space) == {"num_blocks", "decay_rate", "lr", "weight_decay", "batch_size", "epochs"}
    assert "momentum" not in cfk.defaults and set(euk.space) == set(cfk.space)
    assert not any(m.zero_shot for m in (kde, rni, iu, cfk, euk))
