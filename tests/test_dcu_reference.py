"""DC-U's offline phase and online modular unlearning on generated data."""

import pytest
import torch
from click.testing import CliRunner

from condense.build import build_condensed
from dcforget.checkpoint import load_checkpoint
from dcforget.datasets import load_data
from dcforget.errors import ConfigError
from dcforget.forget import ForgetSpec
from dcforget.train import TrainConfig, train_on
from unlearn.cli import main as unlearn_main
from unlearn.offline import offline_phase, remembrance_set
from unlearn.request import unlearn_request

CPU = torch.device("cpu")
SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"


@pytest.fixture(scope="module")
def setup():
    data = load_data(SPEC, per_class=32, seed=0)
    model = train_on(data, "cnn", TrainConfig(epochs=6, batch_size=32), seed=0, device=CPU, quiet=True).model
    return data, model


def _same(a, b):
    return all(torch.equal(x, y) for x, y in zip(a.parameters(), b.parameters()))


def test_remembrance_sources(setup):
    data, _ = setup
    held = remembrance_set(data, 3, "heldout", seed=0)
    assert len(held.labels) == 12 and torch.bincount(held.labels).tolist() == [3] * 4
    assert not set(held.indices.tolist()) & set(data.source_indices.tolist())  # never a training image
    test = remembrance_set(data, 2, "test", seed=0)
    assert torch.equal(test.images, data.test.images[test.indices])
    with pytest.raises(ConfigError, match="held-out"):
        remembrance_set(data, 9, "heldout", seed=0)
    with pytest.raises(ConfigError):
        remembrance_set(data, 2, "train", seed=0)


def test_offline_phase_moves_final_and_intermediate_only(setup):
    data, model = setup
    rem = remembrance_set(data, 3, "heldout", seed=0)
    off = offline_phase(
        model,
        data,
        rem,
        {"iterations": 2, "final_epochs": 3, "intermediate_epochs": 1, "lr_final": 1e-2, "lr_intermediate": 1e-3},
        device=CPU,
        quiet=True,
    )
    b0, i0, f0 = model.split()
    b1, i1, f1 = off.split()
    assert _same(b0, b1) and not _same(i0, i1) and not _same(f0, f1)
    assert all(p.requires_grad for p in off.parameters())


def _online(data, model, options):
    """dcu-reference on a random 10% request, with a 2-step FDM file and 3 held-out remembrance images per class."""
    rem = remembrance_set(data, 3, "heldout", seed=0)
    cs = build_condensed(data, "fdm", model, device=CPU, clusters=4, options={"steps": 2}, quiet=True).condensed
    art = {"remembrance_images": rem.images, "remembrance_labels": rem.labels}
    res = unlearn_request(
        model, data, "random:0.1", "dcu-reference", device=CPU, condensed=cs, artefacts=art, options=options, quiet=True
    )
    return res, cs, art


@pytest.mark.parametrize("quirks", [False, True])
def test_online_stages_follow_the_schedule(setup, quirks):
    data, model = setup
    # final_thr == overture_epochs: Final is never trained (the reference's class-wise setting)
    res, cs, art = _online(data, model, {"overture_epochs": 2, "final_thr": 2, "reference_quirks": quirks})
    b0, i0, f0 = model.split()
    b1, i1, f1 = res.model.split()
    assert not _same(b0, b1) and not _same(i0, i1) and _same(f0, f1)
    assert res.report["reduced_set"]["passed"]
    res = unlearn_request(
        model,
        data,
        "random:0.1",
        "dcu-reference",
        device=CPU,
        condensed=cs,
        artefacts=art,
        options={"overture_epochs": 2, "final_thr": 1},
        quiet=True,
    )
    assert not _same(f0, res.model.split()[2])
    with pytest.raises(ConfigError, match="unlearn offline"):
        unlearn_request(model, data, "random:0.1", "dcu-reference", device=CPU, condensed=cs)


def test_offline_cli_stores_the_remembrance_set(tmp_path):
    r = CliRunner()
    ck = tmp_path / "o.pt"
    assert (
        r.invoke(unlearn_main, ["train", SPEC, "--per-class", "32", "--epochs", "2", "--out", str(ck), "-q"]).exit_code
        == 0
    )
    res = r.invoke(
        unlearn_main,
        [
            "offline",
            "--checkpoint",
            str(ck),
            "--remembrance-ipc",
            "2",
            "--option",
            "iterations=1",
            "--option",
            "final_epochs=1",
            "--option",
            "intermediate_epochs=1",
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    off = load_checkpoint(tmp_path / "o-offline.pt")
    assert off.tensors["remembrance_images"].shape == (8, 3, 16, 16)
    assert off.meta.offline["remembrance"]["source"] == "heldout" and off.meta.train_fingerprint
    res = r.invoke(unlearn_main, ["offline", "--checkpoint", str(ck), "--option", "speed=1", "--force"])
    assert res.exit_code == 2 and "unknown option" in res.output


def test_class_forgetting_drops_that_class_from_the_remembrance_set(setup):
    data, model = setup
    rem = remembrance_set(data, 3, "heldout", seed=0)
    from unlearn.methods.base import UnlearnContext
    from unlearn.request import cumulative_split

    split = cumulative_split(data, ForgetSpec.parse("class:2"), 0, None)
    ctx = UnlearnContext(
        model, data, split, CPU, 0, {}, artefacts={"remembrance_images": rem.images, "remembrance_labels": rem.labels}
    )
    x, y = ctx.remembrance()
    assert 2 not in y.tolist() and len(y) == 9
    assert 2 in ctx.remembrance(keep_forgotten_classes=True)[1].tolist()


def test_condensed_model_mode_trains_a_fresh_classifier_of_another_architecture(tmp_path):
    from dcforget.models.autoencoder import AutoencoderClassifier

    spec = "synthetic:classes=4,train=40,test=10,size=16,noise=0.5"
    data = load_data(spec, per_class=32, seed=0)
    ae = train_on(data, "convae", TrainConfig(epochs=6, batch_size=32), seed=0, device=CPU, quiet=True).model
    assert isinstance(ae, AutoencoderClassifier) and ae.config["options"]["classifier"] == "convnet"
    rem = remembrance_set(data, 4, "heldout", seed=0)
    off = offline_phase(
        ae,
        data,
        rem,
        {
            "iterations": 2,
            "final_epochs": 5,
            "intermediate_epochs": 1,
            "lr_final": 1e-3,
            "lr_intermediate": 1e-3,
            "final_reinit_each_iter": True,
        },
        device=CPU,
        quiet=True,
    )
    cs = build_condensed(data, "fdm", off, device=CPU, clusters=4, options={"steps": 2}, quiet=True).condensed
    art = {"remembrance_images": rem.images, "remembrance_labels": rem.labels}
    res = unlearn_request(
        off,
        data,
        "class:1",
        "condensed-model",
        device=CPU,
        condensed=cs,
        artefacts=art,
        quiet=True,
        options={
            "overture_epochs": 2,
            "final_epochs": 3,
            "intermediate_epochs": 1,
            "classifier": "mlp",
            "recondense_epochs": 20,
        },
    )
    m = res.model
    assert m.config["options"]["classifier"] == "mlp" and res.report["method_extra"]["classifier"] == "mlp"
    assert res.report["forget_acc"] <= 0.05  # class 1 is in neither the reduced set nor the remembrance set
    # the databank is the unlearned one, shared by the fresh classifier
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert m.databank(x).shape == (2, 3, 16, 16) and 0 <= float(m.databank(x).min())
    plain = train_on(data, "mlp", TrainConfig(epochs=1), seed=0, device=CPU, quiet=True).model
    with pytest.raises(ConfigError, match="convae"):
        unlearn_request(plain, data, "class:1", "condensed-model", device=CPU, condensed=cs, artefacts=art)


# --- reference switches (DC-U cifar10_exps/mlp, commit b6b6a56) ---------------------------------------------------


@pytest.fixture(scope="module")
def mlp_setup():
    data = load_data(SPEC, per_class=32, seed=0)
    model = train_on(data, "mlp", TrainConfig(epochs=4, batch_size=32), seed=0, device=CPU, quiet=True).model
    return data, model


def test_offline_logit_relu_puts_the_relu_on_the_logits_from_the_offline_phase_on(mlp_setup, tmp_path):
    from dcforget.checkpoint import save_checkpoint

    data, model = mlp_setup
    x = data.test.images.float() / 255
    with torch.no_grad():
        assert float(model(x).min()) < 0  # the original is trained without it (DC-U's MLP.forward)
    rem = remembrance_set(data, 3, "heldout", seed=0)
    opts = {"iterations": 1, "final_epochs": 1, "intermediate_epochs": 1}
    off = offline_phase(model, data, rem, {**opts, "logit_relu": True}, device=CPU, quiet=True)
    with torch.no_grad():
        assert float(off(x).min()) >= 0 and float((off(x) == 0).float().mean()) > 0  # clipped, as DC-U's Final
    assert off.config["options"]["logit_relu"] and not model.config["options"]["logit_relu"]
    save_checkpoint(tmp_path / "o.pt", off, {"dataset": "synthetic"})
    back = load_checkpoint(tmp_path / "o.pt").model
    with torch.no_grad():
        assert torch.equal(back(x), off(x))  # the checkpoint rebuilds the ReLU
    plain = offline_phase(model, data, rem, opts, device=CPU, quiet=True)
    with torch.no_grad():
        assert float(plain(x).min()) < 0
    cnn = train_on(data, "cnn", TrainConfig(epochs=1, batch_size=32), seed=0, device=CPU, quiet=True).model
    with pytest.raises(ConfigError, match="logit_relu"):
        offline_phase(cnn, data, rem, {**opts, "logit_relu": True}, device=CPU, quiet=True)


def test_offline_cached_beginning_matches_the_full_forward(mlp_setup):
    data, model = mlp_setup
    rem = remembrance_set(data, 3, "heldout", seed=0)
    opts = {"iterations": 2, "final_epochs": 2, "intermediate_epochs": 2, "lr_intermediate": 1e-3}
    a = offline_phase(model, data, rem, {**opts, "cache_beginning": True}, device=CPU, quiet=True)
    b = offline_phase(model, data, rem, {**opts, "cache_beginning": False}, device=CPU, quiet=True)
    assert not _same(model.split()[1], a.split()[1])
    for p, q in zip(a.parameters(), b.parameters()):
        assert torch.allclose(p, q, atol=1e-5)


def test_settings_take_the_reference_values_of_the_architecture():
    from unlearn.methods.dcu_reference import ARCH_SETTINGS, DEFAULTS, resolve_settings

    mlp = ARCH_SETTINGS["mlp"]
    assert mlp == {"lr_overture": 1e-3, "lr_intermediate": 1e-4, "final_epochs": 15, "final_thr": 15}
    assert resolve_settings(dict(DEFAULTS), "mlp") == DEFAULTS  # default: options as given
    quirks = resolve_settings({**DEFAULTS, "reference_quirks": True}, "mlp")
    assert {k: quirks[k] for k in mlp} == mlp
    assert resolve_settings({**DEFAULTS, "reference_quirks": True}, "convae")["lr_overture"] == DEFAULTS["lr_overture"]
    explicit = resolve_settings({**DEFAULTS, "settings": "mlp", "lr_overture": 5e-4}, "cnn")
    assert explicit["lr_overture"] == 5e-4 and explicit["final_thr"] == 15  # an explicit value wins
    assert resolve_settings({**DEFAULTS, "reference_quirks": True, "settings": "none"}, "mlp") == {
        **DEFAULTS,
        "reference_quirks": True,
        "settings": "none",
    }
    with pytest.raises(ConfigError, match="settings"):
        resolve_settings({**DEFAULTS, "settings": "lenet"}, "mlp")


def test_syn_batch_mean_weighs_each_batch_of_32_equally():
    from unlearn.methods.dcu_reference import _batch_mean_ce

    g = torch.Generator().manual_seed(0)
    logits, y = torch.randn(100, 4, generator=g), torch.randint(0, 4, (100,), generator=g)
    per = torch.nn.functional.cross_entropy(logits, y, reduction="none")
    want = torch.stack([per[:32].mean(), per[32:64].mean(), per[64:96].mean(), per[96:].mean()]).mean()
    assert torch.allclose(_batch_mean_ce(logits, y, None), want)
    assert not torch.allclose(_batch_mean_ce(logits, y, None), per.mean())  # the last 4 weigh a quarter, not 4%


def test_reference_mode_uses_the_mlp_settings_and_a_new_order_every_stage(mlp_setup, monkeypatch):
    import unlearn.methods.dcu_reference as md

    data, model = mlp_setup
    rem = remembrance_set(data, 3, "heldout", seed=0)
    off = offline_phase(
        model,
        data,
        rem,
        {"iterations": 1, "final_epochs": 1, "intermediate_epochs": 1, "logit_relu": True},
        device=CPU,
        quiet=True,
    )
    cs = build_condensed(data, "fdm", off, device=CPU, clusters=4, options={"steps": 2}, quiet=True).condensed
    art = {"remembrance_images": rem.images, "remembrance_labels": rem.labels}
    calls = []
    real_fit = md.fit

    def spy(model_, images, labels, cfg, **kw):
        calls.append((len(labels), cfg.lr, kw["seed"], kw["loss_fn"], kw["optimizer"]))
        return real_fit(model_, images, labels, cfg, **kw)

    monkeypatch.setattr(md, "fit", spy)
    res = unlearn_request(
        off,
        data,
        "random:0.1",
        "dcu-reference",
        device=CPU,
        condensed=cs,
        artefacts=art,
        options={"overture_epochs": 17, "reference_quirks": True},
        quiet=True,
    )
    assert res.report["method_extra"]["settings"]["lr_intermediate"] == 1e-4
    final = [c for c in calls if c[0] == len(rem.labels)]
    assert len(final) == 17 - 15 and all(c[1] == 1e-3 and c[3] is md._batch_mean_ce for c in final)
    assert calls[-1][1] == 1e-4 and len({c[2] for c in calls}) == len(calls)  # a new data order every call
    assert len({id(c[4]) for c in calls}) == 1 and calls[0][4] is not None  # one shared Adam
    with torch.no_grad():
        assert float(res.model(data.test.images.float() / 255).min()) >= 0  # the offline checkpoint's ReLU
    calls.clear()
    unlearn_request(
        off,
        data,
        "random:0.1",
        "dcu-reference",
        device=CPU,
        condensed=cs,
        artefacts=art,
        options={"overture_epochs": 26},
        quiet=True,
    )
    assert calls[0][1] == 3e-3 and all(c[3] is None and c[4] is None for c in calls)  # defaults: CNN values
    assert len([c for c in calls if c[0] == len(rem.labels)]) == 1


def test_fdm_normalized_blend_is_the_reference_average_on_normalised_images(mlp_setup):
    """DC-U's Average (ds_condensation_imrpvDM.py:33-52): free weights (init 1/n) on normalised images, Adam 1e-3,
    loss ||mean phi(x_i) - phi(sum_i w_i x_i)||^2. blend=normalized must give that image (mapped to pixels);
    the pixel-space blend does not."""
    from condense.methods.fdm import fdm_blend

    _, model = mlp_setup
    model = model.eval()
    g = torch.Generator().manual_seed(1)
    x = torch.rand(5, 3, 16, 16, generator=g)
    mean, std = model.normalize.mean, model.normalize.std
    with torch.no_grad():
        target = model.features(x).mean(0, keepdim=True)
    w = torch.full((5,), 0.2, requires_grad=True)  # the reference, in its own (normalised) space
    opt = torch.optim.Adam([w], lr=0.05)
    z = (x - mean) / std
    for _ in range(20):
        s = (w[:, None, None, None] * z).sum(0, keepdim=True)
        loss = ((target - model.features(s * std + mean)) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    ref = ((w.detach()[:, None, None, None] * z).sum(0, keepdim=True)) * std + mean
    owner = torch.zeros(5, dtype=torch.long)
    for p in model.parameters():
        p.requires_grad_(False)
    try:
        ours, wn = fdm_blend(model, x, owner, target, steps=20, lr=0.05, blend="normalized")
        pixel, _ = fdm_blend(model, x, owner, target, steps=20, lr=0.05, blend="unconstrained")
    finally:
        for p in model.parameters():
            p.requires_grad_(True)
    assert torch.allclose(wn, w.detach(), atol=1e-5) and torch.allclose(ours, ref, atol=1e-5)
    assert abs(float(w.detach().sum()) - 1) > 1e-3 and not torch.allclose(pixel, ref, atol=1e-3)


@pytest.mark.parametrize(
    "options, cut",
    [({}, "even"), ({"reference_quirks": True}, "partial"), ({"partial_batches": True}, "partial")],
)
def test_reference_mode_cuts_epochs_as_the_reference_loader(setup, monkeypatch, options, cut):
    """``fit`` cuts even batches; DC-U's DataLoader ends each epoch on the remainder, which reference mode (or the
    ``partial_batches`` quirk alone) reproduces."""
    import unlearn.methods.dcu_reference as dcu

    data, model = setup
    seen, real_fit = set(), dcu.fit
    monkeypatch.setattr(dcu, "fit", lambda m, x, y, cfg, **kw: seen.add(cfg.batches) or real_fit(m, x, y, cfg, **kw))
    _online(data, model, {"overture_epochs": 2, "final_thr": 1, **options})
    assert seen == {cut}


@pytest.mark.parametrize("partial", [False, True])
def test_offline_phase_cuts_epochs_as_asked(setup, monkeypatch, partial):
    """The offline phase cuts even batches unless ``partial_batches`` asks for the reference loader's cut (the
    reproduction's dcu-reference rows do)."""
    import unlearn.offline as off

    data, model = setup
    rem = remembrance_set(data, 3, "heldout", seed=0)
    seen, real_fit = [], off.fit
    monkeypatch.setattr(off, "fit", lambda m, x, y, cfg, **kw: seen.append(cfg.batches) or real_fit(m, x, y, cfg, **kw))
    opts = {"iterations": 1, "final_epochs": 1, "intermediate_epochs": 1, "partial_batches": partial}
    off.offline_phase(model, data, rem, opts, device=CPU, quiet=True)
    assert seen == ["partial" if partial else "even"] * 2
