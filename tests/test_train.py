import pytest
import torch

from dcforget.errors import ConfigError, UnknownNameError
from dcforget.train import SCHEDULES, TrainConfig, as_unit, batch_bounds, build_model, evaluate, fit, train_on

CPU = torch.device("cpu")


def test_training_learns_the_synthetic_task(tiny):
    cfg = TrainConfig(epochs=6, batch_size=32, lr=3e-3)
    trained = train_on(tiny, "convnet", cfg, seed=0, device=CPU, quiet=True)
    assert trained.test_eval.accuracy >= 0.9
    assert trained.history.epochs[-1]["loss"] < trained.history.epochs[0]["loss"]
    assert len(trained.history.epochs) == 6 and all(r["seconds"] > 0 for r in trained.history.epochs)
    assert "test_acc" in trained.history.epochs[-1]


def test_untrained_model_is_near_chance(tiny):
    m = build_model("convnet", tiny, seed=0)
    assert evaluate(m, tiny.test.images, tiny.test.labels).accuracy < 0.6


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_same_seed_same_weights_different_seed_different(tiny, arch):
    cfg = TrainConfig(epochs=1, batch_size=16)
    a = train_on(tiny, arch, cfg, seed=1, device=CPU, quiet=True).model.state_dict()
    b = train_on(tiny, arch, cfg, seed=1, device=CPU, quiet=True).model.state_dict()
    c = train_on(tiny, arch, cfg, seed=2, device=CPU, quiet=True).model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a if a[k].is_floating_point())


def test_seeded_training_leaves_global_rng_alone(tiny):
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_on(tiny, "mlp", TrainConfig(epochs=1), seed=0, device=CPU, quiet=True)
    assert torch.equal(torch.rand(3), expected)


def test_bf16_sgd_cosine_and_float_inputs(tiny):
    m = build_model("cnn", tiny, seed=0)
    x = as_unit(tiny.train.images)
    cfg = TrainConfig(epochs=4, batch_size=32, optimizer="sgd", lr=0.05, schedule="cosine", bf16=True)
    h = fit(m, x, tiny.train.labels, cfg, device=CPU, quiet=True)
    assert h.epochs[-1]["acc"] > 0.6
    res = evaluate(m, tiny.test.images, tiny.test.labels, bf16=True)
    assert res.losses.shape == (40,) and res.losses.dtype == torch.float32


def test_evaluate_returns_per_sample_losses_matching_mean(tiny):
    m = build_model("mlp", tiny, seed=0).eval()
    res = evaluate(m, tiny.train.images, tiny.train.labels, batch_size=7)
    with torch.no_grad():
        full = torch.nn.functional.cross_entropy(m(as_unit(tiny.train.images)), tiny.train.labels)
    assert len(res) == len(tiny.train) == 104  # 4 x 30, less 4 x 4 in the validation split
    assert torch.isclose(res.losses.mean(), full, atol=1e-5)
    assert res.accuracy == pytest.approx(float((res.predictions == tiny.train.labels).float().mean()))


def test_schedules_shape():
    assert SCHEDULES.get("constant")(50, 100) == 1.0
    assert SCHEDULES.get("cosine")(100, 100) == pytest.approx(0.0)
    assert SCHEDULES.get("step")(0, 100) == 1.0 and SCHEDULES.get("step")(80, 100) == pytest.approx(0.01)


@pytest.mark.parametrize(
    "kw, err",
    [
        ({"epochs": 0}, ConfigError),
        ({"lr": -1.0}, ConfigError),
        ({"batch_size": 0}, ConfigError),
        ({"optimizer": "lbfgs"}, UnknownNameError),
        ({"schedule": "warm"}, UnknownNameError),
        ({"batches": "drop_last"}, ConfigError),
    ],
)
def test_bad_train_config(kw, err):
    with pytest.raises(err):
        TrainConfig(**kw)
    with pytest.raises(ConfigError, match="unknown training option"):
        TrainConfig.from_dict({"epoch": 3})


def _sizes(bounds):
    return [b - a for a, b in zip(bounds[:-1], bounds[1:])]


@pytest.mark.parametrize("n", [1, 2, 255, 256, 257, 511, 513, 2125, 42490, 42500])
def test_even_batches_never_end_on_a_tiny_batch(n):
    """The default cut: ceil(n / batch) batches within one row of each other (42,500 images at batch 256: 167
    batches of 254-255, not 166 x 256 + 4); the partial cut is the reference loaders' (full batches and the
    remainder), a remainder of one joined to the batch before it."""
    even, partial = _sizes(batch_bounds(n, 256)), _sizes(batch_bounds(n, 256, "partial"))
    assert sum(even) == sum(partial) == n
    assert len(even) == -(-n // 256) and max(even) - min(even) <= 1 and max(even) <= 256
    full, rest = divmod(n, 256)
    expected = [256] * full + ([rest] if rest else [])
    if len(expected) > 1 and expected[-1] == 1:
        expected = expected[:-2] + [257]
    assert partial == expected
    assert _sizes(batch_bounds(42500, 256, "partial"))[-1] == 4 and min(_sizes(batch_bounds(42500, 256))) == 254
    assert batch_bounds(0, 256) == [0]
    for odd in (3, 5, 7):  # batch 2: never a batch of one (batch norm cannot train on it)
        assert min(_sizes(batch_bounds(odd, 2))) >= 2 and sum(_sizes(batch_bounds(odd, 2))) == odd
    assert _sizes(batch_bounds(3, 1)) == [1, 1, 1]  # batch 1 asked for: per-sample steps
    with pytest.raises(ConfigError, match="batches must be"):
        batch_bounds(n, 256, "drop_last")


@pytest.mark.parametrize("cut, sizes", [("even", [14, 14, 14]), ("partial", [16, 16, 10])])
def test_fit_cuts_every_epoch_as_configured(tiny, cut, sizes):
    seen = []

    def spy(logits, x, idx):
        seen.append(len(idx))
        return logits.sum() * 0

    x, y = tiny.train.images[:42], tiny.train.labels[:42]
    fit(
        build_model("mlp", tiny, 0),
        x,
        y,
        TrainConfig(epochs=2, batch_size=16, batches=cut),
        device=torch.device("cpu"),
        extra_loss=spy,
        quiet=True,
    )
    assert seen == sizes * 2


def test_the_methods_own_loops_keep_the_reference_loaders_cut():
    """Ports of references cut as their DataLoaders do (full batches and the remainder); ``fit`` cuts even."""
    from unlearn.methods.common import num_batches, shuffled_batches

    parts = shuffled_batches(42, 16, torch.Generator().manual_seed(0), torch.device("cpu"))
    assert [len(p) for p in parts] == [16, 16, 10] and num_batches(42, 16) == 3
    assert sorted(torch.cat(parts).tolist()) == list(range(42))
    assert [len(p) for p in shuffled_batches(42, 16, torch.Generator(), torch.device("cpu"), "even")] == [14, 14, 14]


def test_label_weight_scales_the_loss_on_the_labels_and_zero_trains_on_the_extra_loss_alone(tiny):
    """One plain SGD step: at label_weight 0.5 every parameter moves half as far as at 1 (with and without sample
    weights); at 0 with an extra loss of zero gradient nothing moves; bad weights and 0 with no extra loss fail."""
    x, y = tiny.train.images[:32], tiny.train.labels[:32]
    cfg = TrainConfig(epochs=1, batch_size=32, optimizer="sgd", momentum=0.0, lr=0.1, schedule="constant")
    start = build_model("mlp", tiny, 0).state_dict()

    def step(weight, **kw):
        m = build_model("mlp", tiny, 0)
        fit(m, x, y, cfg, device=CPU, quiet=True, label_weight=weight, **kw)
        return {k: v - start[k] for k, v in m.state_dict().items() if v.is_floating_point()}

    for kw in ({}, {"sample_weights": torch.linspace(0.5, 2.0, 32)}):
        full, half = step(1.0, **kw), step(0.5, **kw)
        assert any(d.abs().max() > 0 for d in full.values())
        assert all(torch.allclose(half[k], full[k] / 2, atol=1e-6) for k in full)
    still = step(0.0, extra_loss=lambda logits, xb, idx: logits.sum() * 0)
    assert all(d.abs().max() == 0 for d in still.values())
    for bad in (-1.0, float("nan")):
        with pytest.raises(ConfigError, match="label_weight"):
            step(bad)
    with pytest.raises(ConfigError, match="extra loss"):
        step(0.0)
