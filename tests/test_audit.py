"""The independent audit (unlearn.audit) of what an unlearning method is served: it catches leaks injected into the
assembly, including ones the assembly's own audit (unlearn.reduced.audit_reduced) cannot see because it shares the
buggy helper, and a request refuses to train on them."""

import pytest
import torch

import dcforget.train as train_mod
import unlearn.reduced as reduced_mod
import unlearn.request as request_mod
from condense.build import build_condensed
from dcforget.condensed_store import CondensedSet
from dcforget.datasets import load_data
from dcforget.forget import ForgetSpec, ForgetSplit
from dcforget.train import TrainConfig, train_on
from unlearn.audit import ReducedSetLeakError, audit_served
from unlearn.methods import METHODS
from unlearn.methods.base import UnlearnContext
from unlearn.reduced import ReducedSet, assemble_reduced
from unlearn.request import cumulative_split, unlearn_request

CPU = torch.device("cpu")
SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"


def _cs(influence="bucket", source=None, labels=(0, 0, 1, 1)):
    # 10 training images, 4 buckets: {0,1,2} {3,4} {5,6,7} {8,9}
    return CondensedSet(
        images=torch.rand(4, 1, 2, 2),
        labels=torch.tensor(labels),
        bucket_indptr=torch.tensor([0, 3, 5, 8, 10]),
        bucket_indices=torch.arange(10),
        source_indices=torch.tensor(source or [-1, -1, -1, -1]),
        method="fdm",
        dataset="x",
        num_classes=2,
        norm_mean=(0.5,),
        norm_std=(0.5,),
        train_size=10,
        train_fingerprint="f",
        influence=influence,
    )


TRAIN_LABELS = torch.tensor([0, 0, 0, 0, 0, 1, 1, 1, 1, 1])


def _split(forget, n=10):
    f = torch.tensor(sorted(forget), dtype=torch.long)
    keep = torch.ones(n, dtype=torch.bool)
    keep[f] = False
    return ForgetSplit("test", f, torch.nonzero(keep).flatten())


def test_clean_assembly_passes_on_random_requests():
    g = torch.Generator().manual_seed(1)
    n, b = 300, 40
    owner = torch.randint(b, (n,), generator=g)
    counts = torch.bincount(owner, minlength=b)
    keep = counts > 0
    m = int(keep.sum())
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts[keep], 0)])
    cs = CondensedSet(
        torch.rand(m, 1, 2, 2),
        torch.zeros(m, dtype=torch.long),
        indptr,
        torch.argsort(owner),
        torch.full((m,), -1),
        "fdm",
        "x",
        1,
        (0.5,),
        (0.5,),
        n,
        "f",
    )
    for trial in range(5):
        split = _split(torch.randperm(n, generator=g)[: 3 + 20 * trial].tolist(), n)
        r = assemble_reduced(cs, split.forget, n)
        a = audit_served(split, cs, torch.zeros(n, dtype=torch.long), r.real_indices, r.condensed_rows)
        assert a["passed"], a


@pytest.mark.parametrize(
    "influence, source, forget, real, rows, check",
    [
        ("bucket", None, [1], [0, 1, 2], [1, 2, 3], "served_real_not_forgotten"),  # forget image served as itself
        ("bucket", None, [1], [0, 2], [0, 1, 2, 3], "served_buckets_hold_no_forget_sample"),  # touched bucket 0 served
        ("bucket", [-1, 9, -1, -1], [9], [8], [0, 1, 2], "served_sources_not_forgotten"),  # row 1 copies image 9
        ("class", None, [9], [8], [0, 1, 2], "served_influence_scope_untouched"),  # row 2 is class 1, 9 is class 1
        ("global", None, [9], [0, 1, 2, 3, 4, 5, 6, 7, 8], [0], "served_influence_scope_untouched"),
        ("bucket", None, [1], [0, 2], [3], "every_retain_sample_represented"),  # no leak, but 3..7 are dropped
    ],
)
def test_audit_catches_each_kind_of_leak(influence, source, forget, real, rows, check):
    a = audit_served(_split(forget), _cs(influence, source), TRAIN_LABELS, torch.tensor(real), torch.tensor(rows))
    assert a["checks"][check] is False and not a["passed"], a
    failed = {k for k, v in a["checks"].items() if not v}
    assert failed == ({check, "served_real_in_retain"} if check == "served_real_not_forgotten" else {check})


def test_audit_fails_closed_on_undecodable_input():
    bad = _cs()
    bad.bucket_indptr = torch.tensor([0, 3, 5, 8, 11])  # points past the indices
    a = audit_served(_split([1]), bad, TRAIN_LABELS, torch.tensor([0]), torch.tensor([1]))
    assert not a["passed"] and "condensed" in a["leaks"]
    a = audit_served(
        ForgetSplit("x", torch.tensor([1]), torch.tensor([1, 2])),
        _cs(),
        TRAIN_LABELS,
        torch.tensor([2]),
        torch.tensor([1]),
    )
    assert not a["passed"] and "split" in a["leaks"]
    a = audit_served(_split([1]), _cs("someday"), TRAIN_LABELS, torch.tensor([0, 2]), torch.tensor([1]))
    assert not a["checks"]["served_influence_scope_untouched"]


def _flipped_owner(cs):
    """A plausible assembly bug: bucket sizes taken in the wrong order (e.g. before a class-major sort)."""
    return torch.repeat_interleave(torch.arange(len(cs)), cs.bucket_sizes().flip(0))


def test_a_shared_helper_bug_passes_the_assemblys_own_audit_but_not_the_independent_one(monkeypatch):
    monkeypatch.setattr(reduced_mod, "_owner", _flipped_owner)
    cs, split = _cs(), _split([2])
    r = assemble_reduced(cs, split.forget, 10)
    assert r.audit["passed"]  # the old audit re-derives its checks with the same wrong owner
    assert 0 in r.condensed_rows.tolist()  # ...so bucket {0,1,2}, which holds forget image 2, is served
    a = audit_served(split, cs, TRAIN_LABELS, r.real_indices, r.condensed_rows)
    assert not a["passed"] and a["leaks"]["served_buckets_hold_no_forget_sample"] == [0]


@pytest.fixture(scope="module")
def setup():
    data = load_data(SPEC)
    trained = train_on(data, "cnn", TrainConfig(epochs=4, batch_size=32), seed=0, device=CPU, quiet=True).model
    cs = build_condensed(
        data, "fdm", trained, device=CPU, seed=0, clusters=5, options={"steps": 3}, quiet=True
    ).condensed
    return data, trained, cs


def _spy_fit(monkeypatch):
    calls = []
    real_fit = train_mod.fit

    def spy(*a, **kw):
        calls.append(1)
        return real_fit(*a, **kw)

    import unlearn.methods.condensed as mc
    import unlearn.methods.dcu_reference as md

    for mod in (mc, md):
        monkeypatch.setattr(mod, "fit", spy)
    return calls


def test_request_refuses_a_forget_index_injected_into_the_real_images(setup, monkeypatch):
    data, trained, cs = setup
    calls = _spy_fit(monkeypatch)
    real_assemble = request_mod.assemble_reduced

    def leaky(cs_, forget, *a, **kw):
        r = real_assemble(cs_, forget, *a, **kw)  # its own audit passed; then a bug adds one forget image
        return ReducedSet(torch.sort(torch.cat([r.real_indices, forget[:1]])).values, r.condensed_rows, r.audit)

    monkeypatch.setattr(request_mod, "assemble_reduced", leaky)
    with pytest.raises(ReducedSetLeakError, match="served_real_not_forgotten"):
        unlearn_request(
            trained, data, "random:0.2", "condensed", device=CPU, options={"epochs": 1}, condensed=cs, quiet=True
        )
    assert calls == []  # never trained


def test_request_refuses_a_touched_bucket_marked_clean_by_a_shared_helper_bug(setup, monkeypatch):
    data, trained, cs = setup
    calls = _spy_fit(monkeypatch)
    monkeypatch.setattr(reduced_mod, "_owner", _flipped_owner)
    split = cumulative_split(data, ForgetSpec.parse("random:0.2"), 0, None)
    assert assemble_reduced(cs, split.forget, len(data.train)).audit["passed"]  # the old audit would let it through
    with pytest.raises(ReducedSetLeakError, match="served_buckets_hold_no_forget_sample"):
        unlearn_request(
            trained, data, "random:0.2", "condensed", device=CPU, options={"epochs": 1}, condensed=cs, quiet=True
        )
    assert calls == []


@pytest.mark.parametrize("method", ["condensed", "dcu-reference"])
def test_what_reduced_tensors_serves_is_audited_there(setup, method, monkeypatch):
    """A method gets its rows only through reduced_tensors, which audits exactly the lists it gathers."""
    data, trained, cs = setup
    calls = _spy_fit(monkeypatch)
    split = cumulative_split(data, ForgetSpec.parse("random:0.2"), 0, None)
    r = assemble_reduced(cs, split.forget, len(data.train))
    touched = [j for j in range(len(cs)) if j not in r.condensed_rows.tolist()]
    leaky = ReducedSet(r.real_indices, torch.tensor(sorted(r.condensed_rows.tolist() + touched[:1])), r.audit)
    opts = {**METHODS.get(method).defaults, "epochs": 1}
    ctx = UnlearnContext(
        trained,
        data,
        split,
        CPU,
        0,
        opts,
        quiet=True,
        condensed=cs,
        reduced=leaky,
        artefacts={"remembrance_images": torch.rand(4, 3, 16, 16), "remembrance_labels": torch.arange(4)},
    )
    with pytest.raises(ReducedSetLeakError):
        METHODS.get(method).run(ctx)
    assert calls == [] and ctx.served_audits == []


def test_report_carries_the_audit_of_what_was_served(setup):
    data, trained, cs = setup
    res = unlearn_request(
        trained, data, "random:0.2", "condensed", device=CPU, options={"epochs": 1}, condensed=cs, quiet=True
    )
    a = res.report["independent_audit"]
    assert a["passed"] and a["scope"] == "served" and a["served_calls"] == 1
    assert a["served_real"] == res.report["reduced_set"]["real_images_used"]
    assert a["served_condensed"] == res.report["reduced_set"]["condensed_images_used"]
    assert all(a["checks"].values()) and a["leaks"] == {}


def test_class_influence_request_drops_every_image_of_a_touched_class(setup):
    """Herding is class-influence: forgetting part of class 1 drops every herding image of class 1 (by the
    training labels) and serves class 1's retain images as themselves; the weights keep each class's mass."""
    data, trained, _ = setup
    cs = build_condensed(data, "herding", trained, device=CPU, seed=0, ipc=3, quiet=True).condensed
    assert cs.influence == "class"
    split = cumulative_split(data, ForgetSpec.parse("classes:1:0.5"), 0, None)
    r = assemble_reduced(cs, split.forget, len(data.train), labels=data.train.labels)
    assert set(cs.labels[r.condensed_rows].tolist()) == {0, 2, 3}
    assert set(data.train.labels[r.real_indices].tolist()) == {1}
    ctx = UnlearnContext(trained, data, split, CPU, 0, {}, quiet=True, condensed=cs, reduced=r)
    _, y, w = ctx.reduced_tensors()
    mass = torch.zeros(4).index_add_(0, y, w)
    retain_counts = torch.bincount(data.train.labels[split.retain], minlength=4).float()
    assert torch.allclose(mass, retain_counts)  # 3 herding images share their class's weight
    assert ctx.served_audits[-1]["passed"]
    with pytest.raises(Exception, match="training labels"):
        assemble_reduced(cs, split.forget, len(data.train))
