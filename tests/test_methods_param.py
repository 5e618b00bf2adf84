"""UNSIR, Top-K / Random-k perturbation, ARU, LRA-NPP (epsilon-LRP through zennit) and MIA-guided unlearning on
generated data: each moves the model as its definition says (which sets it trains on, which entries change and
to what), refuses what it does not define, and sees only the data it declares."""

import copy

import pytest
import torch
import torch.nn.functional as F
from conftest import param_copy as _params
from conftest import run_method as _run
from conftest import trained_cnn_and_mlp
from torch import nn

import unlearn.methods.unsir as unsir_mod
from dcforget.errors import ConfigError, ForgetSpecError
from dcforget.models import create_model
from dcforget.runtime import generator
from dcforget.train import as_unit
from unlearn.methods import UnlearnContext
from unlearn.methods.common import shuffled_batches
from unlearn.methods.lrp_npp import epsilon_relevance, penultimate
from unlearn.methods.topk_perturb import forget_gradient, make_mask

CPU = torch.device("cpu")
SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"  # 136 train (34 a class), 24 validation, 80 test


@pytest.fixture(scope="module")
def setup():
    return trained_cnn_and_mlp(SPEC, 6, 10)


def test_unsir_impairs_on_noise_and_a_retain_subset_then_repairs(setup, monkeypatch):
    data, cnn, _ = setup
    calls = []
    real = unsir_mod.train_epochs

    def spy(model, x, y, opt, lrs, **kw):
        calls.append({"x": x.clone(), "y": y.clone(), "lrs": lrs, "params": _params(model)})
        return real(model, x, y, opt, lrs, **kw)

    monkeypatch.setattr(unsir_mod, "train_epochs", spy)
    res = _run(
        cnn, data, "unsir", "class:2", noise_batch=8, noise_steps=3, noise_copies=2, retain_per_class=5, batch_size=16
    )
    impair, repair = calls
    assert impair["lrs"] == [0.02] and repair["lrs"] == [0.01]
    # the model is frozen while the noise is optimised: the impair epoch starts from the original
    assert all(torch.equal(impair["params"][k], p) for k, p in _params(cnn).items())
    assert impair["y"][:16].tolist() == [2] * 16  # 8 noise images x 2 copies, labelled with the forgotten class
    assert torch.equal(impair["x"][:8], impair["x"][8:16])
    # the retain subset: the first 5 retain images of each remaining class, in training-set order
    yr = data.train.labels[res.split.retain]
    first = torch.cat([torch.nonzero(yr == c).flatten()[:5] for c in (0, 1, 3)]).sort().values
    assert torch.equal(repair["y"], yr[first]) and torch.equal(impair["y"][16:], yr[first])
    assert torch.equal(repair["x"], as_unit(data.train.images[res.split.retain][first]))
    assert res.report["method_extra"]["noise_images"] == 16
    bug = []
    monkeypatch.setattr(unsir_mod, "train_epochs", lambda model, x, y, opt, lrs, **kw: bug.append(y.clone()))
    _run(
        cnn,
        data,
        "unsir",
        "class:2",
        noise_batch=8,
        noise_steps=1,
        noise_copies=2,
        retain_per_class=5,
        reference_bug=True,
    )
    assert bug[0][:6].tolist() == [0] * 6 and bug[0][6] != 0  # the notebook: 3 images (channels) a copy, label 0
    with pytest.raises(ForgetSpecError, match="whole classes"):
        _run(cnn, data, "unsir", "random:0.2")


def test_unsir_supreme_mode_carries_the_noise_steps_gradients_into_the_first_impair_step(setup, monkeypatch):
    """SUPREME 0.1.5 leaves the model trainable while the noise trains, so the first impair step carries the
    noise steps' model gradients; ``supreme_leftover_grads`` reproduces that, the default does not."""
    data, cnn, _ = setup
    seen = []
    real = unsir_mod.train_epochs

    def spy(model, x, y, opt, lrs, **kw):
        inner = kw.get("before_step")

        def record():
            seen.append({n: p.grad.clone() for n, p in model.named_parameters()})
            if inner is not None:
                inner()
            seen[-1] = {n: p.grad.clone() - seen[-1][n] for n, p in model.named_parameters()}  # what the hook added

        kw["before_step"] = record
        return real(model, x, y, opt, lrs, **kw)

    monkeypatch.setattr(unsir_mod, "train_epochs", spy)
    opts = dict(noise_batch=8, noise_steps=3, noise_copies=2, retain_per_class=5, batch_size=16)
    _run(cnn, data, "unsir", "class:2", **opts)
    assert all(float(g.abs().sum()) == 0 for step in seen for g in step.values())  # default: nothing rides along
    seen.clear()
    _run(cnn, data, "unsir", "class:2", supreme_leftover_grads=True, **opts)
    added = [sum(float(g.abs().sum()) for g in step.values()) for step in seen]
    assert added[0] > 0 and all(a == 0 for a in added[1:])  # the first impair step only, and never the repair


def test_topk_perturbation_moves_exactly_the_selected_entries(setup):
    data, _, mlp = setup
    res = _run(mlp, data, "topk-perturb", "random:0.25", fraction=0.05, lr=0.5, steps=1)
    assert res.report["data_seen"]["retain"] == 0 and res.report["method_extra"]["reconstruction"] is True
    xf, yf = data.train.images[res.split.forget], data.train.labels[res.split.forget]
    model = copy.deepcopy(mlp)
    grads, _ = forget_gradient(model, xf, yf, 256)
    full = dict(model.named_parameters())
    model.zero_grad()
    F.cross_entropy(model.eval()(as_unit(xf)), yf).backward()
    for n, p in full.items():  # the gradient of the mean CE over the whole forget set
        assert torch.allclose(grads[n], p.grad, rtol=1e-4, atol=1e-7), n
    masks = make_mask(grads, 0.05, "topk", "layer", generator(0))
    after, before = _params(res.model), _params(mlp)
    for n, m in masks.items():
        assert int(m.sum()) == max(1, round(0.05 * m.numel()))
        assert grads[n].abs()[m].min() >= grads[n].abs()[~m].max()  # the largest |g| in each tensor
        assert torch.allclose(after[n], before[n] + 0.5 * grads[n] * m, atol=1e-6), n  # one masked ascent step
        assert torch.equal(after[n][~m], before[n][~m])
    rand = make_mask(grads, 0.05, "random", "global", generator(0))
    total = sum(g.numel() for g in grads.values())
    assert sum(int(m.sum()) for m in rand.values()) == round(0.05 * total)  # Random-k: same k, other entries
    assert any(not torch.equal(rand[n], masks[n]) for n in masks)


def test_aru_resets_the_top_filters_from_a_fresh_model_then_fine_tunes(setup):
    data, cnn, mlp = setup
    res = _run(
        cnn,
        data,
        "aru",
        "random:0.25",
        reset_fraction=0.1,
        epochs=1,
        lr=1e-12,
        momentum=0.0,
        weight_decay=0.0,
        pgd_steps=2,
    )
    extra = res.report["method_extra"]
    convs = [(n, m) for n, m in cnn.named_modules() if isinstance(m, nn.Conv2d)]
    filters = sum(m.out_channels for _, m in convs)
    assert extra["units"] == "filters" and extra["scored"] == filters
    assert extra["reset_total"] == round(0.1 * filters) == sum(extra["reset"].values())
    ctx = UnlearnContext(cnn, data, res.split, CPU, 0, {})
    fresh = ctx.fresh_model(ctx.derived_seed("aru-reset"))
    changed = 0
    for n, m in convs:
        w0, w1 = cnn.get_submodule(n).weight, res.model.get_submodule(n).weight
        rows = [i for i in range(m.out_channels) if not torch.allclose(w0[i], w1[i], atol=1e-9)]
        changed += len(rows)
        for i in rows:  # a reset filter is the fresh model's (the fine-tuning's lr is ~0)
            assert torch.allclose(w1[i], fresh.get_submodule(n).weight[i], atol=1e-6)
    assert changed == extra["reset_total"]
    on_mlp = _run(mlp, data, "aru", "random:0.25", reset_fraction=0.1, epochs=1, pgd_steps=1)
    assert on_mlp.report["method_extra"]["units"] == "linear units"
    hidden = [m.out_features for m in mlp.modules() if isinstance(m, nn.Linear)][:-1]
    assert len(hidden) == 2 and on_mlp.report["method_extra"]["scored"] == sum(hidden)  # not the classifier


def test_zennit_epsilon_lrp_conserves_relevance_and_matches_the_closed_form():
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Linear(12, 16, bias=False), nn.ReLU(), nn.Linear(16, 8, bias=False), nn.ReLU(), nn.Linear(8, 3, bias=False)
    )
    x = torch.randn(5, 12)
    rel, seeded = epsilon_relevance(net, x, 1e-9)
    assert torch.allclose(rel.sum(1), seeded.sum(1), rtol=1e-4, atol=1e-6)  # conservation, bias-free
    layer = nn.Linear(6, 3)
    a = torch.rand(4, 6)
    rel, _ = epsilon_relevance(layer, a, 0.1)
    z = layer(a).detach()
    c = z.argmax(1)
    zc = z[torch.arange(4), c]
    closed = a * layer.weight[c].detach() * (zc / (zc + 0.1 * torch.sign(zc))).unsqueeze(1)
    assert torch.allclose(rel, closed, rtol=1e-4, atol=1e-6)  # R_j = a_j w_cj z_c / (z_c + eps sign z_c)


def test_lrp_npp_cuts_the_most_relevant_neurons_from_held_out_images(setup):
    data, cnn, mlp = setup
    res = _run(mlp, data, "lrp-npp", "class:1", top_fraction=0.2, perturb_fraction=0.25)
    assert res.report["data_seen"] == {"zero_shot": True, "forget": 34, "retain": 0, "validation": 24, "test": 0}
    extra = res.report["method_extra"]
    assert extra["aux"] == "val" and extra["analysis_images"] == int((data.val.labels == 1).sum())
    neurons = extra["perturbed_neurons"]
    width = mlp.final.head[0].in_features
    assert extra["width"] == width and len(neurons) == round(0.25 * width) and extra["layer"] == "final.head.0"
    # the frequency ranking, recomputed: per held-out image of class 1, its top 20% neurons by relevance
    x = data.val.images[data.val.labels == 1]
    rel, _ = epsilon_relevance(mlp.final.head[0], penultimate(mlp, x), 0.1)
    counts = torch.bincount(torch.topk(rel, round(0.2 * width), dim=1).indices.flatten(), minlength=width)
    assert sorted(counts[neurons].tolist(), reverse=True)[-1] >= max(
        c for i, c in enumerate(counts.tolist()) if i not in neurons
    )
    after, before = _params(res.model), _params(mlp)
    w = after["final.head.0.weight"]
    assert torch.all(w[:, neurons] == 0)  # zero_all: into every class logit
    keep = [i for i in range(width) if i not in neurons]
    assert torch.equal(w[:, keep], before["final.head.0.weight"][:, keep])
    assert all(torch.equal(after[k], before[k]) for k in after if k != "final.head.0.weight")
    unit = _run(mlp, data, "lrp-npp", "class:1", perturb="zero_class_and_unit").model
    w = unit.final.head[0].weight
    cut = (w[1] == 0).nonzero().flatten()
    assert len(cut) == round(0.2 * width)  # the default perturb_fraction of the neurons, into class 1 only
    assert torch.equal(w[[0, 2, 3]], before["final.head.0.weight"][[0, 2, 3]])
    assert torch.all(unit.intermediate[0].weight[cut] == 0)  # and the neurons' incoming rows (the MLP variant)
    with pytest.raises(ForgetSpecError, match="whole classes"):
        _run(mlp, data, "lrp-npp", "random:0.2")
    resnet = create_model("resnet18", num_classes=4, image_shape=(3, 16, 16))  # pooled conv features: no such row
    with pytest.raises(ConfigError, match="Linear layer producing"):
        _run(resnet, data, "lrp-npp", "class:1", perturb="zero_class_and_unit")


def test_mia_guided_with_lam_zero_is_retain_fine_tuning_and_needs_validation(setup):
    data, _, mlp = setup
    res = _run(
        mlp,
        data,
        "mia-guided",
        "random:0.25",
        lam=0.0,
        epochs=1,
        batch_size=32,
        momentum=0.0,
        weight_decay=0.0,
        lr=0.05,
    )
    fit = res.report["method_extra"]["attack_fits"][0]
    assert 0 < fit["target"] < 1 and res.report["method_extra"]["reconstruction"]
    # lam = 0: the same SGD steps as plain CE on the retain set, in the method's batch order
    model = copy.deepcopy(mlp)
    xr, yr = data.train.images[res.split.retain], data.train.labels[res.split.retain]
    gen = generator(0)
    torch.randperm(len(yr), generator=gen)  # the attack's member sample
    shuffled_batches(34, 32, gen, CPU)  # the forget batches
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    for idx in shuffled_batches(len(yr), 32, gen, CPU):
        opt.zero_grad()
        F.cross_entropy(model(as_unit(xr[idx])), yr[idx]).backward()
        opt.step()
    for (n, p), q in zip(model.named_parameters(), res.model.parameters()):
        assert torch.allclose(p, q, atol=1e-6), n
    pulled = _run(mlp, data, "mia-guided", "random:0.25", lam=5.0, epochs=1, batch_size=32, lr=0.05)
    assert any(not torch.allclose(p, q) for p, q in zip(pulled.model.parameters(), res.model.parameters()))
    no_val = trained_cnn_and_mlp(SPEC, 1, 1)[0]
    no_val.val = None
    with pytest.raises(ConfigError, match="validation split"):
        _run(mlp, no_val, "mia-guided", "random:0.25")


@pytest.mark.parametrize(
    "method, opts, message",
    [
        ("unsir", {"noise_copies": 0}, "noise_copies"),
        ("topk-perturb", {"fraction": 2}, "fraction"),
        ("topk-perturb", {"selection": "bottom"}, "selection"),
        ("aru", {"reset_fraction": 1.5}, "reset_fraction"),
        ("lrp-npp", {"aux": "test"}, "aux"),
        ("lrp-npp", {"perturb": "scramble"}, "perturb"),
        ("mia-guided", {"refit_every": 0}, "refit_every"),
    ],
)
def test_bad_options_are_refused_before_any_work(setup, method, opts, message):
    data, _, mlp = setup
    with pytest.raises(ConfigError, match=message):
        _run(mlp, data, method, "class:1", **opts)


ARCH_SPEC = "synthetic:classes=4,train=12,test=4,size=32,noise=0.5"  # 32x32: VGG-16 pools five times
ARCH_RUNS = {  # issue #17's eight and ASSD, with the smallest options that still run every stage of each
    "ssd": ("random:0.25", {}),
    "assd": ("random:0.25", {}),  # SSD with its threshold read from the checkpoint (not one of #17's eight)
    "lfssd": ("random:0.25", {}),
    "jit": ("random:0.25", {"n_samples": 2}),
    "unsir": (
        "class:1",
        {"noise_steps": 1, "noise_copies": 1, "retain_per_class": 2, "noise_batch": 4, "batch_size": 8},
    ),
    "aru": ("random:0.25", {"pgd_steps": 1, "epochs": 1, "batch_size": 8}),
    "topk-perturb": ("random:0.25", {"steps": 1}),
    "lrp-npp": ("class:1", {}),
    "mia-guided": ("random:0.25", {"epochs": 1, "batch_size": 8}),
}


@pytest.mark.parametrize("arch", ["convnet", "resnet18", "vgg16"])
def test_the_eight_parameter_level_methods_run_on_the_larger_architectures(arch):
    """Issue #17: every method applies to every registered architecture (the definition tests above use the MLP and
    the CNN): on ConvNet-3, ResNet-18 and VGG-16 each request finishes, keeps the architecture, moves parameters,
    and a zero-shot method sees no retain image; lrp-npp (default ``zero_all``) changes only the classifier's input
    weights."""
    from dcforget.datasets import load_data

    data = load_data(ARCH_SPEC)
    torch.manual_seed(0)
    model = create_model(arch, num_classes=4, image_shape=(3, 32, 32))
    before = _params(model)
    for method, (spec, opts) in ARCH_RUNS.items():
        res = _run(model, data, method, spec, **opts)
        after = _params(res.model)
        assert {k: v.shape for k, v in after.items()} == {k: v.shape for k, v in before.items()}, method
        moved = [k for k in before if not torch.equal(after[k], before[k])]
        assert moved, f"{method} on {arch} changed nothing"
        seen = res.report["data_seen"]
        assert (seen["retain"] == 0) == seen["zero_shot"], method
        if method == "lrp-npp":
            assert len(moved) == 1 and moved[0].endswith("weight"), moved
    assert all(torch.equal(p, before[k]) for k, p in _params(model).items())  # the original is never modified
