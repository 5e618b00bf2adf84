"""Bad input, every CLI: exit code 2, exactly one ``error: ...`` line on stderr, no traceback, and nothing in the
working tree (inputs and outputs) created, changed or deleted.

The inputs (a tiny checkpoint, a condensed set and damaged copies of both, configs, index files, a truncated
dataset) are made once per module; each case runs in-process through click's runner, in a fresh working
directory that holds a few existing outputs, and both trees are compared by sha256 + mtime before and after."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from attacks.cli import main as attacks
from condense.cli import main as condense
from experiments.cli import main as experiments
from experiments.cli import unlearn_main as unlearn

TINY = "synthetic:classes=4,train=30,test=10,size=16"
MAINS = {"condense": condense, "unlearn": unlearn, "attacks": attacks, "experiments": experiments}
TUNED_FILE = str(next((Path(__file__).resolve().parents[1] / "configs" / "tuned").rglob("*.json")))


def _ok(main, args):
    res = CliRunner().invoke(main, [str(a) for a in args])
    assert res.exit_code == 0, res.output
    return res


def _edit_checkpoint(src: Path, dst: Path, edit) -> Path:
    payload = torch.load(src, weights_only=True)
    meta = json.loads(payload["meta_json"])
    payload["meta_json"] = json.dumps(meta)
    text = payload["meta_json"]
    edit(payload, meta)
    if payload["meta_json"] == text:
        payload["meta_json"] = json.dumps(meta)
    torch.save(payload, dst)
    return dst


def _set_meta(**changes):
    def edit(payload, meta):
        for key, value in changes.items():
            if key.startswith("model."):
                meta["model"][key[6:]] = value
            else:
                meta[key] = value

    return edit


def _first_weight(value):
    def edit(payload, meta):
        k = next(k for k, v in payload["state_dict"].items() if k.endswith("weight") and v.numel() > 3)
        payload["state_dict"][k].view(-1)[3] = value

    return edit


def _flip_image_byte(src: Path, dst: Path) -> Path:
    with h5py.File(src) as f:
        needle = np.asarray(f["images"][()]).tobytes()[64:96]
    raw = bytearray(src.read_bytes())
    i = raw.find(needle)
    assert i > 0
    raw[i + 5] ^= 0x10
    dst.write_bytes(bytes(raw))
    return dst


def _h5_copy(src: Path, dst: Path, edit) -> Path:
    dst.write_bytes(src.read_bytes())
    with h5py.File(dst, "a") as f:
        edit(f)
    return dst


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("inputs")
    ck, h5 = d / "orig.pt", d / "good.h5"
    (d / "small.toml").write_text("[model_options]\nhidden = [32, 16]\n")  # a small model: cheap to load, every case
    _ok(unlearn, ["train", TINY, "--model", "mlp", "--config", d / "small.toml", "--epochs", 1, "--out", ck, "-q"])
    _ok(condense, ["build", TINY, "--method", "kmeans", "--clusters", 2, "--checkpoint", ck, "--out", h5, "-q"])
    # damaged checkpoints
    _edit_checkpoint(ck, d / "nan.pt", _first_weight(float("nan")))
    _edit_checkpoint(ck, d / "inf.pt", _first_weight(float("inf")))
    _edit_checkpoint(ck, d / "meta-model-str.pt", _set_meta(model="mlp"))
    _edit_checkpoint(ck, d / "meta-dropout.pt", _set_meta(**{"model.arch": "cnn", "model.options": {"dropout": 2.0}}))
    _edit_checkpoint(ck, d / "meta-shape.pt", _set_meta(**{"model.image_shape": "3x16x16"}))
    _edit_checkpoint(ck, d / "meta-dataset.pt", _set_meta(dataset={"name": "synthetic"}))
    _edit_checkpoint(ck, d / "meta-forgotten.pt", _set_meta(forgotten="0,1,2"))
    _edit_checkpoint(ck, d / "meta-seed.pt", _set_meta(data_seed=-4))
    _edit_checkpoint(ck, d / "meta-json.pt", lambda p, m: p.update(meta_json="{not json"))
    _edit_checkpoint(ck, d / "newer.pt", lambda p, m: p.update(format_version=99))
    torch.save({"weights": torch.zeros(3)}, d / "foreign.pt")
    import datetime

    torch.save({"format": "dcforget-checkpoint", "when": datetime.datetime(2020, 1, 1)}, d / "pickle.pt")
    (d / "truncated.pt").write_bytes(ck.read_bytes()[: ck.stat().st_size // 2])
    (d / "garbage.pt").write_bytes(os.urandom(3000))
    (d / "empty.pt").write_bytes(b"")
    (d / "adir").mkdir()
    # damaged condensed sets
    (d / "junk.h5").write_bytes(b"\x89HDF\r\n\x1a\n" + os.urandom(2000))
    (d / "truncated.h5").write_bytes(h5.read_bytes()[: h5.stat().st_size // 2])
    _flip_image_byte(h5, d / "flipped.h5")

    def out_of_range(f):
        f["images"][0, 0, 0, 0] = 1.5

    _h5_copy(h5, d / "range.h5", out_of_range)

    def nan_pixel(f):
        f["images"][0, 0, 0, 0] = float("nan")

    _h5_copy(h5, d / "nan.h5", nan_pixel)
    _h5_copy(h5, d / "bad-range-attr.h5", lambda f: f.attrs.__setitem__("pixel_range", "whatever"))
    _h5_copy(h5, d / "no-labels.h5", lambda f: f.__delitem__("labels"))
    _h5_copy(h5, d / "newer.h5", lambda f: f.attrs.__setitem__("schema_version", 9))
    _h5_copy(h5, d / "bad-csr.h5", lambda f: f["buckets/indptr"].__setitem__(1, 10**6))
    with h5py.File(d / "foreign.h5", "w") as f:
        f["x"] = np.arange(3)
    # configs
    (d / "malformed.toml").write_text("this is [not toml\n")
    (d / "unknown-key.toml").write_text('modle = "mlp"\n')
    (d / "unknown-table.toml").write_text("[trian]\nepochs = 2\n")
    (d / "seed-str.toml").write_text('seed = "zero"\n')
    (d / "per-class-0.toml").write_text("per_class = 0\n")
    (d / "train-scalar.toml").write_text("train = 3\n")
    (d / "train-wd.toml").write_text('[train]\nweight_decay = "lots"\n')
    (d / "unlearn-neg.toml").write_text("[unlearn.finetune]\nepochs = -1\n")
    (d / "unlearn-unknown.toml").write_text("[unlearn.finetune]\nepochz = 1\n")
    (d / "condense-steps.toml").write_text('[condense.fdm]\nsteps = "many"\n')
    (d / "binary.toml").write_bytes(b"\xff\xfe\x00bin")
    (d / "model-options.toml").write_text('model = "mlp"\n[model_options]\nhidden = [32]\n')
    # forget index files
    (d / "idx-text.txt").write_text("1\n2\nthree\n")
    (d / "idx-range.txt").write_text("1\n99999\n")
    (d / "idx-empty.txt").write_text("# nothing\n")
    (d / "idx-binary.txt").write_bytes(b"\x00\xff\xfe\x80")
    np.save(d / "idx-float.npy", np.array([0.5, 1.5]))
    (d / "idx-junk.npy").write_bytes(b"not numpy")
    # reports for `unlearn compare`
    (d / "report-partial.json").write_text(json.dumps({"method": "x", "forget_acc": 0.1}))
    (d / "report-bad.json").write_text("{")
    # Optuna study storages: a journal with a broken line, a binary file, a last line cut short, JSON that is not
    # a journal
    (d / "broken.journal").write_text('{"op_code": 0, "worker_id"\n')
    (d / "binary.journal").write_bytes(b"\xff\xfe\x00\x80binary\n\x00")
    (d / "cut.journal").write_text('{"op_code": 0, "worker_id": "a", "study_name": "s", "direct')
    (d / "list.journal").write_text("[1, 2]\n")
    # a truncated dataset: the files are there, but cut short
    raw = d / "tdata" / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (raw / name).write_bytes(b"\x00\x00\x08\x03" + b"\x00" * 60)
    return d


def _workdir(root: Path) -> Path:
    w = root / "work"
    w.mkdir()
    (w / "exists.pt").write_bytes(b"precious")
    (w / "exists.h5").write_bytes(b"precious")
    (w / "exists.json").write_text("{}")
    (w / "afile").write_text("a file, not a directory")
    (w / "done").mkdir()
    (w / "done" / "model.pt").write_bytes(b"precious")
    (w / "done" / "report.json").write_text("{}")
    (w / "rep-smoke").mkdir()  # a finished reproduction of another preset
    (w / "rep-smoke" / "report.json").write_text(json.dumps({"meta": {"suite": "dcu", "preset": "smoke"}}))
    return w


def snapshot(root: Path) -> dict[str, tuple]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames:
            out[os.path.relpath(os.path.join(dirpath, name), root) + "/"] = ("dir",)
        for name in filenames:
            p = Path(dirpath) / name
            out[str(p.relative_to(root))] = (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
    return out


CK = ["--checkpoint", "{i}/orig.pt"]
TUNE = [
    "tune",
    TINY,
    "--method",
    "finetune",
    "--trials",
    "1",
    "--seeds",
    "1",
    "--store",
    "{w}/jobs",
    "--out",
    "{w}/tuned",
]
REQ = ["--forget", "class:1", "--method", "finetune", "--out", "{w}/u"]
# (id, command, args, a fragment the error line must contain)
CASES = [
    # --- click usage errors: one line, not the usage block
    ("usage-missing-argument", "condense", ["build"], "Missing argument"),
    ("usage-no-such-option", "unlearn", ["train", TINY, "--frobnicate"], "No such option"),
    ("usage-bad-int", "unlearn", ["train", TINY, "--epochs", "many"], "Invalid value for '--epochs'"),
    ("usage-range", "condense", ["build", TINY, "--clusters", "0"], "Invalid value for '--clusters'"),
    ("usage-choice", "unlearn", ["train", TINY, "--preset", "huge"], "Invalid value for '--preset'"),
    ("usage-missing-value", "unlearn", ["--checkpoint"], "requires an argument"),
    ("usage-no-such-command", "attacks", ["mia2"], "No such command"),
    ("usage-missing-option", "attacks", ["mia"], "Missing option '--checkpoint'"),
    (
        "usage-seed-overflow",
        "unlearn",
        ["train", TINY, "--seed", "99999999999999999999999"],
        "Invalid value for '--seed'",
    ),
    ("usage-per-class-overflow", "unlearn", ["train", TINY, "--per-class", "99999999999999999999999"], "--per-class"),
    ("usage-compare-no-reports", "unlearn", ["compare"], "Missing argument"),
    (
        "usage-invert-pool",
        "attacks",
        ["invert", *CK, "--pool", "val", "--out", "{w}/inv"],
        "Invalid value for '--pool'",
    ),
    # --- checkpoints: missing, a directory, foreign, corrupt, non-finite, malformed metadata
    ("ck-missing", "unlearn", ["evaluate", "{i}/none.pt"], "does not exist"),
    ("ck-directory", "unlearn", ["evaluate", "{i}/adir"], "is a directory"),
    ("ck-garbage", "unlearn", ["evaluate", "{i}/garbage.pt"], "not a readable checkpoint"),
    ("ck-empty", "attacks", ["mia", "--checkpoint", "{i}/empty.pt"], "not a readable checkpoint"),
    ("ck-truncated", "unlearn", ["--checkpoint", "{i}/truncated.pt", *REQ], "not a readable checkpoint"),
    ("ck-pickle", "unlearn", ["evaluate", "{i}/pickle.pt"], "pickled objects that are not allowed"),
    ("ck-foreign", "condense", ["build", TINY, "--checkpoint", "{i}/foreign.pt", "--clusters", "2"], "not a dcforget"),
    (
        "ck-toml-as-checkpoint",
        "attacks",
        ["metrics", "--checkpoint", "{i}/malformed.toml"],
        "not a readable checkpoint",
    ),
    (
        "ck-h5-as-checkpoint",
        "unlearn",
        ["offline", "--checkpoint", "{i}/good.h5", "--out", "{w}/off.pt"],
        "not a readable checkpoint",
    ),
    ("ck-nan", "unlearn", ["evaluate", "{i}/nan.pt"], "non-finite weights"),
    ("ck-nan-request", "unlearn", ["--checkpoint", "{i}/nan.pt", *REQ], "non-finite weights"),
    (
        "ck-inf-condense",
        "condense",
        ["build", TINY, "--checkpoint", "{i}/inf.pt", "--clusters", "2", "--out", "{w}/c.h5"],
        "non-finite weights",
    ),
    ("ck-nan-mia", "attacks", ["mia", "--checkpoint", "{i}/nan.pt", "--forget", "class:1"], "non-finite weights"),
    (
        "ck-nan-evaluator",
        "attacks",
        ["invert", *CK, "--evaluator", "{i}/nan.pt", "--forget", "class:1", "--out", "{w}/inv"],
        "non-finite weights",
    ),
    ("ck-meta-model-str", "unlearn", ["evaluate", "{i}/meta-model-str.pt"], "'model' must be a table"),
    ("ck-meta-dropout", "unlearn", ["evaluate", "{i}/meta-dropout.pt"], "does not match its architecture"),
    ("ck-meta-shape", "attacks", ["mia", "--checkpoint", "{i}/meta-shape.pt"], "model.image_shape"),
    ("ck-meta-dataset", "unlearn", ["--checkpoint", "{i}/meta-dataset.pt", *REQ], "malformed metadata"),
    ("ck-meta-forgotten", "attacks", ["mia", "--checkpoint", "{i}/meta-forgotten.pt"], "'forgotten'"),
    ("ck-meta-seed", "unlearn", ["evaluate", "{i}/meta-seed.pt"], "data_seed"),
    ("ck-meta-json", "unlearn", ["evaluate", "{i}/meta-json.pt"], "corrupt metadata"),
    ("ck-newer", "unlearn", ["evaluate", "{i}/newer.pt"], "upgrade dcforget"),
    (
        "ck-epsilon-missing",
        "attacks",
        [
            "epsilon",
            "--unlearned",
            "{i}/none.pt",
            "--unlearned",
            "{i}/orig.pt",
            "--retrained",
            "{i}/orig.pt",
            "--retrained",
            "{i}/orig.pt",
        ],
        "does not exist",
    ),
    # --- condensed sets: missing, foreign, corrupt (checksums), tampered pixels, inconsistent
    ("h5-missing", "condense", ["inspect", "{i}/none.h5"], "does not exist"),
    ("h5-directory", "condense", ["inspect", "{i}/adir"], "is a directory"),
    ("h5-junk", "condense", ["inspect", "{i}/junk.h5"], "not a readable HDF5"),
    ("h5-truncated", "condense", ["preview", "{i}/truncated.h5", "--out", "{w}/g.png"], "truncated"),
    ("h5-flipped-byte", "condense", ["inspect", "{i}/flipped.h5"], "checksum"),
    (
        "h5-flipped-request",
        "unlearn",
        ["--from-condensed", "{i}/flipped.h5", *CK, "--forget", "class:1", "--out", "{w}/u"],
        "checksum",
    ),
    ("h5-out-of-range", "condense", ["inspect", "{i}/range.h5"], "outside [0,1]"),
    (
        "h5-out-of-range-request",
        "unlearn",
        ["--from-condensed", "{i}/range.h5", *CK, "--forget", "class:1", "--out", "{w}/u"],
        "outside [0,1]",
    ),
    ("h5-nan-pixel", "condense", ["evaluate", "{i}/nan.h5", "--epochs", "1"], "NaN"),
    ("h5-bad-pixel-range", "condense", ["inspect", "{i}/bad-range-attr.h5"], "pixel_range"),
    ("h5-no-labels", "condense", ["inspect", "{i}/no-labels.h5"], "missing"),
    ("h5-newer", "condense", ["inspect", "{i}/newer.h5"], "upgrade dcforget"),
    ("h5-bad-csr", "condense", ["inspect", "{i}/bad-csr.h5"], "CSR"),
    ("h5-foreign", "condense", ["inspect", "{i}/foreign.h5"], "not a dcforget condensed set"),
    (
        "h5-checkpoint-as-h5",
        "unlearn",
        ["--from-condensed", "{i}/orig.pt", *CK, "--forget", "class:1", "--out", "{w}/u"],
        "not a readable HDF5",
    ),
    (
        "h5-defend",
        "attacks",
        ["defend", *CK, "--from-condensed", "{i}/truncated.h5", "--no-dp", "--out", "{w}/def"],
        "truncated",
    ),
    # --- forget specs
    (
        "forget-kind",
        "unlearn",
        [*CK, "--forget", "everything", "--method", "finetune", "--out", "{w}/u"],
        "unknown kind",
    ),
    (
        "forget-fraction",
        "unlearn",
        [*CK, "--forget", "random:1.5", "--method", "finetune", "--out", "{w}/u"],
        "outside (0, 1)",
    ),
    ("forget-class", "attacks", ["mia", *CK, "--forget", "class:9"], "outside 0..3"),
    ("forget-classes-twice", "attacks", ["metrics", *CK, "--forget", "classes:1,1"], "listed twice"),
    (
        "forget-index-dir",
        "unlearn",
        [*CK, "--forget", "indices:{i}/adir", "--method", "finetune", "--out", "{w}/u"],
        "is a directory",
    ),
    ("forget-index-missing", "attacks", ["mia", *CK, "--forget", "indices:{i}/none.txt"], "does not exist"),
    ("forget-index-text", "attacks", ["mia", *CK, "--forget", "indices:{i}/idx-text.txt"], "not an integer"),
    (
        "forget-index-range",
        "unlearn",
        [*CK, "--forget", "indices:{i}/idx-range.txt", "--method", "finetune", "--out", "{w}/u"],
        "out of range",
    ),
    ("forget-index-empty", "attacks", ["mia", *CK, "--forget", "indices:{i}/idx-empty.txt"], "selects no sample"),
    ("forget-index-binary", "attacks", ["mia", *CK, "--forget", "indices:{i}/idx-binary.txt"], "not UTF-8"),
    ("forget-index-float-npy", "attacks", ["mia", *CK, "--forget", "indices:{i}/idx-float.npy"], "integer array"),
    ("forget-index-junk-npy", "attacks", ["mia", *CK, "--forget", "indices:{i}/idx-junk.npy"], "not a valid .npy"),
    (
        "forget-whole-set",
        "unlearn",
        [*CK, "--forget", "classes:0,1,2,3", "--method", "finetune", "--out", "{w}/u"],
        "whole training set",
    ),
    # --- methods and their options
    (
        "method-unknown",
        "unlearn",
        [*CK, "--forget", "class:1", "--method", "magic", "--out", "{w}/u"],
        "unknown unlearning method",
    ),
    (
        "method-needs-condensed",
        "unlearn",
        [*CK, "--forget", "class:1", "--method", "condensed", "--out", "{w}/u"],
        "--from-condensed",
    ),
    ("option-negative-epochs", "unlearn", [*CK, *REQ, "--option", "epochs=-1"], "out of range"),
    (
        "option-bool-typo",
        "unlearn",
        ["--from-condensed", "{i}/good.h5", *CK, "--forget", "class:1", "--option", "dsa=ture", "--out", "{w}/u"],
        "must be a boolean",
    ),
    ("option-not-number", "unlearn", [*CK, *REQ, "--option", "lr=fast"], "must be a number"),
    ("option-nan", "unlearn", [*CK, *REQ, "--option", "lr=nan"], "finite"),
    ("option-unknown", "unlearn", [*CK, *REQ, "--option", "speed=3"], "unknown option"),
    ("option-no-equals", "unlearn", [*CK, *REQ, "--option", "epochs"], "key=value"),
    (
        "option-batch-zero",
        "attacks",
        ["defend", *CK, "--method", "finetune", "--option", "batch_size=0", "--no-dp", "--out", "{w}/def"],
        ">= 1",
    ),
    (
        "condense-option-negative",
        "condense",
        ["build", TINY, *CK, "--clusters", "2", "--option", "steps=-5", "--out", "{w}/c.h5"],
        "out of range",
    ),
    (
        "condense-method-unknown",
        "condense",
        ["build", TINY, *CK, "--method", "gan", "--clusters", "2"],
        "unknown condensation method",
    ),
    ("offline-option", "unlearn", ["offline", *CK, "--option", "iterations=-3", "--out", "{w}/off.pt"], "out of range"),
    (
        "epochs-without-method-epochs",
        "unlearn",
        [*CK, "--forget", "class:1", "--method", "fisher", "--epochs", "2", "--out", "{w}/u"],
        "has no epochs",
    ),
    # --- datasets
    ("dataset-unknown", "unlearn", ["train", "imagenet", "--out", "{w}/m.pt"], "unknown dataset"),
    (
        "dataset-bad-option",
        "condense",
        ["build", "synthetic:colour=1", "--clusters", "2", "--model", "mlp"],
        "unknown synthetic dataset option",
    ),
    ("dataset-options-on-cifar", "unlearn", ["train", "cifar10:size=8", "--out", "{w}/m.pt"], "takes no options"),
    (
        "dataset-missing",
        "unlearn",
        ["train", "cifar10", "--data-dir", "{w}/nodata", "--no-download", "--out", "{w}/m.pt"],
        "not found",
    ),
    (
        "dataset-truncated",
        "unlearn",
        ["train", "mnist", "--data-dir", "{i}/tdata", "--out", "{w}/m.pt"],
        "present but unreadable or corrupt",
    ),
    ("dataset-checkpoint-mismatch", "condense", ["build", "mnist", *CK, "--clusters", "2"], "not 'mnist'"),
    # --- presets and configs
    ("config-missing", "unlearn", ["train", TINY, "--config", "{i}/none.toml", "--out", "{w}/m.pt"], "does not exist"),
    ("config-directory", "unlearn", ["train", TINY, "--config", "{i}/adir", "--out", "{w}/m.pt"], "--config"),
    (
        "config-malformed",
        "condense",
        ["build", TINY, "--config", "{i}/malformed.toml", "--clusters", "2"],
        "not valid TOML",
    ),
    ("config-binary", "unlearn", ["train", TINY, "--config", "{i}/binary.toml", "--out", "{w}/m.pt"], "not UTF-8"),
    (
        "config-unknown-key",
        "unlearn",
        ["train", TINY, "--config", "{i}/unknown-key.toml", "--out", "{w}/m.pt"],
        "unknown key(s) or table(s): modle",
    ),
    (
        "config-unknown-table",
        "condense",
        ["build", TINY, "--config", "{i}/unknown-table.toml", "--clusters", "2"],
        "trian",
    ),
    (
        "config-seed-type",
        "unlearn",
        ["train", TINY, "--config", "{i}/seed-str.toml", "--out", "{w}/m.pt"],
        "seed must be a int",
    ),
    (
        "config-per-class-0",
        "condense",
        ["build", TINY, "--config", "{i}/per-class-0.toml", "--clusters", "2", "--model", "mlp"],
        "per_class must be >= 1",
    ),
    (
        "config-train-scalar",
        "unlearn",
        ["train", TINY, "--config", "{i}/train-scalar.toml", "--out", "{w}/m.pt"],
        "must be a table",
    ),
    (
        "config-train-type",
        "unlearn",
        ["train", TINY, "--config", "{i}/train-wd.toml", "--out", "{w}/m.pt"],
        "weight_decay",
    ),
    (
        "config-model-options",
        "unlearn",
        ["train", TINY, "--config", "{i}/model-options.toml", "--out", "{w}/m.pt"],
        "bad options for model 'mlp'",
    ),
    ("config-unlearn-negative", "unlearn", [*CK, *REQ, "--config", "{i}/unlearn-neg.toml"], "out of range"),
    ("config-unlearn-unknown", "unlearn", [*CK, *REQ, "--config", "{i}/unlearn-unknown.toml"], "epochz"),
    (
        "config-condense-type",
        "condense",
        ["build", TINY, *CK, "--clusters", "2", "--config", "{i}/condense-steps.toml"],
        "must be an integer",
    ),
    ("preset-unknown", "condense", ["evaluate", "{i}/good.h5", "--preset", "tiny"], "Invalid value for '--preset'"),
    ("reproduce-unknown-suite", "unlearn", ["reproduce", "nosuch", "--preset", "smoke", "--out", "{w}/rep"], "nosuch"),
    # --- conflicting flags
    ("conflict-checkpoint-model", "condense", ["build", TINY, *CK, "--model", "mlp", "--clusters", "2"], "conflict"),
    ("conflict-checkpoint-epochs", "condense", ["build", TINY, *CK, "--epochs", "3", "--clusters", "2"], "conflict"),
    ("conflict-ipc-bucket-method", "condense", ["build", TINY, *CK, "--method", "fdm", "--ipc", "2"], "not --ipc"),
    (
        "conflict-clusters-ipc-method",
        "condense",
        ["build", TINY, *CK, "--method", "herding", "--ipc", "2", "--clusters", "3"],
        "not --clusters",
    ),
    (
        "conflict-condensed-model-method",
        "unlearn",
        [*CK, "--forget", "class:1", "--condensed-model", "--method", "retrain", "--out", "{w}/u"],
        "two different methods",
    ),
    (
        "conflict-request-options-subcommand",
        "unlearn",
        ["--checkpoint", "{i}/orig.pt", "train", TINY, "--out", "{w}/m.pt"],
        "options of an unlearning request",
    ),
    # --- outputs: existing without --force, a directory, under a file, unwritable
    ("out-exists-train", "unlearn", ["train", TINY, "--model", "mlp", "--out", "{w}/exists.pt"], "already exists"),
    (
        "out-exists-build",
        "condense",
        ["build", TINY, *CK, "--clusters", "2", "--out", "{w}/exists.h5"],
        "already exists",
    ),
    ("out-exists-preview", "condense", ["preview", "{i}/good.h5", "--out", "{w}/exists.h5"], "already exists"),
    (
        "out-exists-request",
        "unlearn",
        [*CK, "--forget", "class:1", "--method", "finetune", "--out", "{w}/done"],
        "already exists",
    ),
    ("out-exists-mia", "attacks", ["mia", *CK, "--forget", "class:1", "--out", "{w}/exists.json"], "already exists"),
    (
        "out-exists-defend",
        "attacks",
        ["defend", *CK, "--method", "finetune", "--no-dp", "--out", "{w}/done"],
        "already exists",
    ),
    ("out-is-directory", "unlearn", ["train", TINY, "--model", "mlp", "--out", "{w}/done"], "is a directory"),
    (
        "out-under-file",
        "condense",
        ["build", TINY, *CK, "--clusters", "2", "--out", "{w}/afile/c.h5"],
        "not a directory",
    ),
    ("out-under-file-deep", "unlearn", [*CK, *REQ[:-2], "--out", "{w}/afile/x/y"], "not a directory"),
    ("out-dir-is-file", "attacks", ["invert", *CK, "--forget", "class:1", "--out", "{w}/afile"], "is a file"),
    (
        "out-dir-under-file",
        "attacks",
        ["invert", *CK, "--forget", "class:1", "--out", "{w}/afile/inv"],
        "not a directory",
    ),
    (
        "out-reproduce-under-file",
        "unlearn",
        ["reproduce", "dcu", "--preset", "smoke", "--out", "{w}/afile/rep"],
        "not a directory",
    ),
    (
        "out-unwritable-sys",
        "unlearn",
        ["train", TINY, "--model", "mlp", "--out", "/sys/dcforget-test/a/m.pt"],
        "cannot write",
    ),
    (
        "out-unwritable-nested-fails-late",
        "unlearn",
        [*CK, "--forget", "class:9", "--method", "finetune", "--out", "{w}/a/b/c"],
        "outside 0..3",
    ),
    # --- experiments: study storages, job stores, suite names, --only, another preset's run in --out
    (
        "tune-study-broken-journal",
        "experiments",
        [*TUNE, "--study", "{i}/broken.journal"],
        "not a readable Optuna journal",
    ),
    ("tune-study-binary", "experiments", [*TUNE, "--study", "{i}/binary.journal"], "not a readable Optuna journal"),
    ("tune-study-cut-short", "experiments", [*TUNE, "--study", "{i}/cut.journal"], "incomplete"),
    ("tune-study-not-a-journal", "experiments", [*TUNE, "--study", "{i}/list.journal"], "not an operation"),
    ("tune-study-directory", "experiments", [*TUNE, "--study", "{i}/adir"], "not a file"),
    ("tune-study-sqlite-under-file", "experiments", [*TUNE, "--study", "sqlite:///{w}/afile/s.db"], "not a directory"),
    (
        "tune-study-sqlite-not-a-db",
        "experiments",
        [*TUNE, "--study", "sqlite:///{w}/exists.json"],
        "not a readable sqlite database",
    ),
    ("tune-study-no-driver", "experiments", [*TUNE, "--study", "postgresql://u@localhost/db"], "driver"),
    ("tune-study-unknown-dialect", "experiments", [*TUNE, "--study", "nosuchdb://x/y"], "cannot be used"),
    (
        "tune-store-under-file",
        "experiments",
        [*TUNE[:-4], "--store", "{w}/afile/sub", "--out", "{w}/tuned"],
        "not a directory",
    ),
    (
        "tune-out-under-file",
        "experiments",
        [*TUNE[:-4], "--store", "{w}/jobs", "--out", "{w}/afile/tuned"],
        "not a directory",
    ),
    (
        "ulira-store-under-file",
        "attacks",
        ["ulira", TINY, "--store", "{w}/afile/sub", "--out", "{w}/u.json"],
        "not a directory",
    ),
    (
        "check-tuned-store-under-file",
        "experiments",
        ["check-tuned", TUNED_FILE, "--store", "{w}/afile/sub", "--out", "{w}/check.json"],
        "not a directory",
    ),
    (
        "reproduce-suite-dotdot",
        "experiments",
        ["reproduce", "../dcu", "--preset", "smoke", "--out", "{w}/rep"],
        "known suites: benchmark",
    ),
    (
        "reproduce-suite-absolute",
        "experiments",
        ["reproduce", "{i}", "--preset", "smoke", "--out", "{w}/rep"],
        "unknown experiment suite",
    ),
    (
        "reproduce-only-comma",
        "experiments",
        ["reproduce", "dcu", "--preset", "smoke", "--only", ",", "--out", "{w}/rep"],
        "--only",
    ),
    (
        "reproduce-only-blank-name",
        "unlearn",
        ["reproduce", "dcu", "--preset", "smoke", "--only", "random-forgetting, ", "--out", "{w}/rep"],
        "--only",
    ),
    (
        "reproduce-only-unknown",
        "experiments",
        ["reproduce", "dcu", "--preset", "smoke", "--only", "nope", "--out", "{w}/rep"],
        "unknown experiment(s) nope",
    ),
    (
        "reproduce-other-preset",
        "experiments",
        ["reproduce", "dcu", "--preset", "cpu", "--report-only", "--out", "{w}/rep-smoke"],
        "--force",
    ),
    (
        "reproduce-other-suite",
        "experiments",
        ["reproduce", "choices", "--preset", "smoke", "--report-only", "--out", "{w}/rep-smoke"],
        "suite 'dcu'",
    ),
    # --- reports for compare
    ("compare-missing", "unlearn", ["compare", "{i}/none.json"], "not an unlearning report"),
    ("compare-partial", "unlearn", ["compare", "{i}/report-partial.json"], "not an unlearning report"),
    ("compare-malformed", "unlearn", ["compare", "{i}/report-bad.json"], "not an unlearning report"),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input(case, inputs, tmp_path, monkeypatch):
    name, command, args, fragment = case
    if name == "out-unwritable-sys" and os.access("/sys", os.W_OK) and not Path("/sys").is_dir():
        pytest.skip("no /sys here")
    if name == "tune-study-no-driver":
        import importlib.util

        if importlib.util.find_spec("psycopg2") is not None:
            pytest.skip("a PostgreSQL driver is installed here")
    work = _workdir(tmp_path)
    monkeypatch.chdir(work)  # default output paths (runs/...) land here too
    monkeypatch.delenv("DCFORGET_DATA_DIR", raising=False)
    args = [a.format(i=inputs, w=work) for a in args]
    before_work, before_inputs = snapshot(work), snapshot(inputs)
    res = CliRunner().invoke(MAINS[command], args)
    assert res.exit_code == 2, (res.output, res.exception)
    assert "Traceback" not in res.output
    assert res.stdout == "", res.stdout
    lines = res.stderr.splitlines()
    assert len(lines) == 1 and res.stderr.endswith("\n"), res.stderr
    assert lines[0].startswith("error: "), lines[0]
    assert fragment in lines[0], lines[0]
    assert snapshot(work) == before_work
    assert snapshot(inputs) == before_inputs


def test_matrix_is_large_enough():
    assert len(CASES) >= 60 and len({c[0] for c in CASES}) == len(CASES)
    assert {c[1] for c in CASES} == set(MAINS)


def test_help_still_works():
    for main in MAINS.values():
        res = CliRunner().invoke(main, ["--help"])
        assert res.exit_code == 0 and "Usage" in res.output
    res = CliRunner().invoke(condense, ["build", "--help"])
    assert res.exit_code == 0 and "--checkpoint" in res.output


def test_console_script_one_line(tmp_path):
    import subprocess
    import sys

    exe = Path(sys.executable).parent / "attacks"
    res = subprocess.run([str(exe), "mia", "--checkpointt", "x"], capture_output=True, text=True, cwd=tmp_path)
    assert res.returncode == 2 and res.stdout == ""
    assert res.stderr.count("\n") == 1 and res.stderr.startswith("error: No such option")
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------ the root causes
def test_unreadable_checkpoint_message_has_no_unsafe_advice(inputs):
    from dcforget.checkpoint import read_checkpoint_meta
    from dcforget.errors import CheckpointError

    with pytest.raises(CheckpointError) as err:
        read_checkpoint_meta(inputs / "pickle.pt")
    msg = str(err.value)
    assert "weights_only" not in msg and "add_safe_globals" not in msg and "\x1b" not in msg and "\n" not in msg
    assert "datetime" in msg  # what it refused is still named


def test_non_finite_weights_refused_at_load(inputs):
    from dcforget.checkpoint import load_checkpoint
    from dcforget.errors import CheckpointError

    for name in ("nan.pt", "inf.pt"):
        with pytest.raises(CheckpointError, match="non-finite"):
            load_checkpoint(inputs / name)
    assert torch.isfinite(next(load_checkpoint(inputs / "orig.pt").model.parameters())).all()


def _tiny_set(**kw):
    from dcforget.condensed_store import CondensedSet

    base = dict(
        images=torch.rand(4, 3, 8, 8),
        labels=torch.tensor([0, 0, 1, 1]),
        bucket_indptr=torch.tensor([0, 1, 2, 3, 4]),
        bucket_indices=torch.tensor([0, 1, 2, 3]),
        source_indices=torch.tensor([0, 1, 2, 3]),
        method="kmeans",
        dataset="synthetic",
        num_classes=2,
        norm_mean=(0.5,) * 3,
        norm_std=(0.25,) * 3,
        train_size=4,
        train_fingerprint="ab" * 32,
    )
    base.update(kw)
    return CondensedSet(**base)


def test_condensed_datasets_carry_checksums_and_old_files_still_load(tmp_path):
    from dcforget.condensed_store import CondensedFileError, read_condensed, write_condensed

    path = write_condensed(tmp_path / "c.h5", _tiny_set())
    with h5py.File(path) as f:
        names = []
        f.visititems(lambda n, o: names.append(n) if isinstance(o, h5py.Dataset) else None)
        assert names and all(f[n].fletcher32 for n in names if f[n].ndim)
    # an old file: the same datasets without checksums
    with h5py.File(path, "a") as f:
        for n in names:
            data = f[n][()]
            del f[n]
            f.create_dataset(n, data=data)
        assert not f["images"].fletcher32
    assert torch.equal(read_condensed(path).labels, torch.tensor([0, 0, 1, 1]))
    with h5py.File(path, "a") as f:  # the pixel check applies to old files too
        f["images"][1, 0, 0, 0] = -0.5
    with pytest.raises(CondensedFileError, match=r"outside \[0,1\]"):
        read_condensed(path)


def test_pixel_range_attribute(tmp_path):
    from dcforget.condensed_store import CondensedFileError, read_condensed, write_condensed

    wild = torch.rand(4, 3, 8, 8) * 3 - 1
    with pytest.raises(CondensedFileError, match="pixel_range"):
        write_condensed(tmp_path / "u.h5", _tiny_set(images=wild))
    assert not (tmp_path / "u.h5").exists() and list(tmp_path.iterdir()) == []
    path = write_condensed(tmp_path / "u.h5", _tiny_set(images=wild, pixel_range="unconstrained"))
    with h5py.File(path) as f:
        assert f.attrs["pixel_range"] == "unconstrained"
    assert read_condensed(path).pixel_range == "unconstrained"
    edge = torch.rand(4, 3, 8, 8)
    edge[0, 0, 0, 0], edge[1, 0, 0, 0] = 1 + 5e-7, -5e-7  # float noise of a convex blend is tolerated
    read_condensed(write_condensed(tmp_path / "e.h5", _tiny_set(images=edge)))


def test_check_writable_probes_and_creates_nothing(tmp_path, monkeypatch):
    import tempfile

    from dcforget import io
    from dcforget.errors import OutputExistsError

    target = tmp_path / "a" / "b" / "out.pt"
    assert io.check_writable(target, False) == target and list(tmp_path.iterdir()) == []

    def refuse(*args, **kw):
        raise PermissionError(30, "Read-only file system")

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(OutputExistsError, match="not writable"):
        io.check_writable(target, False)
    with pytest.raises(OutputExistsError):
        with io.atomic_path(target) as tmp:
            tmp.write_text("x")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only directories")
def test_read_only_directory_is_refused_before_work(tmp_path):
    from dcforget.errors import OutputExistsError
    from dcforget.io import check_writable

    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o555)
    try:
        with pytest.raises(OutputExistsError, match="not writable"):
            check_writable(ro / "sub" / "x.pt", False)
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o755)


def test_atomic_path_cleans_stale_temporaries_and_fsyncs(tmp_path, monkeypatch):
    from dcforget import io

    host = io._token().rsplit("-", 1)[0]
    dead = 2**22 + 12345  # above the default pid_max
    stale = [tmp_path / ".m.pt.abcdefgh.tmp", tmp_path / f".m.pt.{host}-{dead}.abcdefgh.tmp"]
    live = tmp_path / f".m.pt.{host}-1.abcdefgh.tmp"  # pid 1 is alive: a concurrent writer
    other = tmp_path / ".other.pt.abcdefgh.tmp"
    for p in (*stale, live, other):
        p.write_text("half-written")
    old = tmp_path / ".m.pt.elsewhere-7.abcdefgh.tmp"  # another host's, a day old
    old.write_text("x")
    os.utime(old, (1, 1))
    synced = []
    real_fsync = os.fsync
    monkeypatch.setattr(os, "fsync", lambda fd: (synced.append(fd), real_fsync(fd)))
    with io.atomic_path(tmp_path / "m.pt") as tmp:
        tmp.write_text("done")
    assert (tmp_path / "m.pt").read_text() == "done" and len(synced) >= 1
    assert not any(p.exists() for p in (*stale, old)) and live.exists() and other.exists()


def test_atomic_paths_all_or_nothing(tmp_path, monkeypatch):
    from dcforget.io import atomic_paths

    out = tmp_path / "x" / "run"
    with pytest.raises(RuntimeError):
        with atomic_paths([out / "model.pt", out / "report.json"]) as (m, r):
            m.write_text("model")
            raise RuntimeError("the report could not be written")
    assert list(tmp_path.iterdir()) == []
    with atomic_paths([out / "model.pt", out / "report.json"]) as (m, r):
        m.write_text("model")
        r.write_text("report")
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "report.json"]
    # an existing directory, --force, and the second rename fails: the first is rolled back, the old files kept
    real = os.replace
    monkeypatch.setattr(
        os,
        "replace",
        lambda a, b: (
            (_ for _ in ()).throw(OSError(28, "No space left"))
            if str(b).endswith("report.json") and str(a).endswith(".tmp")
            else real(a, b)
        ),
    )
    with pytest.raises(OSError):
        with atomic_paths([out / "model.pt", out / "report.json"], force=True) as (m, r):
            m.write_text("new model")
            r.write_text("new report")
    monkeypatch.setattr(os, "replace", real)
    assert (out / "model.pt").read_text() == "model" and (out / "report.json").read_text() == "report"
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "report.json"]


def test_unlearning_request_writes_model_and_report_together(inputs, tmp_path, monkeypatch):
    out = tmp_path / "r" / "u"
    args = ["--checkpoint", str(inputs / "orig.pt"), "--forget", "class:1", "--method", "none", "--out", str(out)]
    saved = []
    real_save = torch.save
    monkeypatch.setattr(torch, "save", lambda obj, f, *a, **k: (saved.append(f), real_save(obj, f, *a, **k)))
    monkeypatch.setattr(Path, "write_text", lambda self, *a, **k: (_ for _ in ()).throw(OSError(28, "No space left")))
    res = CliRunner().invoke(unlearn, args)
    monkeypatch.undo()
    assert saved and res.exit_code != 0  # the model was written (to a temporary), then the report failed
    assert list(tmp_path.iterdir()) == []  # no model without its report, no directory
    res = CliRunner().invoke(unlearn, args)
    assert res.exit_code == 0, res.output
    assert sorted(p.name for p in out.iterdir()) == ["model.pt", "report.json"]


@pytest.mark.parametrize(
    "value, ok", [("true", True), ("No", True), ("1", True), ("0", True), ("ture", False), ("", False), ("2", False)]
)
def test_boolean_options_are_strict(value, ok):
    from dcforget.config import coerce_option
    from dcforget.errors import ConfigError

    if ok:
        assert coerce_option("dsa", value, True) is (value.lower() in ("true", "1", "yes"))
    else:
        with pytest.raises(ConfigError, match="boolean"):
            coerce_option("dsa", value, True)


def test_every_method_default_passes_its_own_option_check():
    """No registered default is refused by the strict rules (e.g. a legitimately negative default)."""
    from condense.methods import CONDENSERS
    from dcforget.config import coerce_option
    from unlearn.methods import METHODS
    from unlearn.offline import OFFLINE_DEFAULTS

    tables = [CONDENSERS.get(n).defaults for n in CONDENSERS.names()]
    tables += [METHODS.get(n).defaults for n in METHODS.names()] + [OFFLINE_DEFAULTS]
    for defaults in tables:
        for key, value in defaults.items():
            text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
            assert coerce_option(key, value, value) == value
            if value != "":
                assert coerce_option(key, text, value) == value, (key, value)


def test_config_laid_out_like_a_preset_is_accepted(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text(
        'model = "mlp"\nper_class = 20\n[train]\nepochs = 1\n[evaluate]\nepochs = 5\n[condense.fdm]\nsteps = 5\n'
    )
    res = CliRunner().invoke(unlearn, ["train", TINY, "--config", str(cfg), "--out", str(tmp_path / "m.pt"), "-q"])
    assert res.exit_code == 0, res.output


def test_failed_download_takes_back_what_it_created(tmp_path, monkeypatch):
    from dcforget import datasets
    from dcforget.errors import DatasetError
    from dcforget.tv import torchvision

    class Fake:
        def __init__(self, root, download=False, **kw):
            if download:
                (Path(root) / "MNIST" / "raw").mkdir(parents=True)
                (Path(root) / "MNIST" / "raw" / "partial.gz").write_bytes(b"half")
                raise OSError("network unreachable")
            raise RuntimeError("Dataset not found.")

    monkeypatch.setattr(torchvision.datasets, "MNIST", Fake)
    root = tmp_path / "d" / "data"
    with pytest.raises(DatasetError, match="could not be downloaded"):
        datasets._torchvision_split("MNIST", root, True, "MNIST/raw/{train-images-idx3-ubyte}", train=True)
    assert list(tmp_path.iterdir()) == []
    root.mkdir(parents=True)
    (root / "keep.txt").write_text("mine")
    with pytest.raises(DatasetError, match="could not be downloaded"):
        datasets._torchvision_split("MNIST", root, True, "MNIST/raw/{train-images-idx3-ubyte}", train=True)
    assert [p.name for p in root.iterdir()] == ["keep.txt"]


# ------------------------------------------------------------------ messages that say exactly what is wrong
def _damage_object_header(src: Path, dst: Path) -> Path:
    """Flip bytes inside an HDF5 object header (signature ``OHDR``) until h5py cannot open an object: the file
    still opens, but reading it raised KeyError/OSError from h5py before it became a typed error."""
    from dcforget.condensed_store import CondensedFileError, read_condensed

    raw = src.read_bytes()
    starts = [i for i in range(len(raw)) if raw.startswith(b"OHDR", i)] or [96]
    for start in starts:
        for delta in (4, 7, 10, 16, 25):
            b = bytearray(raw)
            b[start + delta] ^= 0xFF
            dst.write_bytes(bytes(b))
            try:
                read_condensed(dst)
            except CondensedFileError as err:
                if "damaged file" in str(err):
                    return dst
    raise AssertionError("no flipped object-header byte made the file unreadable")


def _state_edit(fn):
    def edit(payload, meta):
        sd = dict(payload["state_dict"])
        fn(sd)
        payload["state_dict"] = sd

    return edit


@pytest.fixture(scope="module")
def msg_inputs(inputs):
    d = inputs
    _damage_object_header(d / "good.h5", d / "damaged-header.h5")
    (d / "text.pt").write_text("not a checkpoint\n" * 20)
    (d / "random.pt").write_bytes(np.random.default_rng(0).bytes(3000))  # starts with neither PK nor a pickle
    first = "beginning.2.weight"

    def rename(sd):
        sd["extra.weight"] = sd.pop("intermediate.0.weight")

    def reshape(sd):
        sd[first] = torch.zeros(sd[first].shape[0], sd[first].shape[1] - 1)

    _edit_checkpoint(d / "orig.pt", d / "arch-keys.pt", _state_edit(rename))
    _edit_checkpoint(d / "orig.pt", d / "arch-shape.pt", _state_edit(reshape))
    return d


MESSAGE_CASES = [
    (
        "h5-damaged-header-inspect",
        "condense",
        ["inspect", "{i}/damaged-header.h5"],
        "damaged-header.h5: damaged file, not a valid condensed set",
    ),
    (
        "h5-damaged-header-preview",
        "condense",
        ["preview", "{i}/damaged-header.h5", "--out", "{w}/g.png"],
        "damaged file, not a valid condensed set",
    ),
    (
        "h5-damaged-header-request",
        "unlearn",
        ["--from-condensed", "{i}/damaged-header.h5", *CK, "--forget", "class:1", "--out", "{w}/u"],
        "damaged file, not a valid condensed set",
    ),
    (
        "h5-no-labels-says-which",
        "condense",
        ["inspect", "{i}/no-labels.h5"],
        "incomplete file, not a valid condensed set: dataset 'labels' is missing",
    ),
    (
        "h5-newer-plain-number",
        "condense",
        ["inspect", "{i}/newer.h5"],
        "schema version 9 is newer than this toolkit reads (it supports version 1)",
    ),
    (
        "conflict-epochs-option",
        "unlearn",
        [*CK, *REQ, "--epochs", "1", "--option", "epochs=3"],
        "--epochs 1 and --option epochs=3 conflict",
    ),
    (
        "conflict-option-twice",
        "unlearn",
        [*CK, *REQ, "--option", "lr=0.1", "--option", "lr=0.2"],
        "--option lr=0.1 and --option lr=0.2 (of method 'finetune') conflict",
    ),
    (
        "conflict-option-twice-condense",
        "condense",
        ["build", TINY, *CK, "--clusters", "2", "--option", "steps=3", "--option", "steps=4", "--out", "{w}/c.h5"],
        "conflict",
    ),
    (
        "forget-index-device",
        "attacks",
        ["mia", *CK, "--forget", "indices:/dev/zero"],
        "forget index file '/dev/zero' is not a regular file",
    ),
    (
        "ck-text-file",
        "unlearn",
        ["evaluate", "{i}/text.pt"],
        "not a weights-only torch checkpoint: a text file, not the zip archive torch.save writes",
    ),
    (
        "ck-truncated-says-so",
        "unlearn",
        ["evaluate", "{i}/truncated.pt"],
        "truncated or damaged checkpoint file: its zip archive is incomplete, with no central directory)",
    ),
    (
        "ck-random-bytes",
        "attacks",
        ["mia", "--checkpoint", "{i}/random.pt"],
        "not a weights-only torch checkpoint: binary data of another format",
    ),
    ("ck-h5-says-hdf5", "unlearn", ["evaluate", "{i}/good.h5"], "an HDF5 file, not the zip archive"),
    (
        "ck-arch-keys",
        "unlearn",
        ["evaluate", "{i}/arch-keys.pt"],
        "does not match its architecture (mlp): missing key intermediate.0.weight; unexpected key extra.weight",
    ),
    (
        "ck-arch-shape",
        "attacks",
        ["mia", "--checkpoint", "{i}/arch-shape.pt"],
        "beginning.2.weight has shape [32, 767] in the file, the architecture needs [32, 768]",
    ),
    ("forget-overfit-argument", "attacks", ["mia", *CK, "--forget", "overfit:0.1"], "overfit takes no argument"),
    (
        "device-cuda-index",
        "unlearn",
        ["evaluate", "{i}/orig.pt", "--device", "cuda:7"],
        "--device cuda:7 was asked for but",
    ),
]


@pytest.mark.parametrize("case", MESSAGE_CASES, ids=[c[0] for c in MESSAGE_CASES])
def test_bad_input_message(case, msg_inputs, tmp_path, monkeypatch):
    if case[0] == "device-cuda-index" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has a cuda:7")
    test_bad_input(case, msg_inputs, tmp_path, monkeypatch)


def test_damaged_object_headers_give_typed_errors(inputs, tmp_path):
    """Every flipped byte in every object header: the file loads, or the typed error; never h5py's KeyError."""
    from dcforget.condensed_store import CondensedFileError, read_condensed

    raw = (inputs / "good.h5").read_bytes()
    starts = [i for i in range(len(raw)) if raw.startswith(b"OHDR", i)]
    assert starts
    damaged = 0
    for start in starts:
        for delta in range(4, 40, 3):
            b = bytearray(raw)
            b[start + delta] ^= 0xFF
            path = tmp_path / f"f{start}-{delta}.h5"
            path.write_bytes(bytes(b))
            try:
                read_condensed(path)
            except CondensedFileError as err:
                damaged += "damaged" in str(err)
                assert str(err).startswith(f"{path}: ") and "\n" not in str(err)
    assert damaged


def _help_examples(main, name):
    import shlex

    text = main.help.replace("\\\n", " ")
    return [shlex.split(line)[1:] for line in text.splitlines() if line.strip().startswith(name + " ")]


@pytest.mark.parametrize("name", ["attacks", "condense", "unlearn", "experiments"])
def test_help_examples_parse(name):
    """Each example in a CLI's --help goes through click's parser as written (options, repeats, arguments)."""
    import click

    from experiments.cli import main as experiments

    main = {**MAINS, "experiments": experiments}[name]
    examples = _help_examples(main, name)
    assert examples
    for argv in examples:
        argv = list(argv)
        if argv and argv[0] in main.commands:
            ctx = main.commands[argv[0]].make_context(argv[0], argv[1:], parent=click.Context(main, info_name=name))
        else:
            ctx = main.make_context(name, list(argv))
            assert not ctx.args and not getattr(ctx, "_protected_args", []), argv
        assert ctx.params


def test_epsilon_takes_repeated_unlearned_not_a_list():
    import click

    from attacks.cli import epsilon_cmd

    parent = click.Context(attacks, info_name="attacks")
    ctx = epsilon_cmd.make_context(
        "epsilon",
        ["--unlearned", "u0.pt", "--unlearned", "u1.pt", "--retrained", "r0.pt", "--retrained", "r1.pt"],
        parent=parent,
    )
    assert ctx.params["unlearned"] == ("u0.pt", "u1.pt")
    with pytest.raises(click.UsageError, match="unexpected extra argument"):
        epsilon_cmd.make_context("epsilon", ["--unlearned", "u0.pt", "u1.pt", "--retrained", "r0.pt"], parent=parent)


# ------------------------------------------------------------------------------------------ experiments, stores
def test_ctrl_c_is_one_error_line_and_leaves_nothing(inputs, tmp_path, monkeypatch):
    """Ctrl-C in any command (the shared Group): ``error: interrupted``, exit 130 (128 + SIGINT, as a shell reports
    it), no click ``Aborted!``, and no output or temporary left."""
    work = _workdir(tmp_path)
    before = snapshot(work)

    def interrupt(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(torch, "save", interrupt)  # while the output is being written
    res = CliRunner().invoke(
        unlearn,
        [
            "train",
            TINY,
            "--model",
            "mlp",
            "--config",
            str(inputs / "small.toml"),
            "--epochs",
            "1",
            "--out",
            str(work / "m.pt"),
            "-q",
        ],
    )
    assert res.exit_code == 130, (res.output, res.exception)
    assert res.stderr == "error: interrupted\n" and "Aborted" not in res.output
    assert snapshot(work) == before
    monkeypatch.undo()
    import click

    from dcforget.cli import Group

    @click.group(cls=Group)
    def g():
        pass

    @g.command()
    def prompt():
        raise click.exceptions.Abort()

    res = CliRunner().invoke(g, ["prompt"])
    assert res.exit_code == 130 and res.stderr == "error: interrupted\n"


def test_damaged_job_store_entry_is_recomputed_by_the_cli(tmp_path, caplog):
    """A truncated arrays.npz in the job store (attacks ulira): a warning naming the entry, the job recomputed and
    its entry replaced, the same report; not a BadZipFile traceback."""
    store, out = tmp_path / "jobs", tmp_path / "u.json"
    args = [
        "ulira",
        "synthetic:classes=2,train=12,test=4,size=8",
        "--model",
        "mlp",
        "--epochs",
        "1",
        "--splits",
        "4",
        "--forget-sets",
        "2",
        "--forget-fraction",
        "0.5",
        "--splits-per-job",
        "4",
        "--bootstrap",
        "0",
        "--min-observations",
        "2",
        "--option",
        "epochs=1",
        "--untuned",
        "--device",
        "cpu",
        "-q",
        "--store",
        str(store),
    ]
    res = CliRunner().invoke(attacks, [*args, "--out", str(out)])
    assert res.exit_code == 0, res.output
    npzs = sorted(store.rglob("arrays.npz"))
    assert len(npzs) == 2  # the references job and the method's
    npz = npzs[0]
    npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    with caplog.at_level("WARNING", logger="dcforget.jobs"):
        res = CliRunner().invoke(attacks, [*args, "--out", str(tmp_path / "again.json")])
    assert res.exit_code == 0, res.output
    assert str(npz.parent) in caplog.text and "recomputing" in caplog.text
    assert "(1 computed now, 1 read back)" in res.stdout
    assert json.loads(out.read_text())["attacks"] == json.loads((tmp_path / "again.json").read_text())["attacks"]
    assert [p.name for p in npz.parent.parent.iterdir()] == [npz.parent.name]  # no damaged copy, no temporary


def test_report_only_counts_an_unreadable_cell_as_missing_and_says_nothing_ran(tmp_path):
    out = tmp_path / "rep"
    cell = out / "cells" / "random-forgetting" / "mlp-random_0.1-retrain-s0.json"
    cell.parent.mkdir(parents=True)
    cell.write_text('{"experiment": "random-forgetting", "settings": "ab')  # cut short
    args = [
        "reproduce",
        "dcu",
        "--preset",
        "smoke",
        "--only",
        "random-forgetting",
        "--seeds",
        "1",
        "--report-only",
        "--out",
        str(out),
    ]
    res = CliRunner().invoke(experiments, args)
    assert res.exit_code == 0, res.output
    assert "mlp-random_0.1-retrain-s0 cannot be read (JSONDecodeError" in res.stderr
    last = [line for line in res.stderr.splitlines() if "none run" in line]
    assert last and "0 read back" in last[0] and "24 missing (1 of them unreadable)" in last[0], res.stderr
    assert "run now" not in res.stderr
    meta = json.loads((out / "report.json").read_text())["meta"]
    assert meta["cells_damaged"] == ["random-forgetting/mlp-random_0.1-retrain-s0"]
    assert "random-forgetting/mlp-random_0.1-retrain-s0" in meta["cells_missing"]
    # another preset's report in --out: refused (one line), then replaced with --force
    before = snapshot(out)
    res = CliRunner().invoke(experiments, [*args[:3], "cpu", *args[4:]])
    assert res.exit_code == 2 and res.stderr.startswith("error: ") and res.stderr.count("\n") == 1
    assert "preset 'smoke'" in res.stderr and snapshot(out) == before
    res = CliRunner().invoke(experiments, [*args[:3], "cpu", *args[4:], "--force"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "report.json").read_text())["meta"]["preset"] == "cpu"


def test_only_keeps_the_other_experiments_already_in_out(tmp_path):
    """`--only A` into a directory that holds a run of the whole suite reports A's cells and reads the other
    experiments' cells back (never runs them), so a partial rerun does not drop their rows; a fresh directory
    gets A alone."""

    def run(out, only):
        res = CliRunner().invoke(
            experiments,
            [
                "reproduce",
                "dcu",
                "--preset",
                "smoke",
                "--only",
                only,
                "--seeds",
                "1",
                "--report-only",
                "--out",
                str(out),
            ],
        )
        assert res.exit_code == 0, res.output
        return json.loads((out / "report.json").read_text())["meta"]

    fresh = run(tmp_path / "fresh", "random-forgetting")
    assert {c.split("/")[0] for c in fresh["cells_missing"]} == {"random-forgetting"}
    kept = tmp_path / "kept"
    (kept / "cells" / "class-forgetting").mkdir(parents=True)  # a cell directory of another experiment
    meta = run(kept, "random-forgetting")
    assert {c.split("/")[0] for c in meta["cells_missing"]} == {"random-forgetting", "class-forgetting"}
    assert meta["only"] == ["random-forgetting"] and meta["cells"] > fresh["cells"]
