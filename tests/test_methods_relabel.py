"""SRL, SalUn and SCRUB (Deep Unlearn's random-label and distillation methods) on generated data: each moves the
model as defined -- the training targets, the saliency mask and what it freezes, the max/min steps, the rewind
rule -- and each runs on an MLP."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from conftest import trained_cnn_and_mlp  # noqa: E402

import unlearn.methods.salun as salun_mod  # noqa: F401  (registers "salun")
import unlearn.methods.scrub as scrub_mod  # noqa: F401  (registers "scrub")
import unlearn.methods.srl as srl_mod  # noqa: F401  (registers "srl")
from dcforget.errors import ConfigError
from dcforget.runtime import generator
from dcforget.train import as_unit, evaluate
from unlearn.methods import METHODS
from unlearn.methods.common import step_decay_lr
from unlearn.methods.distill import kd_kl
from unlearn.request import unlearn_request

CPU = torch.device("cpu")
SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"


@pytest.fixture(scope="module")
def setup():
    return trained_cnn_and_mlp(SPEC, cnn_epochs=8, mlp_epochs=6)


def _params(model):
    return {k: p.detach().clone() for k, p in model.named_parameters()}


def _forget(data, res):
    idx = res.split.forget
    return data.train.images[idx], data.train.labels[idx]


# ---------------------------------------------------------------------------------------------------- SRL
def test_srl_trains_on_retain_labels_plus_fresh_uniform_forget_labels(setup, monkeypatch):
    data, cnn, _ = setup
    draws, targets = [], []
    real_draw = srl_mod.draw_random_labels

    def draw(n, k, gen):
        out = real_draw(n, k, gen)
        draws.append(out.clone())
        return out

    def ce(logits, y, *a, **kw):
        targets.append(y.detach().clone())
        return F.cross_entropy(logits, y, *a, **kw)

    monkeypatch.setattr(srl_mod, "draw_random_labels", draw)
    monkeypatch.setattr(srl_mod, "F", SimpleNamespace(cross_entropy=ce))
    res = unlearn_request(
        cnn, data, "random:0.2", "srl", device=CPU, quiet=True, options={"epochs": 3, "batch_size": 16, "lr": 0.01}
    )
    nf, nr = len(res.split.forget), len(res.split.retain)
    yr = data.train.labels[res.split.retain]
    steps = res.report["method_extra"]["steps_per_epoch"]
    assert len(draws) == 3 and len(targets) == 3 * steps
    for e, drawn in enumerate(draws):  # one fresh label per forget sample per epoch (each read once), all classes
        assert len(drawn) == nf and 0 <= int(drawn.min()) and int(drawn.max()) < 4
        seen = torch.cat(targets[e * steps : (e + 1) * steps])
        assert len(seen) == nf + nr  # every sample of F ∪ R exactly once per epoch
        assert torch.equal(
            torch.bincount(seen, minlength=4), torch.bincount(yr, minlength=4) + torch.bincount(drawn, minlength=4)
        )
    assert not torch.equal(draws[0], draws[1]) and not torch.equal(draws[1], draws[2])
    assert len(torch.unique(torch.cat(draws))) == 4


def test_srl_class_forgetting_and_determinism(setup):
    data, cnn, _ = setup
    opts = {"epochs": 2, "batch_size": 32, "lr": 0.01}
    a = unlearn_request(cnn, data, "class:1", "srl", device=CPU, options=opts, quiet=True)
    b = unlearn_request(cnn, data, "class:1", "srl", device=CPU, options=opts, quiet=True)
    assert a.report["forget_acc"] <= 0.5 and a.report["retain_acc"] >= 0.8  # random labels destroy class 1 only
    assert all(torch.equal(p, q) for p, q in zip(_params(a.model).values(), _params(b.model).values()))


# ---------------------------------------------------------------------------------------------------- SalUn
def test_salun_mask_is_the_global_top_fraction_of_the_summed_forget_gradient(setup):
    data, cnn, _ = setup
    idx = torch.nonzero(data.train.labels == 2).flatten()
    x, y = data.train.images[idx], data.train.labels[idx]
    g = salun_mod.forget_gradient(cnn, x, y, batch_size=7)  # chunked sum
    ref = [p for p in cnn.parameters()]
    cnn.eval()
    full = torch.autograd.grad(-F.cross_entropy(cnn(as_unit(x)), y, reduction="sum"), ref)  # one batch, eval mode
    for (name, got), want in zip(g.items(), full):
        assert torch.allclose(got, want, atol=1e-5, rtol=1e-4), name
    mask = salun_mod.saliency_mask(g, 0.3)
    scores = torch.cat([v.abs().flatten() for v in g.values()])
    flat = torch.cat([m.flatten() for m in mask.values()])
    assert set(flat.unique().tolist()) <= {0.0, 1.0} and int(flat.sum()) == int(len(scores) * 0.3)
    assert scores[flat == 1].min() >= scores[flat == 0].max()  # global ranking over all parameters together
    per_param = {k: float(m.mean()) for k, m in mask.items()}
    assert min(per_param.values()) < 0.3 < max(per_param.values())  # not a per-layer quota
    assert int(sum(m.sum() for m in salun_mod.saliency_mask(g, 0.0).values())) == 0
    assert all(bool(m.all()) for m in salun_mod.saliency_mask(g, 1.0).values())


def test_salun_reference_bug_reproduces_the_ports_running_sum_weighting(setup):
    data, cnn, _ = setup
    idx = torch.nonzero(data.train.labels == 0).flatten()
    x, y = data.train.images[idx], data.train.labels[idx]
    got = salun_mod.forget_gradient(cnn, x, y, batch_size=10, reference_bug=True, gen=generator(5))
    perm = torch.randperm(len(y), generator=generator(5))
    cnn.eval()
    params = list(cnn.parameters())
    batch = [
        torch.autograd.grad(-F.cross_entropy(cnn(as_unit(x[perm[s : s + 10]])), y[perm[s : s + 10]]), params)
        for s in range(0, len(y), 10)
    ]
    nb = len(batch)
    assert nb == 4  # 34 forget images: weights 4, 3, 2, 1
    for i, (name, g) in enumerate(got.items()):
        want = sum((nb - b) * batch[b][i] for b in range(nb))
        assert torch.allclose(g, want, atol=1e-5, rtol=1e-4), name


@pytest.mark.parametrize("restore", [True, False])
def test_salun_moves_only_salient_weights_and_restore_keeps_the_rest_at_theta0(setup, restore):
    data, cnn, _ = setup
    opts = {
        "epochs": 2,
        "batch_size": 32,
        "threshold": 0.3,
        "momentum": 0.9,
        "weight_decay": 0.05,
        "restore_masked": restore,
    }
    res = unlearn_request(cnn, data, "class:1", "salun", device=CPU, options=opts, quiet=True)
    x, y = _forget(data, res)
    mask = salun_mod.saliency_mask(salun_mod.forget_gradient(cnn, x, y, batch_size=32), 0.3)
    before, after = _params(cnn), _params(res.model)
    ex = res.report["method_extra"]
    assert ex["mask_fraction"] == pytest.approx(0.3, abs=1e-5)
    kept = torch.cat([(after[k] != before[k])[mask[k].bool()] for k in mask]).float().mean()
    assert kept > 0.9  # the salient 30% all train
    out_changed = torch.cat([(after[k] != before[k])[~mask[k].bool()] for k in mask])
    if restore:  # default: masked-out coordinates are exactly theta0
        assert not bool(out_changed.any()) and ex["masked_out_max_drift"] == 0.0
        assert res.report["forget_acc"] <= 0.7 and res.report["retain_acc"] >= 0.8
    else:  # Deep Unlearn's port: weight decay (added after the mask) shrinks every masked-out weight
        a = torch.cat([after[k][~mask[k].bool()] for k in mask])
        b = torch.cat([before[k][~mask[k].bool()] for k in mask])
        nz = b != 0
        assert float((a[nz].abs() < b[nz].abs()).float().mean()) > 0.99 and ex["masked_out_max_drift"] > 0


# ---------------------------------------------------------------------------------------------------- SCRUB
def _kl(student, teacher, x):
    student.eval()
    with torch.no_grad():
        return float(kd_kl(student(as_unit(x)), teacher(as_unit(x)), 2.0))


def test_scrub_max_step_pushes_the_student_from_the_teacher_on_forget_only(setup):
    data, cnn, _ = setup
    common = {"lr": 0.01, "epochs": 3, "rewind": False}
    with_max = unlearn_request(cnn, data, "class:1", "scrub", device=CPU, quiet=True, options={**common, "msteps": 3})
    no_max = unlearn_request(cnn, data, "class:1", "scrub", device=CPU, quiet=True, options={**common, "msteps": 0})
    xf, _ = _forget(data, with_max)
    xr = data.train.images[with_max.split.retain]
    assert with_max.report["method_extra"]["max_steps"] == 3 and no_max.report["method_extra"]["max_steps"] == 0
    assert with_max.report["forget_acc"] <= 0.2 and no_max.report["forget_acc"] >= 0.8
    assert _kl(with_max.model, cnn, xf) > 3 * _kl(with_max.model, cnn, xr)
    assert _kl(with_max.model, cnn, xf) > 10 * _kl(no_max.model, cnn, xf)


def test_scrub_defaults_and_step_decay(setup):
    data, cnn, _ = setup
    m = METHODS.get("scrub")
    assert {
        k: m.defaults[k]
        for k in ("gamma", "alpha", "msteps", "temperature", "epochs", "lr", "batch_size", "forget_batch_size")
    } == {
        "gamma": 1.0,
        "alpha": 0.5,
        "msteps": 3,
        "temperature": 2.0,
        "epochs": 5,
        "lr": 5e-4,
        "batch_size": 32,
        "forget_batch_size": 64,
    }
    assert set(m.space) == {
        "gamma",
        "alpha",
        "msteps",
        "temperature",
        "forget_batch_size",
        "lr",
        "weight_decay",
        "momentum",
        "batch_size",
        "epochs",
    }
    res = unlearn_request(cnn, data, "random:0.2", "scrub", device=CPU, quiet=True, options={})
    ex = res.report["method_extra"]
    assert ex["lr_per_epoch"] == pytest.approx([5e-4, 5e-4, 5e-5, 5e-5, 5e-7])  # milestones int(.5E),int(.8E),int(.9E)
    assert ex["max_steps"] == 3 and len(ex["min_losses"]) == 5 and len(ex["forget_errors"]) == 6
    assert step_decay_lr(1, 1, 1.0, 0.1) == pytest.approx(1e-3)  # the port's rule for E = 1


def _scripted(monkeypatch, forget_wrong, val_wrong):
    calls, snaps = [], []
    seq = list(forget_wrong) + [val_wrong]
    real_snapshot = scrub_mod.snapshot

    def wrong_count(model, x, y, batch_size=1024):
        calls.append(len(y))
        return seq[len(calls) - 1]

    def snapshot(model):
        s = real_snapshot(model)
        snaps.append(s)
        return s

    monkeypatch.setattr(scrub_mod, "wrong_count", wrong_count)
    monkeypatch.setattr(scrub_mod, "snapshot", snapshot)
    return calls, snaps


def test_scrub_rewinds_to_the_epoch_whose_forget_error_is_closest_to_the_forget_class_validation_error(
    setup, monkeypatch
):
    data, cnn, _ = setup
    opts = {"epochs": 4, "lr": 0.01}
    # 34 forget images of class 1, 6 validation images of class 1: v = 2/6; errors 0, 5, 11, 20, 30 (/34) -> epoch 2
    calls, snaps = _scripted(monkeypatch, [0, 5, 11, 20, 30], 2)
    res = unlearn_request(cnn, data, "class:1", "scrub", device=CPU, quiet=True, options=opts)
    ex = res.report["method_extra"]
    assert calls == [34] * 5 + [6]  # forget error before training and after each epoch, then the final val error
    assert ex["selected_epoch"] == 2 and ex["forget_val_error"] == pytest.approx(1 / 3) and len(snaps) == 3
    state = res.model.state_dict()
    assert all(torch.equal(state[k], snaps[1][k]) for k in state)  # the epoch-2 snapshot, not the final model
    assert not all(torch.equal(state[k], snaps[2][k]) for k in state)
    monkeypatch.undo()
    final = unlearn_request(cnn, data, "class:1", "scrub", device=CPU, quiet=True, options={**opts, "rewind": False})
    assert not all(torch.equal(state[k], v) for k, v in final.model.state_dict().items())


def test_scrub_picking_the_original_returns_it_unless_reference_bug(setup, monkeypatch):
    data, cnn, _ = setup
    opts = {"epochs": 2, "lr": 0.01}
    final = unlearn_request(cnn, data, "class:1", "scrub", device=CPU, quiet=True, options={**opts, "rewind": False})
    _scripted(monkeypatch, [10, 20, 25], 2)  # 10/34 is the closest to 2/6 -> index 0, the original
    res = unlearn_request(cnn, data, "class:1", "scrub", device=CPU, quiet=True, options=opts)
    assert res.report["method_extra"]["picked_index"] == 0
    assert all(torch.equal(v, cnn.state_dict()[k]) for k, v in res.model.state_dict().items())
    _scripted(monkeypatch, [10, 20, 25], 2)
    bug = unlearn_request(
        cnn, data, "class:1", "scrub", device=CPU, quiet=True, options={**opts, "reference_bug": True}
    )
    assert bug.report["method_extra"]["selected_epoch"] == 2
    assert all(torch.equal(v, final.model.state_dict()[k]) for k, v in bug.model.state_dict().items())


def test_scrub_without_a_validation_split_returns_the_final_model(setup):
    data, cnn, _ = setup
    no_val = dataclasses.replace(data, val=None, val_source_indices=None)
    opts = {"epochs": 1, "lr": 0.01}
    res = unlearn_request(cnn, no_val, "class:1", "scrub", device=CPU, quiet=True, options=opts)
    off = unlearn_request(cnn, no_val, "class:1", "scrub", device=CPU, quiet=True, options={**opts, "rewind": False})
    assert res.report["method_extra"]["rewind"].startswith("skipped: no validation split")
    assert all(torch.equal(v, off.model.state_dict()[k]) for k, v in res.model.state_dict().items())


# ---------------------------------------------------------------------------------------------------- all three
def test_all_three_run_on_an_mlp(setup):
    data, _, mlp = setup
    before = _params(mlp)
    r = unlearn_request(
        mlp, data, "class:2", "srl", device=CPU, quiet=True, options={"epochs": 3, "batch_size": 32, "lr": 0.01}
    )
    assert r.report["forget_acc"] < evaluate(mlp, *_forget(data, r)).accuracy
    s = unlearn_request(
        mlp,
        data,
        "class:2",
        "salun",
        device=CPU,
        quiet=True,
        options={"epochs": 2, "batch_size": 32, "threshold": 0.2, "weight_decay": 0.01, "momentum": 0.9},
    )
    x, y = _forget(data, s)
    mask = salun_mod.saliency_mask(salun_mod.forget_gradient(mlp, x, y, batch_size=32), 0.2)
    after = _params(s.model)
    assert len(mask) == 6  # three linear layers, weights and biases, ranked together
    assert all(torch.equal(after[k][~mask[k].bool()], before[k][~mask[k].bool()]) for k in mask)
    c = unlearn_request(mlp, data, "class:2", "scrub", device=CPU, quiet=True, options={"epochs": 2, "lr": 0.01})
    assert c.report["method_extra"]["max_steps"] == 2 and c.report["method_extra"]["rewind"]


def test_bad_options_are_refused(setup):
    data, cnn, _ = setup
    for method, opts, match in [
        ("salun", {"threshold": 1.5}, "threshold"),
        ("salun", {"restore_masked": 1}, "restore"),
        ("scrub", {"temperature": 0.0}, "temperature"),
        ("scrub", {"msteps": -1}, "msteps"),
        ("scrub", {"forget_batch_size": 0}, "forget_batch_size"),
        ("srl", {"epochs": 0}, "epochs"),
        ("srl", {"lr": -1.0}, "lr"),
    ]:
        with pytest.raises(ConfigError, match=match):
            unlearn_request(cnn, data, "class:1", method, device=CPU, quiet=True, options=opts)
    assert set(METHODS.get("srl").space) == {"lr", "weight_decay", "momentum", "batch_size", "epochs"}
    assert set(METHODS.get("salun").space) == {"threshold", "lr", "weight_decay", "momentum", "batch_size", "epochs"}
