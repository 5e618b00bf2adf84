import torch

from dcforget.condensed_store import CondensedSet
from unlearn.reduced import assemble_reduced, audit_reduced


def _cs(influence="bucket", source=None):
    # 10 training images, 4 buckets: {0,1,2} {3,4} {5,6,7} {8,9}
    return CondensedSet(
        images=torch.rand(4, 1, 2, 2),
        labels=torch.tensor([0, 0, 1, 1]),
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


def _brute_force(cs, forget):
    """The reference's definition, written as plainly as possible."""
    f = set(forget)
    rows, real = [], []
    for j in range(len(cs)):
        members = set(cs.bucket(j).tolist())
        if members & f:
            real += sorted(members - f)
        else:
            rows.append(j)
    return sorted(set(real)), rows


def test_touched_buckets_fall_back_to_their_real_retain_members():
    cs = _cs()
    r = assemble_reduced(cs, torch.tensor([1, 6]), 10)
    assert r.real_indices.tolist() == [0, 2, 5, 7]
    assert r.condensed_rows.tolist() == [1, 3]
    a = r.audit
    assert a["passed"] and a["reduced_size"] == 6 and a["retain_size"] == 8 and a["buckets_touched"] == 2
    assert a["ratio_to_retain"] == 6 / 8


def test_matches_a_brute_force_search_on_random_requests():
    g = torch.Generator().manual_seed(0)
    n, b = 200, 30
    owner = torch.randint(b, (n,), generator=g)
    order = torch.argsort(owner)
    counts = torch.bincount(owner, minlength=b)
    keep = counts > 0
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), torch.cumsum(counts[keep], 0)])
    m = int(keep.sum())
    cs = CondensedSet(
        torch.rand(m, 1, 2, 2),
        torch.zeros(m, dtype=torch.long),
        indptr,
        order,
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
        forget = torch.sort(torch.randperm(n, generator=g)[: 5 + 10 * trial]).values
        r = assemble_reduced(cs, forget, n)
        real, rows = _brute_force(cs, forget.tolist())
        assert r.real_indices.tolist() == real and r.condensed_rows.tolist() == rows and r.audit["passed"]


def test_copy_of_a_forget_sample_is_never_used_and_global_influence_falls_back_entirely():
    cs = _cs(source=[-1, 9, -1, -1])  # row 1 copies image 9, which sits in bucket 3, not bucket 1
    r = assemble_reduced(cs, torch.tensor([9]), 10)
    assert 1 not in r.condensed_rows.tolist() and r.audit["passed"]
    g = assemble_reduced(_cs("global"), torch.tensor([0]), 10)
    assert len(g.condensed_rows) == 0 and g.real_indices.tolist() == list(range(1, 10)) and g.audit["passed"]


def test_audit_catches_a_leak():
    cs = _cs()
    is_forget = torch.zeros(10, dtype=torch.bool)
    is_forget[3] = True
    bad = audit_reduced(cs, torch.tensor([3, 4]), torch.tensor([0, 2, 3]), is_forget)
    assert not bad["passed"] and not bad["checks"]["no_forget_sample_used_directly"]
    bad = audit_reduced(cs, torch.tensor([4]), torch.tensor([0, 1, 2, 3]), is_forget)
    assert not bad["checks"]["no_forget_sample_in_a_used_bucket"]


def test_class_influence_touches_every_image_of_a_class_with_a_forget_sample():
    """A class-influence image depends on its whole class, whatever its bucket holds: with sub-class buckets,
    forgetting image 1 (class 0) must also drop row 1 (bucket {3,4}, class 0), and 3, 4 stand in as real images."""
    cs = _cs("class")
    labels = torch.tensor([0] * 5 + [1] * 5)
    r = assemble_reduced(cs, torch.tensor([1]), 10, labels=labels)
    assert r.condensed_rows.tolist() == [2, 3] and r.real_indices.tolist() == [0, 2, 3, 4]
    assert r.audit["passed"] and r.audit["buckets_touched"] == 2
    import pytest

    from dcforget.errors import ForgetSpecError

    with pytest.raises(ForgetSpecError, match="training labels"):
        assemble_reduced(cs, torch.tensor([1]), 10)
