"""Small erasure requests (issue #33): the default method keeps the model whole for a request that adds a few
images (only a stream request's NEW images count), trains a few gentle steps on the reduced set, and successive small
requests do not compound: retain accuracy stays with retraining's."""

import pytest
import torch

from dcforget.errors import ConfigError
from unlearn.request import unlearn_request

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def setup(memorised_mlp):
    return memorised_mlp  # tests/conftest.py


def _request(model, data, cs, indices, previous=None, method="condensed", tmp=None, **opts):
    path = tmp / f"r{len(previous or [])}-{method}.txt"
    path.write_text("\n".join(map(str, indices)) + "\n")
    return unlearn_request(
        model,
        data,
        f"indices:{path}",
        method,
        device=CPU,
        seed=0,
        options=opts,
        condensed=cs,
        previous_forget=previous,
        quiet=True,
    )


def test_a_small_request_keeps_the_model_and_a_large_one_resets(setup, tmp_path):
    data, mlp, cs = setup
    small = _request(mlp, data, cs, [3, 70], tmp=tmp_path)  # 2 of 204 images: at most 1%
    extra = small.report["method_extra"]
    assert extra["profile"] == "small request" and extra["reset"] == "none" and extra["steps"] == 40
    assert extra["small_request"] == {
        "dsa": False, "teacher": "clean", "lr": 1e-4, "forget_ce": pytest.approx(0.6), "anchor_position": 0.0,
        "label_weight": pytest.approx(1.0), "labels": "hinge",
    }  # fmt: skip
    assert extra["forget_match"] == "neighbours"  # auto: each image up to its own never-seen level
    large = _request(mlp, data, cs, list(range(0, 200, 10)), tmp=tmp_path)  # 20 images: 10%
    assert large.report["method_extra"]["profile"] == "per-sample"
    assert large.report["method_extra"]["forget_match"] == "mean"  # auto on a large request
    assert large.report["method_extra"]["reset"] == "all"  # the MLP's rule for per-sample forgetting
    off = _request(mlp, data, cs, [3, 70], tmp=tmp_path, small_request=0.0)
    assert off.report["method_extra"]["profile"] == "per-sample" and off.report["method_extra"]["reset"] == "all"
    with pytest.raises(ConfigError, match="small_request"):
        _request(mlp, data, cs, [3, 70], tmp=tmp_path, small_request=2.0)


def test_a_small_requests_steps_rate_and_tau_follow_its_new_images_between_the_two_anchors():
    from unlearn.methods import METHODS
    from unlearn.methods.condensed import small_schedule

    o = {**METHODS.get("condensed").defaults, "small_label_weight": 0.25, "small_label_weight_upper": 0.5}
    lo = (o["small_steps"], o["small_lr"], o["small_neighbours_scale"], o["small_label_weight"])
    hi = (o["small_steps_upper"], o["small_lr_upper"], 1.0, o["small_label_weight_upper"])
    assert lo != hi and lo[2] < 1 and lo[3] < hi[3]
    assert small_schedule(o, 1) == pytest.approx(lo) and small_schedule(o, o["small_images"]) == pytest.approx(lo)
    assert small_schedule(o, o["small_images_upper"]) == pytest.approx(hi)
    assert small_schedule(o, 10 * o["small_images_upper"]) == pytest.approx(hi)  # not extrapolated
    between = [small_schedule(o, n) for n in range(o["small_images"], o["small_images_upper"] + 1)]
    assert all(a[0] <= b[0] and a[1] <= b[1] and a[2] <= b[2] for a, b in zip(between, between[1:]))  # monotone
    middle = round((o["small_images"] * o["small_images_upper"]) ** 0.5)  # the geometric middle
    assert small_schedule(o, middle)[1] == pytest.approx((lo[1] * hi[1]) ** 0.5, rel=0.05)
    assert small_schedule(o, middle)[2] == pytest.approx(lo[2] ** 0.5, rel=0.05)
    assert small_schedule(o, middle)[3] == pytest.approx((lo[3] * hi[3]) ** 0.5, rel=0.05)


def test_the_auto_forget_target_is_per_example_on_small_requests_only():
    from unlearn.methods import METHODS
    from unlearn.methods.condensed import forget_target

    o = METHODS.get("condensed").defaults
    assert o["forget_match"] == "auto"
    assert forget_target(o, small=True) == "neighbours" and forget_target(o, small=False) == "mean"
    assert forget_target({**o, "forget_ce_unit": "nats"}, small=True) == "mean"  # neighbours reads validation
    assert forget_target({**o, "forget_match": "mean"}, small=True) == "mean"  # an explicit target is kept
    assert forget_target({**o, "forget_match": "neighbours"}, small=False) == "neighbours"


def test_a_small_request_runs_the_schedule(setup, tmp_path):
    data, mlp, cs = setup
    opts = {"small_request": 0.05, "small_images": 2, "small_images_upper": 8, "small_steps_upper": 10}
    res = _request(mlp, data, cs, [1, 2, 3, 4, 5], tmp=tmp_path, **opts)  # 5 new images: nearer the upper anchor
    extra = res.report["method_extra"]
    assert extra["profile"] == "small request" and 40 > extra["steps"] > 10
    assert 1e-4 < extra["small_request"]["lr"] < 3e-4 and 0.6 < extra["small_request"]["forget_ce"] < 1
    assert extra["forget_match"] == "neighbours"
    for bad, match in (({"small_images": 100}, "small_images"), ({"small_lr_upper": 0}, "small_lr_upper"),
                       ({"small_neighbours_scale": 0}, "small_neighbours_scale"),
                       ({"forget_match": "median"}, "forget_match")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            _request(mlp, data, cs, [1, 2], tmp=tmp_path, **bad)


def test_a_small_requests_forget_batch_moves_from_the_share_to_the_upper_anchors(setup, tmp_path):
    """small_forget_batch_upper: the share of a batch at the lower anchor, N images from the upper one, geometric
    between; an explicit forget_batch wins; a large request keeps the share."""
    data, mlp, cs = setup
    opts = {"small_request": 0.05, "small_images": 2, "small_images_upper": 8, "batch_size": 8}

    def batch(indices, **more):
        return _request(mlp, data, cs, indices, tmp=tmp_path, **{**opts, **more}).report["method_extra"]["forget_batch"]

    two, four, eight = [3, 70], [3, 70, 110, 150], [3, 70, 110, 150, 9, 60, 120, 190]
    assert batch(two, small_forget_batch_upper=6) == batch(two, small_forget_batch_upper=0)  # the lower anchor
    assert batch(eight, small_forget_batch_upper=6) == 6 and batch(eight, small_forget_batch_upper=100) == 8
    share = batch(four, small_forget_batch_upper=0)
    assert share == 1 and batch(four, small_forget_batch_upper=6) == 2  # the geometric middle (linear would be 4)
    assert (
        batch(eight, small_forget_batch_upper=1, batch_size=64)
        == batch(eight, small_forget_batch_upper=0, batch_size=64)
        > 1
    )  # never under the share
    assert batch(eight, small_forget_batch_upper=6, forget_batch=3) == 3
    large = list(range(0, 200, 10))  # 20 images: 10%, past small_request
    assert batch(large, small_forget_batch_upper=6) == batch(large, small_forget_batch_upper=0)
    with pytest.raises(ConfigError, match="small_forget_batch_upper"):
        batch(two, small_forget_batch_upper=-1)


def test_a_small_requests_label_weight_reaches_its_training_and_only_a_small_requests(setup, tmp_path):
    """small_label_weight (lower anchor) and small_label_weight_upper weigh a small request's cross-entropy on the
    reduced set's labels: recorded, they change the model, the upper one only from the lower anchor on; a large
    request ignores both."""
    data, mlp, cs = setup

    def params(res):
        return torch.cat([p.detach().flatten() for p in res.model.parameters()])

    few = [3, 70]  # 2 new images: the lower anchor
    low = _request(mlp, data, cs, few, tmp=tmp_path, small_label_weight=0.25)
    one = _request(mlp, data, cs, few, tmp=tmp_path, small_label_weight=1.0)
    same = _request(mlp, data, cs, few, tmp=tmp_path, small_label_weight=0.25, small_label_weight_upper=0.9)
    assert low.report["method_extra"]["small_request"]["label_weight"] == pytest.approx(0.25)
    assert not torch.equal(params(one), params(low)) and torch.equal(params(low), params(same))
    opts = {"small_request": 0.05, "small_images": 2, "small_images_upper": 8}
    eight = [3, 70, 110, 150, 9, 60, 120, 190]  # the upper anchor
    up = _request(mlp, data, cs, eight, tmp=tmp_path, small_label_weight_upper=0.5, **opts)
    up1 = _request(mlp, data, cs, eight, tmp=tmp_path, small_label_weight_upper=1.0, **opts)
    assert up.report["method_extra"]["small_request"]["label_weight"] == pytest.approx(0.5)
    assert not torch.equal(params(up), params(up1))
    for bad in ({"small_label_weight": 0.0}, {"small_label_weight_upper": -1.0}):
        with pytest.raises(ConfigError, match="small_label_weight"):
            _request(mlp, data, cs, few, tmp=tmp_path, **bad)
    large = list(range(0, 200, 10))  # 20 images: 10%, the per-sample rule
    a = _request(mlp, data, cs, large, tmp=tmp_path)
    b = _request(mlp, data, cs, large, tmp=tmp_path, small_label_weight=0.5, small_label_weight_upper=0.3)
    assert torch.equal(params(a), params(b)) and "small_request" not in b.report["method_extra"]


def test_the_label_hinge_pulls_only_rows_whose_loss_rose_over_the_start_models():
    """small_labels=hinge: the weighted mean of relu(CE - CE of the start model) over the batch, times the weight;
    zero (and no gradient) where the model is the start model, a row whose loss fell adds nothing."""
    from unlearn.methods.condensed import _label_hinge

    torch.manual_seed(0)
    start = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y = torch.rand(6, 3, 2, 2), torch.tensor([0, 1, 2, 0, 1, 2])
    w = torch.tensor([1.0, 2.0, 1.0, 3.0, 1.0, 1.0])
    with torch.no_grad():
        term = _label_hinge(start(x), y, w, 0.5, None)
    idx = torch.tensor([0, 1, 3, 4])
    logits = start(x[idx]).detach().requires_grad_(True)
    loss = term(logits, x[idx], idx)
    loss.backward()
    assert loss.item() == pytest.approx(0.0, abs=1e-6) and float(logits.grad.abs().max()) < 1e-6
    moved = start(x[idx]).detach()
    moved[0, y[0]] -= 2.0  # row 0's loss rises
    moved[2, y[3]] += 2.0  # row 3's loss falls: no pull
    anchor = torch.nn.functional.cross_entropy(start(x), y, reduction="none").detach()
    rise = float(torch.nn.functional.cross_entropy(moved[:1], y[:1]) - anchor[0])
    assert rise > 0
    assert float(term(moved, x[idx], idx)) == pytest.approx(0.5 * float(w[0]) * rise / float(w[idx].sum()), rel=1e-4)
    with torch.no_grad():
        base = _label_hinge(start(x), y, w, 0.5, lambda lg, xb, i: torch.tensor(1.5))  # composes with an extra loss
    assert float(base(moved, x[idx], idx)) == pytest.approx(1.5 + float(term(moved, x[idx], idx)), rel=1e-5)


def test_the_label_hold_pulls_rows_whose_loss_fell_back_up_too():
    """small_labels=hold: |CE - CE of the start model| -- zero at the start, and a row whose loss fell under its
    start (no pull under the hinge) adds as much as a row whose loss rose by the same amount."""
    from unlearn.methods.condensed import _label_hinge

    torch.manual_seed(0)
    start = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))
    x, y, w = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0]), torch.tensor([1.0, 2.0, 1.0, 3.0])
    with torch.no_grad():
        hold = _label_hinge(start(x), y, w, 0.5, None, hold=True)
        hinge = _label_hinge(start(x), y, w, 0.5, None)
    idx = torch.arange(4)
    assert float(hold(start(x).detach(), x, idx)) == pytest.approx(0.0, abs=1e-6)
    anchor = torch.nn.functional.cross_entropy(start(x), y, reduction="none").detach()
    moved = start(x).detach()
    moved[3, y[3]] += 2.0  # row 3's loss falls
    fall = float(anchor[3] - torch.nn.functional.cross_entropy(moved[3:], y[3:]))
    assert fall > 0 and float(hinge(moved, x, idx)) == pytest.approx(0.0, abs=1e-6)
    assert float(hold(moved, x, idx)) == pytest.approx(0.5 * 3.0 * fall / float(w.sum()), rel=1e-4)


def test_forget_draw_new_pushes_only_the_requests_new_images(setup, tmp_path):
    """forget_draw=new: a stream request's forget term draws from its new images only (its batch is capped by
    them); the default draws from everything forgotten so far. Recorded; a refused value is one ConfigError."""
    data, mlp, cs = setup
    earlier = list(range(0, 200, 10))  # 20 already forgotten
    every = _request(mlp, data, cs, [5, 15], previous=earlier, tmp=tmp_path, forget_batch=64)
    new = _request(mlp, data, cs, [5, 15], previous=earlier, tmp=tmp_path, forget_batch=64, forget_draw="new")
    assert every.report["method_extra"]["forget_batch"] == 22 and every.report["method_extra"]["forget_draw"] == "all"
    assert new.report["method_extra"]["forget_batch"] == 2 and new.report["method_extra"]["forget_draw"] == "new"
    rank = _request(mlp, data, cs, [5, 15], previous=earlier, tmp=tmp_path, forget_match="rank", forget_draw="new")
    assert rank.report["method_extra"]["forget_match"] == "rank"  # runs: the rank mask is over the drawn images
    with pytest.raises(ConfigError, match="forget_draw"):
        _request(mlp, data, cs, [5, 15], previous=earlier, tmp=tmp_path, forget_draw="old")


def test_small_labels_and_label_decay_reach_a_small_requests_training(setup, tmp_path):
    """small_labels=hinge replaces the cross-entropy on the labels (recorded, a different model); small_label_decay
    =sqrt divides the label weight by the square root of the stream's position (everything forgotten over the new
    images); a large request ignores both. The hinge is the registered default."""
    from unlearn.methods.condensed import stream_position

    data, mlp, cs = setup

    def params(res):
        return torch.cat([p.detach().flatten() for p in res.model.parameters()])

    few = [3, 70]
    fit = _request(mlp, data, cs, few, tmp=tmp_path, small_labels="fit")
    hinge = _request(mlp, data, cs, few, tmp=tmp_path)  # the default
    assert fit.report["method_extra"]["small_request"]["labels"] == "fit"
    assert hinge.report["method_extra"]["small_request"]["labels"] == "hinge"
    assert not torch.equal(params(fit), params(hinge))
    earlier = list(range(0, 200, 10))  # 20 already forgotten, 1 new: position 21
    later = _request(
        mlp, data, cs, [5], previous=earlier, tmp=tmp_path, small_label_decay="sqrt", small_label_weight=0.4
    )
    assert later.report["method_extra"]["small_request"]["label_weight"] == pytest.approx(0.4 / 21**0.5)
    first = _request(mlp, data, cs, [5], tmp=tmp_path, small_label_decay="sqrt", small_label_weight=0.4)  # position 1
    assert first.report["method_extra"]["small_request"]["label_weight"] == pytest.approx(0.4)
    ctx = type("C", (), {"split": type("S", (), {"forget": torch.arange(30)})(), "new_forget_count": lambda s: 10})()
    assert stream_position(ctx) == 3.0
    large = list(range(0, 200, 10))
    a = _request(mlp, data, cs, large, tmp=tmp_path)
    b = _request(mlp, data, cs, large, tmp=tmp_path, small_labels="fit", small_label_decay="sqrt")
    assert torch.equal(params(a), params(b)) and "small_request" not in b.report["method_extra"]


def test_the_tau_scale_applies_once_and_to_the_per_example_target_only(setup, tmp_path):
    data, mlp, cs = setup
    few = [3, 70]  # 2 new images: the lower anchor, scale small_neighbours_scale
    auto = _request(mlp, data, cs, few, tmp=tmp_path, forget_ce=0.5).report["method_extra"]
    assert auto["forget_match"] == "neighbours" and auto["small_request"]["forget_ce"] == pytest.approx(0.3)
    mean = _request(mlp, data, cs, few, tmp=tmp_path, forget_ce=0.5, forget_match="mean").report["method_extra"]
    assert mean["forget_match"] == "mean" and mean["small_request"]["forget_ce"] == pytest.approx(0.5)  # kept
    nats = _request(mlp, data, cs, few, tmp=tmp_path, forget_ce=2.0, forget_ce_unit="nats").report["method_extra"]
    assert nats["forget_match"] == "mean" and nats["forget_tau"] == pytest.approx(2.0)  # no validation: no scale
    large = _request(mlp, data, cs, list(range(0, 200, 10)), tmp=tmp_path, forget_ce=2.0, forget_ce_unit="nats")
    assert large.report["method_extra"]["forget_tau"] == pytest.approx(2.0)


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"small_neighbours_scale": -1}, "small_neighbours_scale"),
        ({"forget_match": "median"}, "forget_match"),
        ({"keep": 1.5}, "keep"),
        ({"min_steps": -3}, "min_steps"),
        ({"reset": "everything"}, "reset"),
        ({"small_forget_batch_upper": -1}, "small_forget_batch_upper"),
        ({"small_label_weight": -0.5}, "small_label_weight"),
        ({"small_label_weight_upper": 0}, "small_label_weight_upper"),
        ({"small_labels": "soft"}, "small_labels"),
        ({"small_label_decay": "linear"}, "small_label_decay"),
        ({"large_request": "shrink"}, "large_request"),
        ({"large_pushes": 0}, "large_pushes"),
        ({"large_lr": -1e-3}, "large_lr"),
        ({"large_forget_batch": 0}, "large_forget_batch"),
        ({"forget_push": "margin"}, "forget_push"),
    ],
)
def test_a_whole_class_request_checks_every_option_too(setup, tmp_path, bad, match):
    data, mlp, cs = setup
    whole = (data.train.labels == 0).nonzero().flatten().tolist()  # class 0: no forget term runs
    with pytest.raises(ConfigError, match=match):
        _request(mlp, data, cs, whole, tmp=tmp_path, **bad)


def test_a_large_request_kept_whole_gives_each_new_image_its_pushes(setup, tmp_path):
    """``large_request=keep``: a large per-sample request keeps the model whole, trains without DSA on a clean
    teacher at ``large_lr``, pushes on the confidence (``forget_push`` auto), and runs ``ceil(large_pushes * new /
    batch)`` steps. On this memorised MLP it brings FA down and keeps RA, where the registered ``reset`` rule leaves FA
    where it was."""
    data, mlp, cs = setup
    first = list(range(0, 200, 10))  # 20 of 204 images: a large request
    kept = _request(mlp, data, cs, first, tmp=tmp_path, large_request="keep", large_pushes=3, large_forget_batch=8)
    extra = kept.report["method_extra"]
    assert extra["profile"] == "per-sample, kept whole" and extra["reset"] == "none"
    assert extra["steps"] == 8 and extra["forget_batch"] == 8  # ceil(3 * 20 / 8)
    assert (extra["forget_push"], extra["forget_match"]) == ("confidence", "neighbours")
    assert extra["large_request"] == {
        "dsa": False, "teacher": "clean", "lr": 1e-3, "forget_batch": 8, "forget_ce": 1.0,
    }  # fmt: skip
    (tmp_path / "r").mkdir()
    reset = _request(mlp, data, cs, first, tmp=tmp_path / "r")
    assert reset.report["method_extra"]["profile"] == "per-sample"
    assert reset.report["method_extra"]["forget_push"] == "loss"  # auto: the loss wherever the model is reset
    assert kept.report["retain_acc"] >= 0.99 and kept.report["forget_acc"] < 0.5  # forgets, and keeps the rest
    assert reset.report["forget_acc"] > 0.9  # what the registered rule (reset, mean target, loss push) leaves here
    changed = any(not torch.equal(a, b) for a, b in zip(kept.model.state_dict().values(), mlp.state_dict().values()))
    assert changed
    # a stream's second request: only its new images set the steps; the batch is capped by the forget set
    second = list(range(5, 205, 10))
    nxt = _request(kept.model, data, cs, second, previous=first, tmp=tmp_path, large_request="keep", large_pushes=3)
    assert nxt.report["forget_size"] == 40 and nxt.report["method_extra"]["forget_batch"] == 40
    assert nxt.report["method_extra"]["steps"] == 2  # ceil(3 * 20 / 40)
    drawn = _request(
        kept.model, data, cs, second, previous=first, tmp=tmp_path, large_request="keep", large_pushes=3,
        forget_draw="new",
    )  # fmt: skip
    assert drawn.report["method_extra"]["forget_batch"] == 20  # the batch is capped by the new images it draws
    assert drawn.report["method_extra"]["steps"] == 3  # ceil(3 * 20 / 20): still 3 pushes per new image
    given = _request(mlp, data, cs, first, tmp=tmp_path, large_request="keep", forget_push="loss", steps=5)
    assert given.report["method_extra"]["forget_push"] == "loss" and given.report["method_extra"]["steps"] == 5


def test_only_a_stream_requests_new_images_count(setup, tmp_path):
    data, mlp, cs = setup
    earlier = list(range(0, 200, 10))  # 20 images already forgotten: the cumulative set is 10% of the training set
    res = _request(mlp, data, cs, [5], previous=earlier, tmp=tmp_path)
    assert res.report["forget_size"] == 21 and res.report["method_extra"]["profile"] == "small request"


def test_five_successive_small_requests_do_not_compound(setup, tmp_path):
    """RA after each of 5 two-image requests stays within 1 point of the original's (retraining without 10 of 204
    images keeps its retain accuracy); the per-sample rule re-initialises the MLP on every request and loses it."""
    data, mlp, cs = setup
    g = torch.Generator().manual_seed(0)
    order = torch.randperm(len(data.train), generator=g).tolist()
    original_ra = float((mlp.eval()(data.train.images.float() / 255).argmax(1) == data.train.labels).float().mean())
    model, old_model, previous, ras, old = mlp, mlp, [], [], []
    legacy_dir = tmp_path / "legacy"  # the per-sample rule's index files, beside the small rule's
    legacy_dir.mkdir()
    for r in range(5):
        chunk = order[2 * r : 2 * r + 2]
        res = _request(model, data, cs, chunk, previous=previous, tmp=tmp_path)
        assert res.report["method_extra"]["profile"] == "small request"
        ras.append(res.report["retain_acc"])
        legacy = _request(old_model, data, cs, chunk, previous=previous, tmp=legacy_dir, small_request=0.0)
        old.append(legacy.report["retain_acc"])
        model, old_model, previous = res.model, legacy.model, previous + chunk
    assert all(abs(ra - original_ra) <= 0.01 + 1e-6 for ra in ras), (original_ra, ras)
    assert old[-1] < original_ra - 0.05, (original_ra, old)  # the per-sample rule compounds


def test_a_one_image_request_is_answered_and_its_mia_is_not_defined(setup, tmp_path):
    data, mlp, cs = setup
    res = _request(mlp, data, cs, [5], tmp=tmp_path)  # a person asks to remove one image: no traceback
    rep = res.report
    assert rep["forget_size"] == 1 and rep["method_extra"]["profile"] == "small request"
    assert rep["mia"] is None and rep["val_mia"] is None and rep["indiscernibility"] is None
    assert rep["retain_acc"] is not None and rep["test_acc"] is not None


def test_rank_transport_keeps_a_rank_and_moves_it_onto_the_never_seen_losses():
    from unlearn.methods.condensed import logit_of_loss, rank_transport

    seen = torch.tensor([0.01, 0.02, 0.03, 0.04])  # memorised: small losses
    heldout = torch.linspace(0.5, 4.5, 101)  # never seen: large ones
    got = rank_transport(torch.tensor([0.0, 0.025, 0.5]), seen, heldout)
    assert got.tolist() == pytest.approx(torch.quantile(heldout, torch.tensor([0.1, 0.5, 0.9])).tolist())
    assert (got.diff() > 0).all()  # order kept
    ce = torch.tensor([1e-4, 0.1, 0.693147, 3.0])
    phi = logit_of_loss(ce)
    p = torch.exp(-ce)
    assert phi.tolist() == pytest.approx(torch.log(p / (1 - p)).tolist(), rel=1e-4, abs=1e-5)
    assert torch.nn.functional.softplus(-phi).tolist() == pytest.approx(ce.tolist(), rel=1e-4, abs=1e-6)


def test_the_rank_target_and_the_push_on_the_confidence(setup, tmp_path):
    data, mlp, cs = setup
    few = [3, 70]

    def confidence(res):
        x, y = data.train.images[few], data.train.labels[few]
        with torch.no_grad():
            out = res.model.eval()(x.float().div(255) if x.dtype == torch.uint8 else x)
        true = out.gather(1, y[:, None]).squeeze(1)
        return float((true - out.scatter(1, y[:, None], float("-inf")).logsumexp(1)).mean())

    on_loss = _request(mlp, data, cs, few, tmp=tmp_path, forget_match="rank", forget_ce=3.0)
    on_conf = _request(mlp, data, cs, few, tmp=tmp_path, forget_match="rank", forget_ce=3.0, forget_push="confidence")
    assert on_loss.report["method_extra"]["forget_match"] == "rank" == on_conf.report["method_extra"]["forget_match"]
    assert "forget_match_fallback" not in on_conf.report["method_extra"]
    assert on_conf.report["method_extra"]["forget_push"] == "confidence"
    assert on_loss.report["method_extra"]["forget_push"] == "loss"
    # the loss hinge barely moves memorised images; on the confidence the push does not vanish
    assert confidence(on_conf) < confidence(on_loss) - 0.5
    for bad, match in (({"forget_push": "logit"}, "forget_push"),
                       ({"forget_match": "rank", "forget_ce_unit": "nats"}, "validation")):  # fmt: skip
        with pytest.raises(ConfigError, match=match):
            _request(mlp, data, cs, few, tmp=tmp_path, **bad)


def test_the_rank_target_holds_an_earlier_requests_images_where_they_are(setup, tmp_path):
    """A stream: an image forgotten by an earlier request is no longer trained on, so its rank among trained images
    would send it to the tail of the never-seen losses on every later request; it is held at its current loss."""
    data, mlp, cs = setup

    def confidence(model, i):
        x, y = data.train.images[[i]], data.train.labels[[i]]
        with torch.no_grad():
            out = model.eval()(x.float().div(255) if x.dtype == torch.uint8 else x)
        return float(out[0, y[0]] - out[0].scatter(0, y, float("-inf")).logsumexp(0))

    opts = dict(forget_match="rank", forget_push="confidence", forget_ce=3.0, forget_weight=1.0)
    opts |= dict(
        small_labels="fit", small_label_weight=1.0, small_label_weight_upper=1.0
    )  # full labels anchor the rest
    first = _request(mlp, data, cs, [3], tmp=tmp_path, **opts)
    second = _request(first.model, data, cs, [3, 70], previous=[3], tmp=tmp_path, **opts)
    assert second.report["method_extra"]["forget_match"] == "rank"
    assert confidence(second.model, 3) > confidence(first.model, 3) - 1.0


def test_a_policy_search_picks_the_large_request_rule():
    """Both large-request rules and the kept rule's pushes are in condensed's search space, so `experiments tune
    --policy large` chooses the rule per setting (optuna distributions, as a study draws them)."""
    from experiments.hpsearch import distributions
    from unlearn.methods import METHODS

    dists, _ = distributions(METHODS.get("condensed").space, 30)
    assert tuple(dists["large_request"].choices) == ("reset", "keep")
    pushes = dists["large_pushes"]
    assert (pushes.low, pushes.high, pushes.log) == (3.0, 20.0, True)
    assert METHODS.get("condensed").defaults["large_pushes"] == 9.0  # the registered value lies inside the range
