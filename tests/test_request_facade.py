"""The request façade: one object validated once, together, before any work; one error type per kind of
mismatch; what a method needs comes from the registered method's capabilities."""

import pytest
import torch
from click.testing import CliRunner

import dcforget.train as train_mod
from condense.build import build_condensed
from dcforget.checkpoint import CheckpointMeta, read_checkpoint_meta, save_checkpoint
from dcforget.condensed_store import write_condensed
from dcforget.datasets import load_data
from dcforget.errors import (
    ArchitectureMismatchError,
    CheckpointError,
    ConfigError,
    DatasetMismatchError,
    MismatchError,
    TrainingSetMismatchError,
)
from dcforget.train import TrainConfig, checkpoint_meta, train_on
from experiments.cli import unlearn_main
from unlearn.methods import METHODS
from unlearn.request import UnlearnRequest

CPU = torch.device("cpu")
SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"
OTHER = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5,seed=7"  # same shape, other images


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("facade")
    out = {}
    for name, spec in (("a", SPEC), ("b", OTHER), ("c", "synthetic:classes=3,train=40,test=20,size=16")):
        data = load_data(spec)
        cfg = TrainConfig(epochs=2, batch_size=32)
        tr = train_on(data, "cnn", cfg, seed=0, device=CPU, quiet=True)
        save_checkpoint(d / f"{name}.pt", tr.model, checkpoint_meta(data, cfg, 0, tr))
        cs = build_condensed(
            data, "fdm", tr.model, device=CPU, seed=0, clusters=3, options={"steps": 2}, quiet=True
        ).condensed
        write_condensed(d / f"{name}.h5", cs)
        out[name] = (d / f"{name}.pt", d / f"{name}.h5")
    return out


def test_a_good_request_runs_and_names_its_files(files):
    ck, cs = files["a"]
    res = (
        UnlearnRequest(ck, "random:0.1", condensed_file=cs, option_pairs=("epochs=1",), device="cpu")
        .prepare()
        .run(quiet=True)
    )
    assert res.report["method"] == "condensed" and res.report["checkpoint"] == str(ck)
    assert res.report["condensed_file"] == str(cs) and res.report["options"]["epochs"] == 1


@pytest.mark.parametrize("condensed, kind", [("b", TrainingSetMismatchError), ("c", ArchitectureMismatchError)])
def test_a_condensed_file_of_other_data_is_refused_before_any_work(files, monkeypatch, condensed, kind):
    calls = []
    monkeypatch.setattr(train_mod, "fit", lambda *a, **k: calls.append(1))  # any training would be recorded
    with pytest.raises(kind) as err:
        UnlearnRequest(files["a"][0], "random:0.1", condensed_file=files[condensed][1], device="cpu").prepare()
    assert isinstance(err.value, MismatchError) and str(files[condensed][1]) in str(err.value) and not calls


def test_checkpoint_and_condensed_of_other_datasets_is_a_dataset_mismatch(files, tmp_path):
    ck, _ = files["a"]
    meta, state, tensors = read_checkpoint_meta(ck, with_tensors=True)
    d = meta.to_dict()
    d["dataset"] = "mnist"
    moved = tmp_path / "mnist.pt"
    import json

    payload = torch.load(ck, weights_only=True)
    payload["meta_json"] = json.dumps(d)
    torch.save(payload, moved)
    with pytest.raises(DatasetMismatchError, match="dataset 'synthetic', not 'mnist'"):
        UnlearnRequest(moved, "random:0.1", condensed_file=files["a"][1], device="cpu").prepare()


def test_what_a_method_needs_is_checked_from_its_capabilities(files):
    assert METHODS.get("dcu-reference").needs_offline and METHODS.get("condensed-model").needs_offline
    assert METHODS.get("retrain").trains_fresh and METHODS.get("gradient-ascent").zero_shot
    assert METHODS.get("finetune").capabilities == ["reads_retain"]  # it trains on a retain set, nothing else
    ck, cs = files["a"]
    with pytest.raises(ConfigError, match="offline phase"):
        UnlearnRequest(ck, "random:0.1", method="dcu-reference", condensed_file=cs, device="cpu").prepare()
    with pytest.raises(ConfigError, match="works from a condensed set"):
        UnlearnRequest(ck, "random:0.1", method="condensed", device="cpu").prepare()
    with pytest.raises(ConfigError, match="unknown option 'nosuch'"):
        UnlearnRequest(ck, "random:0.1", method="finetune", option_pairs=("nosuch=1",), device="cpu").prepare()
    with pytest.raises(ConfigError, match="epochs='-5'"):
        UnlearnRequest(ck, "random:0.1", condensed_file=cs, option_pairs=("epochs=-5",), device="cpu").prepare()
    res = CliRunner().invoke(unlearn_main, ["methods"])
    assert "dcu-reference" in res.output and "needs an `unlearn offline` checkpoint" in res.output


def test_checkpoint_metadata_is_typed_and_validated(files, tmp_path):
    meta, _ = read_checkpoint_meta(files["a"][0])
    assert isinstance(meta, CheckpointMeta) and meta.arch == "cnn" and meta.num_classes == 4
    assert meta.image_shape == (3, 16, 16) and meta.forgotten == () and meta.val_fraction == 0.15
    assert CheckpointMeta.from_dict(meta.to_dict()) == meta  # what is written reads back the same
    with pytest.raises(CheckpointError, match="'forgotten' must list"):
        CheckpointMeta.from_dict({**meta.to_dict(), "forgotten": ["x"]}, tmp_path / "bad.pt")


def test_a_quirk_switched_off_beside_reference_quirks_is_refused_not_ignored(files):
    from dcforget.checkpoint import open_checkpoint
    from unlearn.request import unlearn_request

    check = METHODS.get("dcu-reference").validate
    check({"reference_quirks": True})  # fine: every quirk on
    check({"reference_quirks": False, "shared_adam": True})  # fine: one quirk on its own
    ck, data = open_checkpoint(files["a"][0])
    for method in ("dcu-reference", "condensed-model"):
        with pytest.raises(ConfigError, match="shared_adam=false beside it would be ignored"):
            unlearn_request(
                ck.model,
                data,
                "random:0.1",
                method,
                device=CPU,
                options={"reference_quirks": True, "shared_adam": False},
            )


def test_cheap_refusals_come_before_any_data_is_loaded(files, monkeypatch):
    import dcforget.checkpoint as ck_mod
    from dcforget.errors import ForgetSpecError

    monkeypatch.setattr(ck_mod, "load_data_for", lambda *a, **k: pytest.fail("data loaded before refusing"))
    ck, cs = files["a"]
    for spec, msg in (
        ("randum:0.1", "unknown kind 'randum'"),
        ("class:9", "class 9 is outside 0..3"),
        ("indices:/nonexistent/idx.txt", "does not exist|cannot be read"),
    ):
        with pytest.raises(ForgetSpecError, match=msg):
            UnlearnRequest(ck, spec, condensed_file=cs, device="cpu").prepare()
    with pytest.raises(ConfigError, match="offline phase"):
        UnlearnRequest(ck, "class:1", method="dcu-reference", condensed_file=cs, device="cpu").prepare()


def test_a_condensed_file_must_record_the_training_set_it_condenses():
    from types import SimpleNamespace

    from dcforget.pairing import check_pairing

    condensed = SimpleNamespace(dataset="synthetic", train_fingerprint="", num_classes=4, image_shape=(3, 16, 16))
    with pytest.raises(TrainingSetMismatchError):
        check_pairing(condensed, where="c.h5", fingerprint="ab" * 32)
    old_checkpoint = SimpleNamespace(
        dataset="synthetic",
        train_fingerprint=None,
        num_classes=4,
        image_shape=(3, 16, 16),
        per_class=None,
        data_seed=0,
        seed=0,
    )
    check_pairing(old_checkpoint, where="o.pt", fingerprint="ab" * 32)  # written before fingerprints: accepted


def _tuned_file(root, preset, options, method="neggrad-plus", dataset="synthetic", model="cnn", forget=None):
    import json

    from dcforget.forget import ForgetSpec
    from unlearn.tuned import tuned_filename

    p = (
        root
        / "tuned"
        / preset
        / f"{dataset}-{model}"
        / tuned_filename(method, ForgetSpec.parse(forget or "random:0.1"))
    )
    p.parent.mkdir(parents=True, exist_ok=True)
    setup = {"per_class": 250, **({"forget": forget} if forget else {})}
    # tuned on the setting of the `files` fixture's checkpoints (SPEC, 2 epochs), so that `unlearn` may use it
    tuned_on = {
        "dataset": dataset,
        "model": model,
        "train_size": len(load_data(SPEC).train),
        "epochs": 2,
        "forget_kind": ForgetSpec.parse(forget or "random:0.1").family,
    }
    p.write_text(
        json.dumps(
            {
                "method": method,
                "dataset": dataset,
                "model": model,
                "preset": preset,
                "options": options,
                "trial": 3,
                "norm": 0.25,
                "study": {"trials": 20},
                "setup": setup,
                "meta": {"git": "abc"},
                "tuned_on": tuned_on,
            }
        )
    )
    return p


def test_tuned_options_are_used_under_the_users_own_and_reported(files, tmp_path, monkeypatch):
    import unlearn.tuned as tuned_mod

    _tuned_file(tmp_path, "smoke", {"alpha": 0.5, "epochs": 1})
    paper = _tuned_file(tmp_path, "paper", {"alpha": 0.9, "epochs": 2, "lr": 0.005})
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path])
    ck, _ = files["a"]
    prep = UnlearnRequest(ck, "random:0.1", method="neggrad-plus", option_pairs=("epochs=1",), device="cpu").prepare()
    assert prep.tuned.path == paper  # paper's full-data setup wins over smoke's
    assert prep.options["alpha"] == 0.9 and prep.options["lr"] == 0.005 and prep.options["epochs"] == 1  # user's wins
    res = prep.run(quiet=True)
    assert res.report["tuned"]["file"] == str(paper) and res.report["tuned"]["trial"] == 3
    off = UnlearnRequest(ck, "random:0.1", method="neggrad-plus", device="cpu", tuned=False).prepare()
    assert off.tuned is None and off.options == {}  # the registered defaults fill in at run time
    other = UnlearnRequest(ck, "random:0.1", method="finetune", device="cpu").prepare()  # none tuned for it
    assert other.tuned is None
    r = CliRunner().invoke(
        unlearn_main,
        [
            "--method",
            "neggrad-plus",
            "--checkpoint",
            str(ck),
            "--forget",
            "random:0.1",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ],
    )
    assert r.exit_code == 0 and f"using tuned options for neggrad-plus on synthetic/cnn from {paper}" in r.output


def test_a_tuned_file_with_options_the_method_lacks_is_refused(files, tmp_path, monkeypatch):
    import unlearn.tuned as tuned_mod

    _tuned_file(tmp_path, "cpu", {"nonsense": 1})
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path])
    with pytest.raises(ConfigError, match="does not have"):
        UnlearnRequest(files["a"][0], "random:0.1", method="neggrad-plus", device="cpu").prepare()


def test_tuned_options_match_the_kind_of_forgetting(files, tmp_path, monkeypatch):
    """Options tuned for random forgetting are not used for class forgetting (and the CLI says why); a file tuned
    for class forgetting serves one class or several."""
    import unlearn.tuned as tuned_mod

    cpu = _tuned_file(tmp_path, "cpu", {"alpha": 0.7}, forget="random:0.1")
    paper = _tuned_file(tmp_path, "paper", {"alpha": 0.2}, forget="class:0")
    assert (cpu.name, paper.name) == ("neggrad-plus.json", "neggrad-plus.class.json")  # one file per kind
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path])
    ck = files["a"][0]
    assert UnlearnRequest(ck, "random:0.3", method="neggrad-plus", device="cpu").prepare().tuned.path == cpu
    assert UnlearnRequest(ck, "classes:1,2", method="neggrad-plus", device="cpu").prepare().tuned.path == paper
    paper.unlink()
    prep = UnlearnRequest(ck, "class:1", method="neggrad-plus", device="cpu").prepare()
    assert prep.tuned is None and prep.options == {} and "random forgetting, not class forgetting" in prep.tuned_note
    r = CliRunner().invoke(
        unlearn_main,
        [
            "--method",
            "neggrad-plus",
            "--checkpoint",
            str(ck),
            "--forget",
            "class:1",
            "--out",
            str(tmp_path / "o"),
            "--quiet",
        ],
    )
    assert r.exit_code == 0 and "not used; the method's defaults apply" in r.output and "using tuned" not in r.output


def test_smoke_tuned_files_never_reach_a_request(files, tmp_path, monkeypatch):
    import unlearn.tuned as tuned_mod

    _tuned_file(tmp_path, "smoke", {"alpha": 0.5})  # tuned on generated data to test the pipeline
    monkeypatch.setattr(tuned_mod, "config_dirs", lambda: [tmp_path])
    assert UnlearnRequest(files["a"][0], "random:0.1", method="neggrad-plus", device="cpu").prepare().tuned is None
    assert (
        tuned_mod.find_tuned(
            "neggrad-plus", "synthetic:x", "cnn", METHODS.get("neggrad-plus").defaults, preset="smoke"
        ).preset
        == "smoke"
    )


def test_kept_class_accuracy_is_test_accuracy_on_the_classes_a_request_keeps(tiny, tmp_path):
    """One definition of issue #17's other-class TA, used by every experiment kind: the classes with no retain
    sample left are gone (however the spec names them: index, name, several, or an index file covering a class);
    the accuracy is on the test images of the others; per-sample forgetting has none."""
    from dcforget.forget import ForgetSpec
    from dcforget.models import create_model
    from dcforget.train import evaluate
    from unlearn.request import cumulative_split, kept_class_accuracy

    torch.manual_seed(0)
    model = create_model("mlp", num_classes=4, image_shape=tuple(tiny.train.images.shape[1:]))
    test = tiny.test

    def on(classes):
        keep = ~torch.isin(test.labels, torch.tensor(classes))
        return evaluate(model, test.images[keep], test.labels[keep], device=CPU).accuracy

    name = tiny.info.class_names[2]
    whole = torch.nonzero(tiny.train.labels == 3).flatten()
    (tmp_path / "c3.txt").write_text("\n".join(map(str, whole.tolist())))
    for spec, gone in (
        ("class:1", [1]),
        (f"class:{name}", [2]),
        ("classes:0,2", [0, 2]),
        (f"indices:{tmp_path / 'c3.txt'}", [3]),
    ):
        got = kept_class_accuracy(model, tiny, cumulative_split(tiny, ForgetSpec.parse(spec), 0, None), CPU)
        assert got == pytest.approx(on(gone)), spec
    assert on([1]) != on([2]) or on([1]) != on([0, 2])  # the classes removed matter, so the check above can fail
    assert (
        kept_class_accuracy(model, tiny, cumulative_split(tiny, ForgetSpec.parse("random:0.3"), 0, None), CPU) is None
    )
    assert (
        kept_class_accuracy(model, tiny, cumulative_split(tiny, ForgetSpec.parse("classes:1:0.5"), 0, None), CPU)
        is None
    )
