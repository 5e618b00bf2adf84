import pytest
import torch

from condense.build import build_condensed, method_options
from condense.methods import CONDENSERS
from condense.methods.fdm import bucket_targets, fdm_blend
from dcforget.errors import ConfigError, UnknownNameError
from dcforget.train import TrainConfig, as_unit, embed, train_on

CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def trained(tiny):
    return train_on(tiny, "cnn", TrainConfig(epochs=3, batch_size=32), seed=0, device=CPU, quiet=True).model


def _build(tiny, model, method, **kw):
    kw.setdefault(
        "options",
        {"fdm": {"steps": 10}, "mi": {"epochs": 3, "hidden": [32, 64]}, "dm": {"iterations": 4, "batch_real": 8}}.get(
            method, {}
        ),
    )
    return build_condensed(tiny, method, model, device=CPU, seed=0, quiet=True, **kw).condensed


def _check_common(cs, tiny, per_class):
    assert torch.bincount(cs.labels, minlength=4).tolist() == [per_class] * 4
    assert cs.images.shape == (4 * per_class, 3, 16, 16) and torch.isfinite(cs.images).all()
    assert cs.train_size == len(tiny.train) and cs.train_fingerprint == tiny.fingerprint()
    # every bucket's members share the image's class
    owner = cs.bucket_of_row()
    assert torch.equal(tiny.train.labels[cs.bucket_indices], cs.labels[owner])


@pytest.mark.parametrize("method", ["fdm", "kmeans", "mi"])
def test_bucket_methods_one_image_per_bucket_partitioning_the_class(tiny, trained, method):
    cs = _build(tiny, trained, method, clusters=5)
    _check_common(cs, tiny, 5)
    assert torch.equal(torch.sort(cs.bucket_indices).values, torch.arange(len(tiny.train)))  # a partition
    assert cs.influence == ("global" if method == "mi" else "bucket")


@pytest.mark.parametrize("method", ["random", "herding"])
def test_selection_methods_copy_real_images_that_stand_for_themselves(tiny, trained, method):
    cs = _build(tiny, trained, method, ipc=3)
    _check_common(cs, tiny, 3)
    src = cs.source_indices
    assert (src >= 0).all() and len(torch.unique(src)) == len(src)
    assert torch.equal(cs.images, as_unit(tiny.train.images[src]))
    for j in range(len(cs)):  # each chosen image is in its own bucket
        assert int(src[j]) in cs.bucket(j).tolist()
    if method == "random":  # the pick depends on no image's content: nearest-pick buckets partition the set
        assert cs.influence == "bucket"
        assert torch.equal(torch.sort(cs.bucket_indices).values, torch.arange(len(tiny.train)))
    else:  # herding picks against the class mean: influence "class", each bucket the whole class
        assert cs.influence == "class"
        for j in range(len(cs)):
            assert cs.bucket(j).tolist() == torch.nonzero(tiny.train.labels == cs.labels[j]).flatten().tolist()


def test_kmeans_picks_a_member_of_its_bucket(tiny, trained):
    cs = _build(tiny, trained, "kmeans", clusters=5)
    for j in range(len(cs)):
        assert int(cs.source_indices[j]) in cs.bucket(j).tolist()


def test_herding_first_choice_is_nearest_the_class_mean(tiny, trained):
    cs = _build(tiny, trained, "herding", ipc=2)
    feats = embed(trained, tiny.train.images)
    rows = torch.nonzero(tiny.train.labels == 0).flatten()
    best = rows[((feats[rows] - feats[rows].mean(0)) ** 2).sum(1).argmin()]
    assert int(cs.source_indices[0]) == int(best)


def test_random_is_seeded(tiny, trained):
    a = build_condensed(tiny, "random", trained, device=CPU, seed=0, ipc=3, quiet=True).condensed
    b = build_condensed(tiny, "random", trained, device=CPU, seed=0, ipc=3, quiet=True).condensed
    c = build_condensed(tiny, "random", trained, device=CPU, seed=1, ipc=3, quiet=True).condensed
    assert torch.equal(a.source_indices, b.source_indices) and not torch.equal(a.source_indices, c.source_indices)


def test_dm_buckets_are_whole_classes_and_images_move(tiny, trained):
    cs = _build(tiny, trained, "dm", ipc=2)
    _check_common(cs, tiny, 2)
    assert cs.influence == "class" and torch.equal(
        cs.bucket_sizes(), torch.bincount(tiny.train.labels).repeat_interleave(2)
    )
    init = cs.extra_groups["dm"]["init_indices"]
    assert not torch.allclose(cs.images, as_unit(tiny.train.images[init]))
    assert cs.extra_groups["augmentation"]["siamese"] is True


def test_fdm_batched_equals_a_per_bucket_loop_and_beats_the_plain_mean(tiny, trained):
    """The batched optimisation must give each bucket exactly what optimising it alone gives."""
    trained.eval()
    for p in trained.parameters():
        p.requires_grad_(False)
    feats = embed(trained, tiny.train.images)
    from condense.buckets import kmeans_buckets

    b = kmeans_buckets(feats, tiny.train.labels, 4, 3, seed=0, quiet=True)
    multi = b.sizes > 1
    assert multi.sum() >= 6
    targets = bucket_targets(feats, b)
    members, owner = as_unit(tiny.train.images[b.indices]), b.owner()
    batched, w = fdm_blend(trained, members, owner, targets, steps=15, lr=1e-2)
    for j in range(len(b)):
        if not multi[j]:
            continue  # one-image buckets are copied by the condenser, not optimised (next test)
        rows = b.indices[b.indptr[j] : b.indptr[j + 1]]
        alone, _ = fdm_blend(
            trained,
            as_unit(tiny.train.images[rows]),
            torch.zeros(len(rows), dtype=torch.long),
            targets[j : j + 1],
            steps=15,
            lr=1e-2,
        )
        assert torch.allclose(batched[j], alone[0], atol=1e-5), j
    plain = torch.zeros_like(batched).index_add_(0, owner, members / b.sizes[owner].float()[:, None, None, None])
    loss = lambda imgs: ((trained.features(imgs) - targets) ** 2).sum(1)
    with torch.no_grad():
        assert (loss(batched)[multi] <= loss(plain)[multi] + 1e-6).all()
        assert loss(batched)[multi].sum() < loss(plain)[multi].sum()
    for p in trained.parameters():
        p.requires_grad_(True)


def test_fdm_copies_one_image_buckets_and_is_deterministic(tiny, trained):
    cs = _build(tiny, trained, "fdm", clusters=12)
    single = torch.nonzero(cs.bucket_sizes() == 1).flatten()
    assert len(single) > 0
    for j in single.tolist():
        assert torch.equal(cs.images[j], as_unit(tiny.train.images[cs.bucket(j)[0]]))
    again = _build(tiny, trained, "fdm", clusters=12)
    assert torch.equal(cs.images, again.images)


def test_mi_images_are_classified_as_their_class(tiny, trained):
    cs = _build(tiny, trained, "mi", clusters=2, options={"epochs": 30, "hidden": [64, 128]})
    with torch.no_grad():
        pred = trained.eval()(cs.images).argmax(1)
    assert (pred == cs.labels).float().mean() >= 0.75


def test_bad_requests(tiny, trained):
    with pytest.raises(UnknownNameError):
        build_condensed(tiny, "gan", trained, device=CPU, clusters=2)
    with pytest.raises(ConfigError, match="--clusters"):
        build_condensed(tiny, "fdm", trained, device=CPU)
    with pytest.raises(ConfigError, match="--ipc"):
        build_condensed(tiny, "dm", trained, device=CPU)
    with pytest.raises(ConfigError, match="exceeds the 26 training images"):  # 30 minus 4 for validation
        build_condensed(tiny, "fdm", trained, device=CPU, clusters=31)
    with pytest.raises(ConfigError, match="exceeds the 26 images"):
        build_condensed(tiny, "random", trained, device=CPU, ipc=31)
    with pytest.raises(ConfigError, match="unknown option"):
        method_options("fdm", {"iterations": 3})
    with pytest.raises(ConfigError, match="must be an integer"):
        method_options("fdm", {"steps": "many"})
    assert method_options("fdm", {"steps": "7", "bf16": "true"})["steps"] == 7
    assert method_options("mi", {"hidden": "8,16"})["hidden"] == [8, 16]


def test_registry_lists_every_method():
    assert {"fdm", "mi", "dm", "kmeans", "herding", "random"} <= set(CONDENSERS.names())


def test_fdm_default_blend_stays_in_unit_range_and_the_reference_switch_says_so(tiny, trained, tmp_path):
    import h5py

    from condense.methods.fdm import BLENDS
    from dcforget.condensed_store import write_condensed

    big = {"steps": 30, "lr": 0.05}  # large steps: the reference's free weights push blends out of [0,1]
    free = _build(tiny, trained, "fdm", clusters=3, options={**big, "blend": "unconstrained"})
    assert float(free.images.min()) < 0 or float(free.images.max()) > 1
    assert free.pixel_range == "unconstrained"
    assert (
        CONDENSERS.get("fdm").defaults["blend"] in BLENDS and CONDENSERS.get("fdm").defaults["blend"] != "unconstrained"
    )
    for opts in (big, {**big, "blend": "convex"}, {**big, "blend": "clamp"}):
        cs = _build(tiny, trained, "fdm", clusters=3, options=opts)
        assert 0.0 <= float(cs.images.min()) and float(cs.images.max()) <= 1.0 and cs.pixel_range == "unit", opts
        assert not torch.equal(cs.images, free.images)
    with h5py.File(write_condensed(tmp_path / "free.h5", free)) as f:
        assert f.attrs["pixel_range"] == "unconstrained"
    with h5py.File(write_condensed(tmp_path / "unit.h5", cs)) as f:
        assert f.attrs["pixel_range"] == "unit"
    with pytest.raises(ConfigError, match="blend"):
        _build(tiny, trained, "fdm", clusters=3, options={"steps": 1, "blend": "sigmoid"})


def test_convex_blend_weights_are_a_distribution_per_bucket(tiny, trained):
    feats = embed(trained, tiny.train.images)
    from condense.buckets import kmeans_buckets

    b = kmeans_buckets(feats, tiny.train.labels, 4, 3, seed=0, quiet=True)
    members, owner = as_unit(tiny.train.images[b.indices]), b.owner()
    from dcforget.models import frozen

    with frozen(trained):
        _, w = fdm_blend(trained, members, owner, bucket_targets(feats, b), steps=20, lr=0.05, blend="convex")
    assert (w >= 0).all() and torch.allclose(torch.zeros(len(b)).index_add_(0, owner, w), torch.ones(len(b)), atol=1e-5)
    assert not torch.allclose(w, 1.0 / b.sizes[owner].float())  # they moved
