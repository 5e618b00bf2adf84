"""The forget spec as one object (issue #34): parsed once at the edge, its kind, classes, fraction and path as
properties, a canonical str() that round-trips, validation against the dataset in one place; and the forget sets it
selects pinned against the implementation before the refactor (same seed, same indices)."""

import hashlib

import pytest
import torch

from dcforget.errors import ForgetSpecError
from dcforget.forget import ForgetContext, ForgetSpec, resolve_forget

CPU = torch.device("cpu")
TINY = "synthetic:classes=4,train=30,test=10,size=16,noise=0.3"

PIN_LABELS = torch.arange(1000) * 7919 % 10  # a synthetic, shuffled 10-class training set of 1,000
PIN_NAMES = tuple("abcdefghij")

# sha256 (first 16 hex digits) of the forget indices and their count, computed with the string-parsing
# implementation as it was before issue #34 (commit dbd073d): the refactor must select exactly these
PINNED = {
    ("random:0.1", 0): "7d2fdd33ecafac2d/100",
    ("random:0.1", 1): "2dc72f40bb5d50ae/100",
    ("random:0.1", 7): "a5d3d6b593669c1f/100",
    ("random:0.37", 0): "e83fd454e11720e4/370",
    ("random:0.37", 1): "8e8b8394e6422399/370",
    ("random:0.37", 7): "e17dc0e8cefb6876/370",
    ("class:3", 0): "9ff0cebcd7b58a4c/100",
    ("class:3", 7): "9ff0cebcd7b58a4c/100",
    ("class:d", 0): "9ff0cebcd7b58a4c/100",
    ("classes:1,3:0.25", 0): "e38c4b19a1afadab/50",
    ("classes:1,3:0.25", 1): "ffdf281fa44b34a2/50",
    ("classes:1,3:0.25", 7): "420b06d00de27809/50",
    ("classes:0,9", 0): "36112cd57cfd7903/200",
    ("classes:2,5,7:0.5", 0): "a3ca140577d8c2d7/150",
    ("classes:2,5,7:0.5", 1): "a1af3645a8422717/150",
    ("classes:2,5,7:0.5", 7): "e6b708ad7b8e3890/150",
    ("classes:1,2:1", 0): "c812ec3f2778821d/200",
}


@pytest.mark.parametrize("spec, seed", sorted(PINNED))
def test_same_seed_selects_the_same_forget_set_as_before(spec, seed):
    split = resolve_forget(ForgetSpec.parse(spec), ForgetContext(PIN_LABELS, 10, seed, PIN_NAMES))
    digest = hashlib.sha256(split.forget.numpy().tobytes()).hexdigest()[:16]
    assert f"{digest}/{len(split.forget)}" == PINNED[(spec, seed)]


# ------------------------------------------------------------------------------------------------- the object
ROUND_TRIP = [
    "random:0.1",
    "random:0.37",
    "class:2",
    "class:airplane",
    "classes:1,2,3:0.1",
    "classes:0,9",
    "classes:1,2:1.0",
    "indices:/a:b/c.txt",
    "overfit",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_str_is_canonical_and_round_trips(text):
    spec = ForgetSpec.parse(text)
    assert str(spec) == text and ForgetSpec.parse(str(spec)) == spec
    assert hash(spec) == hash(ForgetSpec.parse(text))  # immutable, usable as a key


@pytest.mark.parametrize(
    "text, canonical",
    [
        ("  Random:0.10 ", "random:0.1"),
        ("random:.5", "random:0.5"),
        ("CLASS: Airplane", "class:airplane"),
        ("classes: 1, 2 :0.25", "classes:1,2:0.25"),
        ("classes:1,2:1", "classes:1,2:1.0"),
        ("OVERFIT", "overfit"),
        ("overfit:", "overfit"),
    ],
)
def test_equal_specs_have_one_canonical_text(text, canonical):
    assert str(ForgetSpec.parse(text)) == canonical and ForgetSpec.parse(canonical) == ForgetSpec.parse(text)


@pytest.mark.parametrize(
    "text, kind, family, whole, classes, fraction, path",
    [
        ("random:0.1", "random", "random", False, (), 0.1, None),
        ("class:3", "class", "class", True, ("3",), None, None),
        ("class:cat", "class", "class", True, ("cat",), None, None),
        ("classes:1,2", "classes", "class", True, ("1", "2"), None, None),
        ("classes:1,2:0.5", "classes", "class", False, ("1", "2"), 0.5, None),
        ("classes:1,2:1", "classes", "class", False, ("1", "2"), 1.0, None),  # a fraction, even 1: not whole classes
        ("indices:runs/f.txt", "indices", "indices", False, (), None, "runs/f.txt"),
        ("overfit", "overfit", "overfit", False, (), None, None),
    ],
)
def test_properties_per_kind(text, kind, family, whole, classes, fraction, path):
    s = ForgetSpec.parse(text)
    assert (s.kind, s.family, s.whole_classes, s.classes, s.fraction, s.path) == (
        kind,
        family,
        whole,
        classes,
        fraction,
        path,
    )


def test_class_indices_checks_against_the_dataset():
    assert ForgetSpec.parse("classes:b,3").class_indices(4, ("a", "b", "c", "d")) == [1, 3]
    assert ForgetSpec.parse("class:B").class_indices(4, ("a", "b", "c", "d")) == [1]
    assert ForgetSpec.parse("classes:b,3").class_indices(4) == [None, 3]  # names unknown: left to resolution
    assert ForgetSpec.parse("random:0.1").class_indices(4) == []
    with pytest.raises(ForgetSpecError, match=r"bad forget spec 'class:4': class 4 is outside 0\.\.3"):
        ForgetSpec.parse("class:4").class_indices(4)
    with pytest.raises(ForgetSpecError, match="unknown class 'zebra'"):
        ForgetSpec.parse("class:zebra").class_indices(4, ("a", "b", "c", "d"))
    with pytest.raises(ForgetSpecError, match="a class is listed twice"):
        ForgetSpec.parse("classes:b,1").class_indices(4, ("a", "b", "c", "d"))


@pytest.mark.parametrize(
    "text, msg",
    [
        ("random:0", r"bad forget spec 'random:0': fraction 0 is outside \(0, 1\)"),
        ("random:1", r"fraction 1 is outside \(0, 1\)"),
        ("random:-0.1", r"fraction -0.1 is outside \(0, 1\)"),
        ("random:x", r"'x' is not a fraction"),
        ("random", r"bad forget spec 'random:': expected random:F with F in \(0,1\)"),
        ("random:0.1:2", "expected random:F"),
        ("classes:1,2:1.5", r"fraction 1.5 is outside \(0, 1\]"),
        ("classes:", r"expected classes:C1,C2,...\[:F\]"),
        ("class:", "expected class:C"),
        ("class:1:2", "expected class:C"),
        ("overfit:0.1", "overfit takes no argument"),
        ("everything", "unknown kind 'everything'"),
        ("", "unknown kind ''"),
    ],
)
def test_syntax_errors_are_raised_by_the_parser(text, msg):
    with pytest.raises(ForgetSpecError, match=msg) as info:
        ForgetSpec.parse(text)
    assert "\n" not in str(info.value)


def test_index_errors_against_the_training_set(tmp_path):
    ctx = ForgetContext(torch.arange(40) % 4, 4, seed=0)
    (tmp_path / "dup.txt").write_text("3\n5\n3\n")
    (tmp_path / "range.txt").write_text("3\n40\n")
    with pytest.raises(ForgetSpecError, match="lists an index more than once"):
        resolve_forget(ForgetSpec.parse(f"indices:{tmp_path}/dup.txt"), ctx)
    with pytest.raises(ForgetSpecError, match="index 40 is out of range for a training set of 40"):
        resolve_forget(ForgetSpec.parse(f"indices:{tmp_path}/range.txt"), ctx)
    with pytest.raises(ForgetSpecError, match="class 4 is outside 0..3"):
        resolve_forget(ForgetSpec.parse("class:4"), ctx)


def test_the_split_carries_the_parsed_spec():
    spec = ForgetSpec.parse("classes:1,2:0.5")
    split = resolve_forget(spec, ForgetContext(PIN_LABELS, 10, 0))
    assert split.spec is spec and split.summary()["spec"] == "classes:1,2:0.5"


# ------------------------------------------------------------------------------------------ parsed once
@pytest.fixture
def count_parses(monkeypatch):
    calls: list[str] = []
    parse = ForgetSpec.parse.__func__

    def counting(cls, text):
        calls.append(text)
        return parse(cls, text)

    monkeypatch.setattr(ForgetSpec, "parse", classmethod(counting))
    return calls


@pytest.fixture(scope="module")
def small():
    from dcforget.datasets import load_data
    from dcforget.train import TrainConfig, train_on

    data = load_data(TINY)
    model = train_on(data, "mlp", TrainConfig(epochs=1, batch_size=32), seed=0, device=CPU, quiet=True).model
    return data, model


def test_unlearn_request_parses_the_spec_exactly_once(small, count_parses):
    from unlearn.request import unlearn_request

    data, model = small
    res = unlearn_request(model, data, "classes:1,2", "finetune", device=CPU, options={"epochs": 1}, quiet=True)
    assert count_parses == ["classes:1,2"]
    assert isinstance(res.split.spec, ForgetSpec) and res.report["forget_spec"] == "classes:1,2"


def test_a_parsed_spec_is_never_parsed_again(small, count_parses):
    from unlearn.request import unlearn_request

    data, model = small
    spec = ForgetSpec.parse("random:0.2")
    count_parses.clear()
    res = unlearn_request(model, data, spec, "finetune", device=CPU, options={"epochs": 1}, quiet=True, seed=3)
    assert count_parses == [] and res.split.spec is spec


def test_the_request_facade_parses_once_from_prepare_to_report(small, tmp_path, count_parses, monkeypatch):
    import unlearn.tuned as tuned_mod
    from dcforget.checkpoint import save_checkpoint
    from dcforget.train import TrainConfig, checkpoint_meta, train_on
    from unlearn.request import UnlearnRequest

    data, _ = small
    tr = train_on(data, "mlp", TrainConfig(epochs=1, batch_size=32), seed=0, device=CPU, quiet=True)
    save_checkpoint(tmp_path / "o.pt", tr.model, checkpoint_meta(data, TrainConfig(epochs=1, batch_size=32), 0, tr))
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path])  # no tuned file: only the request's spec
    count_parses.clear()
    prepared = UnlearnRequest(tmp_path / "o.pt", " Class:1 ", method="finetune", epochs=1, device="cpu").prepare()
    res = prepared.run(quiet=True)
    assert count_parses == [" Class:1 "]
    assert prepared.spec == ForgetSpec("class", ("1",)) and res.report["forget_spec"] == "class:1"
    assert prepared.output_meta(res)["requests"][-1] == "class:1"


def test_one_validation_serves_prepare_and_the_engine(small, tmp_path):
    from dcforget.errors import ConfigError
    from unlearn.request import check_request, unlearn_request

    data, model = small
    with pytest.raises(ForgetSpecError, match="forgets whole classes only"):
        check_request("lrp-npp", ForgetSpec.parse("random:0.1"), options={}, has_condensed=False)
    with pytest.raises(ConfigError, match="works from a condensed set"):
        check_request("condensed", ForgetSpec.parse("random:0.1"), options={}, has_condensed=False)
    with pytest.raises(ConfigError, match="unknown option"):
        check_request("finetune", ForgetSpec.parse("random:0.1"), options={"bogus": 1}, has_condensed=False)
    with pytest.raises(ForgetSpecError, match="forgets whole classes only"):  # the engine refuses it before any work
        unlearn_request(model, data, "random:0.1", "lrp-npp", device=CPU, quiet=True)
