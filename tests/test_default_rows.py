"""An experiment row that runs the default as a user gets it (``[variants.LABEL] policy = true``): what `unlearn
--from-condensed FILE` does without ``--method`` on the cell's original checkpoint -- the policy entry that fits its
setting, or the fallback -- in the unlearn and successive kinds, with the entry it followed in the row's note."""

import json

import pytest
import torch

import unlearn.policy as policy_mod
import unlearn.tuned as tuned_mod
from dcforget.checkpoint import read_checkpoint_meta
from dcforget.errors import ConfigError
from experiments.kinds import unlearn as unlearn_kind
from experiments.workspace import KINDS, Experiment, Workspace
from unlearn.tuned import checkpoint_setting

SPEC = "synthetic:classes=4,train=40,test=20,size=16,noise=0.5"


@pytest.fixture()
def ws(tmp_path, monkeypatch):
    for mod in (policy_mod, tuned_mod, unlearn_kind):  # only this test's configs folder
        monkeypatch.setattr(mod, "config_dirs", lambda: [tmp_path / "cfg"])
    preset = {
        "dataset": SPEC,
        "original_epochs": 3,
        "bf16": False,
        "clusters": 3,
        "method_options": {"*": {"epochs": 1}},
    }
    return Workspace(preset, tmp_path / "artefacts", torch.device("cpu"), None, lambda msg: None)


def _policy(ws, tmp_path, kind, method, retain, options):
    """A policy file with one ``kind`` entry tuned on the setting of the workspace's original."""
    here = checkpoint_setting(read_checkpoint_meta(unlearn_kind.original_file(ws, "mlp"))[0])
    entry = {
        "method": method,
        "retain": retain,
        "options": options,
        "tuned_on": {**here.to_dict(), "forget_kind": kind},
        "candidates": [],
        "objective": "ours",
        "meta": {},
    }
    path = tmp_path / "cfg" / "policy" / "custom" / "synthetic-mlp.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"schema": "dcforget-policy", "version": 1, "entries": {kind: entry}}))
    return path


def test_a_policy_row_runs_the_entry_that_fits_the_checkpoint_or_the_fallback(ws, tmp_path):
    kind = KINDS.get("unlearn")
    exp = Experiment(
        "d",
        {
            "kind": "unlearn",
            "models": ["mlp"],
            "forget": ["random:0.2", "class:1"],
            "methods": ["retrain", "default"],
            "variants": {"default": {"policy": True}},
        },
    )
    w = ws.for_experiment(exp)
    cells = {(c.key["forget"], c.key["method"]): c for c in kind.cells(exp, 1)}
    large = cells[("random:0.2", "default")]
    before = kind.inputs(large, exp, w.preset)
    out = kind.run(large, exp, w)  # no policy file: the fallback, said so
    assert out["policy_method"] == "condensed" and "no large entry" in out["policy"]
    assert "fallback: condensed" in out["policy"]

    _policy(w, tmp_path, "large", "finetune", "reduced", {"epochs": 1, "lr": 0.0123})
    assert kind.inputs(large, exp, w.preset) != before  # a new policy recomputes the row
    assert kind.inputs(cells[("random:0.2", "retrain")], exp, w.preset) is None  # and no other
    out = kind.run(large, exp, w)
    assert out["policy_method"] == "finetune" and out["retain_source"] == "reduced"
    assert out["options"]["lr"] == 0.0123 and out["policy"].startswith("policy: a large request")
    whole = kind.run(cells[("class:1", "default")], exp, w)  # the policy has no class entry: the fallback
    assert whole["policy_method"] == "condensed" and "no class entry" in whole["policy"]

    done = [{"key": c.key, "seed": c.seed, "result": kind.run(c, exp, w)} for c in cells.values()]
    row = next(r for r in kind.rows(exp, done) if r["method"] == "default" and r["forget"] == "random:0.2")
    assert "policy: a large request" in row["extra"] and "finetune (reduced retain)" in row["extra"]


def test_a_policy_variant_stands_alone():
    exp = Experiment(
        "d",
        {
            "kind": "unlearn",
            "models": ["mlp"],
            "forget": ["random:0.2"],
            "methods": ["default"],
            "variants": {"default": {"policy": True, "method": "finetune"}},
        },
    )
    with pytest.raises(ConfigError, match="policy = true stands alone"):
        KINDS.get("unlearn").cells(exp, 1)


def test_each_request_of_a_stream_follows_the_policy_with_what_it_already_forgot(ws, tmp_path):
    kind = KINDS.get("successive")
    exp = Experiment(
        "s",
        {
            "kind": "successive",
            "dataset": "synthetic:classes=4,train=80,test=20,size=16,noise=0.5",  # 272 trained on: 2 images are small
            "models": ["mlp"],
            "methods": ["retrain", "default"],
            "size": 2,
            "cycles": 2,
            "reference_at": [2],
            "variants": {"default": {"policy": True}},
        },
    )
    w = ws.for_experiment(exp)
    w.original("mlp")
    _policy(w, tmp_path, "small", "finetune", "full", {"epochs": 1, "lr": 0.0321})
    cells = kind.cells(exp, 1)
    default = next(c for c in cells if c.key["method"] == "default")
    assert kind.inputs(default, exp, w.preset) is not None
    cycles = kind.run(default, exp, w)["cycles"]
    assert [c["policy_method"] for c in cycles] == ["finetune", "finetune"]
    # the second request counts its new image only: the first request's image is already forgotten
    assert all("a small request (2 new images" in c["policy"] for c in cycles)
    assert [c["forget_size"] for c in cycles] == [2, 4]
    done = [{"key": c.key, "seed": c.seed, "result": kind.run(c, exp, w)} for c in cells]
    rows = [r for r in kind.rows(exp, done) if r["method"] == "default"]
    assert len(rows) == 2 and all("finetune (full retain)" in r["extra"] for r in rows)


def test_the_original_file_is_the_one_the_workspace_trains(ws):
    """``original_file`` names the workspace's checkpoint of each seed (the policy row reads its setting there)."""
    for seed in (0, 1):
        ws.original("mlp", seed)
        meta = read_checkpoint_meta(unlearn_kind.original_file(ws, "mlp", seed))[0]
        assert meta.seed == seed and meta.arch == "mlp"


def test_a_policy_variant_never_carries_a_methods_name():
    """A row that runs whatever the policy picks, labelled `condensed`, would pass for that method wherever rows
    are read by method: the suite is refused when it is read."""
    from experiments.runner import _check_default_labels

    _check_default_labels("e", {"variants": {"default": {"policy": True}}})  # the label rows use
    with pytest.raises(ConfigError, match="cannot carry a method's name"):
        _check_default_labels("e", {"variants": {"condensed": {"policy": True}}})
