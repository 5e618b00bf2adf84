import numpy as np
import pytest
import torch

from dcforget.errors import ForgetSpecError
from dcforget.forget import ForgetContext, ForgetSpec, resolve_forget

LABELS = torch.arange(5).repeat_interleave(20)  # 5 classes x 20
CTX = ForgetContext(LABELS, 5, seed=0, class_names=("a", "b", "c", "d", "e"))


def _check_partition(split, n=100):
    both = torch.cat([split.forget, split.retain])
    assert len(both) == n and torch.equal(torch.sort(both).values, torch.arange(n))
    assert torch.equal(split.forget, torch.sort(split.forget).values)


def test_random_fraction_size_partition_and_seed():
    s = resolve_forget(ForgetSpec.parse("random:0.1"), CTX)
    _check_partition(s)
    assert len(s.forget) == 10
    assert torch.equal(s.forget, resolve_forget(ForgetSpec.parse("random:0.1"), CTX).forget)
    other = resolve_forget(ForgetSpec.parse("random:0.1"), ForgetContext(LABELS, 5, seed=1))
    assert not torch.equal(s.forget, other.forget)


def test_class_by_index_and_name():
    s = resolve_forget(ForgetSpec.parse("class:2"), CTX)
    _check_partition(s)
    assert torch.equal(s.forget, torch.arange(40, 60))
    assert torch.equal(resolve_forget(ForgetSpec.parse("class:C"), CTX).forget, s.forget)


def test_classes_with_fraction_takes_that_share_of_each():
    s = resolve_forget(ForgetSpec.parse("classes:1,3:0.25"), CTX)
    _check_partition(s)
    assert torch.bincount(LABELS[s.forget], minlength=5).tolist() == [0, 5, 0, 5, 0]
    whole = resolve_forget(ForgetSpec.parse("classes:0,4"), CTX)
    assert torch.bincount(LABELS[whole.forget], minlength=5).tolist() == [20, 0, 0, 0, 20]


def test_indices_text_and_npy(tmp_path):
    txt = tmp_path / "f.txt"
    txt.write_text("# forget these\n7\n3\n\n99\n")
    assert resolve_forget(ForgetSpec.parse(f"indices:{txt}"), CTX).forget.tolist() == [3, 7, 99]
    npy = tmp_path / "f.npy"
    np.save(npy, np.array([5, 1], dtype=np.int32))
    assert resolve_forget(ForgetSpec.parse(f"indices:{npy}"), CTX).forget.tolist() == [1, 5]


@pytest.mark.parametrize(
    "spec, msg",
    [
        ("random:0", "outside"),
        ("random:1", "outside"),
        ("random:1.5", "outside"),
        ("random:-0.1", "outside"),
        ("random:abc", "not a fraction"),
        ("random", "expected random:F"),
        ("random:0.001", "selects no sample"),
        ("class:5", "outside 0..4"),
        ("class:zebra", "unknown class"),
        ("class:", "expected class:C"),
        ("classes:1,1:0.5", "listed twice"),
        ("classes:1,2:0", "outside"),
        ("classes:0,1,2,3,4", "retain set would be empty"),
        ("bogus:1", "unknown kind"),
        ("", "unknown kind"),
    ],
)
def test_bad_specs_raise_one_line(spec, msg):
    with pytest.raises(ForgetSpecError, match=msg) as info:
        resolve_forget(ForgetSpec.parse(spec), CTX)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    "content, msg",
    [
        ("1\n1\n", "more than once"),
        ("100\n", "out of range"),
        ("-1\n", "out of range"),
        ("x\n", "not an integer"),
        ("", "no sample"),
    ],
)
def test_bad_index_files(tmp_path, content, msg):
    f = tmp_path / "bad.txt"
    f.write_text(content)
    with pytest.raises(ForgetSpecError, match=msg):
        resolve_forget(ForgetSpec.parse(f"indices:{f}"), CTX)


def test_index_file_errors(tmp_path):
    with pytest.raises(ForgetSpecError, match="does not exist"):
        resolve_forget(ForgetSpec.parse(f"indices:{tmp_path}/none.txt"), CTX)
    npy = tmp_path / "f.npy"
    np.save(npy, np.array([0.5, 1.0]))
    with pytest.raises(ForgetSpecError, match="integer"):
        resolve_forget(ForgetSpec.parse(f"indices:{npy}"), CTX)
    junk = tmp_path / "junk.npy"
    junk.write_bytes(b"not numpy")
    with pytest.raises(ForgetSpecError, match="not a valid .npy"):
        resolve_forget(ForgetSpec.parse(f"indices:{junk}"), CTX)


def test_parse_keeps_colons_in_paths():
    assert ForgetSpec.parse("indices:/a:b/c.txt").args == ("/a:b/c.txt",)
