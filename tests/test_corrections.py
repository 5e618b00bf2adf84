"""Correction requests end to end: the labels:/features: forget-spec kinds (parsed by the one parser, checked
against the dataset at resolution), the request's refusal of mismatched methods, the CLI run on a tiny synthetic
checkpoint, and bad correction requests: one ``error: ...`` line, exit code 2, nothing written."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import dcforget.tv  # noqa: F401  (before any torchvision import)
from dcforget.errors import ForgetSpecError
from dcforget.forget import ForgetContext, ForgetSpec, resolve_forget
from experiments.cli import unlearn_main as unlearn

TINY = "synthetic:classes=4,train=30,test=10,size=16"


# --------------------------------------------------------------------------------------------- the parser
@pytest.mark.parametrize(
    "text, kind, args",
    [
        ("labels:fix.txt", "labels", ("fix.txt",)),
        ("LABELS:dir:with:colons/fix.txt", "labels", ("dir:with:colons/fix.txt",)),
        ("features:patch=0,1,4,4:idx.txt", "features", ("patch=0,1,4,4", "fill=0.0", "idx.txt")),
        ("features:channel=2:fill=0.5:a:b.txt", "features", ("channel=2", "fill=0.5", "a:b.txt")),
        ("features:mask=M.npy:idx.npy", "features", ("mask=M.npy", "fill=0.0", "idx.npy")),
    ],
)
def test_correction_specs_parse_and_round_trip(text, kind, args):
    s = ForgetSpec.parse(text)
    assert (s.kind, s.args) == (kind, args) and s.is_correction
    assert ForgetSpec.parse(str(s)) == s
    assert not ForgetSpec.parse("random:0.1").is_correction


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("labels:", "expected labels:FILE"),
        ("features:patch=1,2:idx.txt", "patch=ROW,COL,HEIGHT,WIDTH"),
        ("features:patch=0,0,0,4:idx.txt", "HEIGHT, WIDTH >= 1"),
        ("features:channel=x:idx.txt", "not an integer"),
        ("features:blur=3:idx.txt", "unknown feature edit"),
        ("features:patch=0,0,2,2", "expected features:EDIT"),
        ("features:patch=0,0,2,2:fill=2:idx.txt", "outside [0, 1]"),
        ("features:patch=0,0,2,2:fill=0.5", "expected features:EDIT"),
    ],
)
def test_correction_spec_syntax_errors(text, fragment):
    with pytest.raises(ForgetSpecError, match=None) as err:
        ForgetSpec.parse(text)
    assert fragment in str(err.value)


def _ctx(n=20, classes=4):
    return ForgetContext(torch.arange(n) % classes, classes, 0, tuple(f"c{i}" for i in range(classes)), {}, (3, 8, 8))


def test_label_corrections_resolve_sorted_with_their_labels(tmp_path):
    f = tmp_path / "fix.txt"
    f.write_text("# index,label\n7, 2\n3,c1\n\n11,0  # a comment\n")
    split = resolve_forget(ForgetSpec.parse(f"labels:{f}"), _ctx())
    assert split.forget.tolist() == [3, 7, 11] and len(split.retain) == 17
    assert split.correction.labels.tolist() == [1, 2, 0]
    x, y = split.correction.apply(torch.zeros(3, 3, 8, 8, dtype=torch.uint8), torch.tensor([3, 3, 3]))
    assert y.tolist() == [1, 2, 0] and x.dtype == torch.float32
    np.save(tmp_path / "fix.npy", np.array([[5, 1], [2, 3]]))
    split = resolve_forget(ForgetSpec.parse(f"labels:{tmp_path / 'fix.npy'}"), _ctx())
    assert split.forget.tolist() == [2, 5] and split.correction.labels.tolist() == [3, 1]


def test_feature_corrections_apply_the_edit(tmp_path):
    idx = tmp_path / "idx.txt"
    idx.write_text("4\n1\n")
    x = torch.full((2, 3, 8, 8), 255, dtype=torch.uint8)
    y = torch.tensor([0, 1])
    patch = resolve_forget(ForgetSpec.parse(f"features:patch=2,3,2,4:{idx}"), _ctx())
    out, same = patch.correction.apply(x, y)
    assert patch.forget.tolist() == [1, 4] and torch.equal(same, y)
    assert int((out == 0).sum()) == 2 * 3 * 2 * 4 and float(out[0, 0, 2, 3]) == 0.0 and float(out[0, 0, 0, 0]) == 1.0
    chan = resolve_forget(ForgetSpec.parse(f"features:channel=1:fill=0.5:{idx}"), _ctx())
    out, _ = chan.correction.apply(x, y)
    assert torch.all(out[:, 1] == 0.5) and torch.all(out[:, [0, 2]] == 1.0)
    values = np.full((8, 8), np.nan, dtype=np.float32)
    values[0, :2] = [0.25, 0.75]
    np.save(tmp_path / "v.npy", values)
    mask = resolve_forget(ForgetSpec.parse(f"features:mask={tmp_path / 'v.npy'}:{idx}"), _ctx())
    out, _ = mask.correction.apply(x, y)
    assert out[:, :, 0, 0].eq(0.25).all() and out[:, :, 0, 1].eq(0.75).all() and out[:, :, 1:].eq(1.0).all()


@pytest.mark.parametrize(
    "write, spec, fragment",
    [
        (lambda d: (d / "f.txt").write_text("1,2\n1,3\n"), "labels:{d}/f.txt", "lists index 1 more than once"),
        (lambda d: (d / "f.txt").write_text("1,4\n"), "labels:{d}/f.txt", "label 4 is outside the classes 0..3"),
        (lambda d: (d / "f.txt").write_text("1,dog\n"), "labels:{d}/f.txt", "unknown class 'dog'"),
        (lambda d: (d / "f.txt").write_text("20,1\n"), "labels:{d}/f.txt", "index 20 is out of range"),
        (lambda d: (d / "f.txt").write_text("1 2\n"), "labels:{d}/f.txt", "is not 'index,label'"),
        (lambda d: (d / "i.txt").write_text("1\n"), "features:patch=6,0,4,4:{d}/i.txt", "do not fit images of 8x8"),
        (lambda d: (d / "i.txt").write_text("1\n"), "features:channel=3:{d}/i.txt", "outside the images' channels"),
        (
            lambda d: ((d / "i.txt").write_text("1\n"), np.save(d / "m.npy", np.ones((3, 7, 8), bool))),
            "features:mask={d}/m.npy:{d}/i.txt",
            "shape [3, 7, 8] does not fit images of shape [3, 8, 8]",
        ),
        (
            lambda d: ((d / "i.txt").write_text("1\n"), np.save(d / "m.npy", np.zeros((8, 8), bool))),
            "features:mask={d}/m.npy:{d}/i.txt",
            "changes no pixel",
        ),
        (
            lambda d: ((d / "i.txt").write_text("1\n"), np.save(d / "m.npy", np.full((8, 8), 3.0))),
            "features:mask={d}/m.npy:{d}/i.txt",
            "must be in [0, 1]",
        ),
    ],
)
def test_bad_corrections_are_typed_errors_at_resolution(tmp_path, write, spec, fragment):
    write(tmp_path)
    with pytest.raises(ForgetSpecError) as err:
        resolve_forget(ForgetSpec.parse(spec.format(d=tmp_path)), _ctx())
    assert fragment in str(err.value)


# -------------------------------------------------------------------------------------------------- CLI
@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    d = tmp_path_factory.mktemp("corr")
    (d / "small.toml").write_text("[model_options]\nhidden = [32, 16]\n")
    ck = d / "orig.pt"
    res = CliRunner().invoke(
        unlearn,
        ["train", TINY, "--model", "mlp", "--config", str(d / "small.toml"), "--epochs", "2", "--out", str(ck), "-q"],
    )
    assert res.exit_code == 0, res.output
    (d / "fix.txt").write_text("0,1\n3,2\n5,0\n")
    (d / "idx.txt").write_text("0\n3\n5\n")
    (d / "dup.txt").write_text("0,1\n0,2\n")
    (d / "far.txt").write_text("0,9\n")
    np.save(d / "wrong.npy", np.ones((3, 8, 8), bool))
    return d


def test_cli_second_order_label_correction_end_to_end(tiny, tmp_path):
    out = tmp_path / "so"
    res = CliRunner().invoke(
        unlearn,
        ["--method", "second-order", "--checkpoint", str(tiny / "orig.pt"), "--forget", f"labels:{tiny / 'fix.txt'}"]
        + ["--option", "damping=10.0", "--option", "params=last", "--out", str(out), "-q"],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    assert rep["method"] == "second-order" and rep["forget_size"] == 3
    assert rep["correction"]["kind"] == "labels" and rep["correction"]["affected"] == 3
    assert rep["method_extra"]["solve"]["solver"] == "cg" and rep["method_extra"]["parameters_updated"] == 16 * 4 + 4
    meta = json.loads(torch.load(out / "model.pt", weights_only=True)["meta_json"])
    assert meta["forgotten"] == [] and meta["requests"][-1].startswith("labels:")
    # the corrected model takes no further request (its training set is no longer the dataset's)
    again = CliRunner().invoke(
        unlearn,
        ["--method", "first-order", "--checkpoint", str(out / "model.pt"), "--forget", f"labels:{tiny / 'fix.txt'}"]
        + ["--out", str(tmp_path / "again")],
    )
    assert again.exit_code == 2 and "answered a correction request" in again.stderr


def test_cli_first_order_feature_correction(tiny, tmp_path):
    res = CliRunner().invoke(
        unlearn,
        ["--method", "first-order", "--checkpoint", str(tiny / "orig.pt")]
        + ["--forget", f"features:patch=0,0,4,4:fill=1.0:{tiny / 'idx.txt'}", "--out", str(tmp_path / "fo"), "-q"],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((tmp_path / "fo" / "report.json").read_text())
    assert rep["correction"]["pixels_changed_per_image"] == 16 * 3 and rep["method_extra"]["update_norm"] > 0


def test_cli_first_order_iterative_variant(tiny, tmp_path):
    """The reference's iterative variant from the CLI: its steps are reported, each on disagreeing samples."""
    res = CliRunner().invoke(
        unlearn,
        ["--method", "first-order", "--checkpoint", str(tiny / "orig.pt"), "--forget", f"labels:{tiny / 'fix.txt'}"]
        + ["--option", "iterative=true", "--option", "steps=2", "--option", "batch=4", "--option", "tau=0.01"]
        + ["--out", str(tmp_path / "it"), "-q"],
    )
    assert res.exit_code == 0, res.output
    info = json.loads((tmp_path / "it" / "report.json").read_text())["method_extra"]["iterative"]
    assert 1 <= info["steps_taken"] <= 2 and all(1 <= s["updated_on"] <= 4 for s in info["steps"])


BAD = [
    ("bad-iterative", "first-order", "labels:{d}/fix.txt", ["--option", "iterative=sometimes"], "must be a boolean"),
    ("bad-steps", "second-order", "labels:{d}/fix.txt", ["--option", "steps=0"], "option steps"),
    ("mask-shape", "first-order", "features:mask={d}/wrong.npy:{d}/idx.txt", [], "does not fit images of shape"),
    ("label-range", "second-order", "labels:{d}/far.txt", [], "label 9 is outside the classes 0..3"),
    ("duplicate", "first-order", "labels:{d}/dup.txt", [], "lists index 0 more than once"),
    ("missing-file", "first-order", "labels:{d}/none.txt", [], "does not exist"),
    ("removal-method", "retrain", "labels:{d}/fix.txt", [], "is a correction request"),
    ("correction-method", "second-order", "random:0.1", [], "is a removal request"),
    ("bad-params", "second-order", "labels:{d}/fix.txt", ["--option", "params=body"], "params must be one of"),
    ("bad-solver", "second-order", "labels:{d}/fix.txt", ["--option", "solver=newton"], "solver must be one of"),
    (
        "lissa-diverges",
        "second-order",
        "labels:{d}/fix.txt",
        ["--option", "solver=lissa", "--option", "scale=0.001", "--option", "damping=0.0"],
        "LiSSA diverged",
    ),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_correction_requests_one_error_line_nothing_written(case, tiny, tmp_path, monkeypatch):
    _, method, spec, extra, fragment = case
    monkeypatch.chdir(tmp_path)
    before = sorted(os.listdir(tmp_path)), sorted(p.name for p in Path(tiny).iterdir())
    args = ["--method", method, "--checkpoint", str(tiny / "orig.pt"), "--forget", spec.format(d=tiny), *extra]
    res = CliRunner().invoke(unlearn, [*args, "--out", str(tmp_path / "out")])
    assert res.exit_code == 2, (res.output, res.exception)
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in res.output, res.stderr
    assert fragment in lines[0], lines[0]
    assert (sorted(os.listdir(tmp_path)), sorted(p.name for p in Path(tiny).iterdir())) == before


# ------------------------------------------------------------------------------- the experiment kind's rows
def test_flip_labels_moves_each_chosen_label_to_another_class():
    from experiments.kinds.corrections import flip_labels

    labels = torch.arange(1000) % 10
    idx, poisoned = flip_labels(labels, 0.01, 10, seed=3)
    assert len(idx) == 10 and torch.equal(idx, torch.sort(idx).values)
    assert bool((poisoned[idx] != labels[idx]).all()) and int((poisoned != labels).sum()) == 10
    again, _ = flip_labels(labels, 0.01, 10, seed=3)
    other, _ = flip_labels(labels, 0.01, 10, seed=4)
    assert torch.equal(idx, again) and not torch.equal(idx, other)


def test_corrections_rows_compute_gap_and_time_ratio_per_seed():
    from experiments.kinds.corrections import _rows
    from experiments.workspace import Experiment

    def res(ta, s, **extra):
        return {"test_acc": ta, "valid_acc": ta, "fixed_acc": 0.5, "seconds": s, **extra}

    grid = {"grid": [{"options": {"tau": 0.1}, "valid_acc": 0.6, "diverged": None}], "grid_seconds": 3.0}
    cells = [
        {
            "key": {"flip": 0.01},
            "result": {
                "flipped": 5,
                "train": 500,
                "poisoned": res(0.50, 10.0),
                "retrain-corrected": res(0.60, 20.0),
                "first-order": res(0.55, 1.0, options={"tau": 0.1}, **grid),
                "second-order": {"diverged": "every setting of the grid diverged"},
            },
        },
        {
            "key": {"flip": 0.01},
            "result": {
                "flipped": 5,
                "train": 500,
                "poisoned": res(0.40, 10.0),
                "retrain-corrected": res(0.60, 10.0),
                "first-order": res(0.45, 2.0, options={"tau": 0.01}, **grid),
                "second-order": {"diverged": "every setting of the grid diverged"},
            },
        },
    ]
    rows = {r["method"]: r for r in _rows(Experiment("x", {"model": "cnn"}), cells)}
    assert set(rows) == {"poisoned", "first-order", "retrain-corrected"}  # a method with no finished seed: no row
    fo = rows["first-order"]
    assert fo["seeds"] == 2 and fo["gap_closed"] == pytest.approx(37.5) and fo["time_ratio"] == pytest.approx(0.125)
    assert fo["test_acc"] == pytest.approx(50.0) and "tau=0.1; tau=0.01" in fo["extra"]
    assert rows["retrain-corrected"]["gap_closed"] == pytest.approx(100.0)


def test_cli_certified_variant_reports_its_certificate(tmp_path):
    """`unlearn train-certified` fits logreg to its perturbed objective; `second-order` on that checkpoint uses the
    checkpoint's objective (its λ and b) and reports ε for the gradient residual; a contradicting l2 is refused."""
    data = "synthetic:classes=3,channels=1,train=200,test=10,size=4,noise=1.0"
    ck = tmp_path / "c.pt"
    res = CliRunner().invoke(unlearn, ["train-certified", data, "--l2", "1.0", "--sigma", "0.5", "--out", str(ck)])
    assert res.exit_code == 0, res.output
    meta = json.loads(torch.load(ck, weights_only=True)["meta_json"])
    assert meta["certified"]["gradient_residual"] < 1e-3
    (tmp_path / "fix.txt").write_text("".join(f"{i},{(i % 3 + 1) % 3}\n" for i in range(0, 600, 100)))
    spec = f"labels:{tmp_path / 'fix.txt'}"
    args = ["--method", "second-order", "--checkpoint", str(ck), "--forget", spec, "--option", "damping=0.0"]
    res = CliRunner().invoke(unlearn, [*args, "--option", "solver=direct", "--out", str(tmp_path / "o"), "-q"])
    assert res.exit_code == 0, res.output
    extra = json.loads((tmp_path / "o" / "report.json").read_text())["method_extra"]
    cert = extra["certificate"]
    assert cert["sigma"] == 0.5 and "train-certified" in cert["holds"]
    assert cert["gradient_residual"] < 0.05 * extra["gradient_norm"] and cert["epsilon"] > 0
    bad = CliRunner().invoke(unlearn, [*args, "--option", "l2=3.0", "--out", str(tmp_path / "o2")])
    assert bad.exit_code == 2 and "l2=1 contradicts" not in bad.stderr and "contradicts it" in bad.stderr
    assert not (tmp_path / "o2").exists()
