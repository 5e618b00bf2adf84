"""`unlearn reproduce dcu --preset smoke`: the whole pipeline on generated data, resumable, honest report."""

import csv
import json

import pytest
import torch
from click.testing import CliRunner

from experiments.cli import unlearn_main


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    out = tmp_path_factory.mktemp("dcu-smoke")
    # every experiment of the smoke preset, one seed (the preset's 3 seeds are the same code three times)
    res = CliRunner().invoke(unlearn_main, ["reproduce", "dcu", "--preset", "smoke", "--out", str(out), "--seeds", "1"])
    assert res.exit_code == 0, res.output
    return out, res.output


def test_smoke_preset_runs_every_cell_and_reports(smoke):
    out, output = smoke
    rep = json.loads((out / "report.json").read_text())
    n = rep["meta"]["cells"]
    assert n == len(list((out / "cells").rglob("*.json"))) and rep["meta"]["cells_read_back"] == 0
    assert len(rep["cells"]["random-forgetting"]) == 2 * 12  # 2 models x 12 rows
    assert len(rep["cells"]["remembrance-size"]) == 1 + 2 * 2  # retraining once, not once per remembrance size
    # the row beside DC-U's numbers runs in DC-U's mode, from artefacts of its own; the corrected row does not
    cells = {(c["key"]["model"], c["key"]["method"]): c["result"] for c in rep["cells"]["random-forgetting"]}
    assert cells[("mlp", "dcu-reference")]["options"]["reference_quirks"] is True
    assert cells[("mlp", "dcu-reference-corrected")]["options"]["reference_quirks"] is False
    mlp_offline = {d.name: sorted(p.name for p in d.glob("offline*.pt")) for d in (out / "artefacts").glob("mlp-*")}
    # experiment 1's original: offline phases with and without the MLP's logit ReLU; experiment 9 (its own cap, so
    # its own original) has only the reference-mode one
    assert sorted(len(v) for v in mlp_offline.values() if v) == [1, 2], mlp_offline
    assert f"[1/{n}]" in output and f"[{n}/{n}]" in output  # progress names the cell and the count
    md = (out / "report.md").read_text()
    for title in (
        "1. Random 10% forgetting",
        "2. Class forgetting",
        "3. Remembrance-set size",
        "4. Buckets per class",
        "5. Five successive",
        "6. Condensed model",
        "7. Membership-inference defence",
        "8. Condensation",
        "9. The default against DC-U's scheme",
    ):
        assert title in md
    assert "ref RA" in md and "epsilon spent" in md and "Reduced at this preset: IPC 1 and 2" in md
    rows = list(csv.DictReader((out / "report.csv").open()))
    cnn_dcu = next(
        r for r in rows if r["model"] == "cnn" and r["method"] == "dcu-reference" and r["forget"] == "random:0.1"
    )
    assert float(cnn_dcu["ref_retain_acc"]) == 93.24 and cnn_dcu["seeds"] == "1"
    retrain = next(r for r in rows if r["method"] == "retrain" and r["model"] == "mlp" and r["forget"] == "class:2")
    assert float(retrain["forget_acc"]) == 0.0 and float(retrain["time_ratio"]) == pytest.approx(1.0)
    cnn = sorted((out / "artefacts").glob("cnn-*"))  # one folder per (model, settings the artefacts are made from)
    assert any((d / "original.pt").exists() and list(d.glob("offline-*.pt")) for d in cnn)


def test_rerun_reads_finished_cells_back_and_redoes_only_missing_ones(smoke, monkeypatch):
    out, _ = smoke
    cells = sorted((out / "cells").rglob("*.json"))
    assert all(json.loads(c.read_text())["result"] for c in cells)
    gone = out / "cells" / "random-forgetting" / "mlp-random_0.1-condensed-s0.json"
    before = json.loads(gone.read_text())
    gone.unlink()
    res = CliRunner().invoke(
        unlearn_main,
        ["reproduce", "dcu", "--preset", "smoke", "--out", str(out), "--only", "random-forgetting", "--seeds", "1"],
    )
    assert res.exit_code == 0, res.output
    rep = json.loads((out / "report.json").read_text())
    # --only runs that experiment's missing cell; the suite's other experiments in --out keep their rows (read back)
    assert rep["meta"]["only"] == ["random-forgetting"] and "1 run now" in res.stderr
    assert rep["meta"]["cells"] > 24 and rep["meta"]["cells_read_back"] == rep["meta"]["cells"] - 1
    assert {r["experiment"] for r in rep["rows"]} > {"random-forgetting"}
    assert json.loads(gone.read_text())["result"]["forget_acc"] == before["result"]["forget_acc"]  # seeded: same cell
    # the report names both invocations its cells come from (its own command is the last one's only)
    first, last = rep["meta"]["runs"]
    assert (first["cells"], last["cells"]) == (rep["meta"]["cells"] - 1, 1) and last["experiments"] == [
        "random-forgetting"
    ]
    assert last["id"] == json.loads(gone.read_text())["run"]["id"] != before["run"]["id"] == first["id"]
    assert "--only random-forgetting" in last["command"] and "--only" not in first["command"]
    md = (out / "report.md").read_text()
    assert "The cells come from 2 runs" in md and f"at {last['git'][:12]}" in md
    args = ["reproduce", "dcu", "--preset", "smoke", "--out", str(out), "--seeds", "1", "--report-only"]
    monkeypatch.setattr("sys.argv", ["/x/experiments/cli.py", *args])  # as `python -m experiments.cli` runs it
    res = CliRunner().invoke(unlearn_main, args)
    assert res.exit_code == 0, res.output
    again = json.loads((out / "report.json").read_text())["meta"]
    assert again["runs"] == rep["meta"]["runs"]  # --report-only computes nothing: the runs are the cells'
    assert again["command"] == "experiments " + " ".join(args)  # every flag named, --report-only too


def test_a_cell_computed_under_other_settings_is_recomputed(smoke):
    out, _ = smoke
    cell = out / "cells" / "random-forgetting" / "mlp-random_0.1-retrain-s0.json"
    rec = json.loads(cell.read_text())
    current = rec["settings"]
    cell.write_text(json.dumps({**rec, "settings": "0" * 16}))  # as if a preset or experiment setting had changed
    res = CliRunner().invoke(
        unlearn_main,
        ["reproduce", "dcu", "--preset", "smoke", "--out", str(out), "--only", "random-forgetting", "--seeds", "1"],
    )
    assert res.exit_code == 0, res.output
    assert "mlp-random_0.1-retrain-s0 (settings or code changed since it ran: recomputed)" in res.output
    meta = json.loads((out / "report.json").read_text())["meta"]
    assert meta["cells_read_back"] == meta["cells"] - 1  # every other cell of the suite in --out is read back
    assert json.loads(cell.read_text())["settings"] == current


def test_an_unreadable_cell_is_reported_and_recomputed(smoke):
    out, _ = smoke
    cell = out / "cells" / "random-forgetting" / "mlp-random_0.1-finetune-s0.json"
    before = json.loads(cell.read_text())
    cell.write_text(cell.read_text()[:40])  # cut short
    res = CliRunner().invoke(
        unlearn_main,
        ["reproduce", "dcu", "--preset", "smoke", "--out", str(out), "--only", "random-forgetting", "--seeds", "1"],
    )
    assert res.exit_code == 0, res.output
    assert "mlp-random_0.1-finetune-s0 cannot be read (JSONDecodeError" in res.output and "recomputed" in res.output
    assert "1 run now, 1 of them unreadable before" in res.output
    assert json.loads(cell.read_text())["result"]["forget_acc"] == before["result"]["forget_acc"]


def test_settings_digest_follows_what_cells_are_computed_from():
    from experiments.runner import Experiment, settings_digest

    preset, spec = {"seeds": 3, "per_class": 10, "description": "a"}, {"title": "t", "methods": ["retrain"]}
    d = settings_digest(preset, Experiment("x", spec))
    # the seed is in each cell's name, and titles, notes and reference numbers only shape the report
    assert settings_digest({**preset, "seeds": 5, "description": "b"}, Experiment("x", spec)) == d
    assert (
        settings_digest(
            preset,
            Experiment("x", {**spec, "title": "u", "notes": {"retrain": "n"}, "reference": {"retrain": [1, 2, 3]}}),
        )
        == d
    )
    assert settings_digest({**preset, "per_class": 20}, Experiment("x", spec)) != d
    assert settings_digest(preset, Experiment("x", {**spec, "methods": ["finetune"]})) != d


def test_code_digest_follows_the_code_a_cell_runs(tmp_path):
    import shutil

    from experiments.runner import CODE_PACKAGES, REPO_ROOT, code_digest

    for pkg in CODE_PACKAGES:
        shutil.copytree(REPO_ROOT / pkg, tmp_path / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    before = {m: code_digest(m, tmp_path) for m in ("retrain", "finetune", "condensed", None)}
    assert len(set(before.values())) == 4

    def edit(rel: str, extra: str) -> None:
        (tmp_path / rel).write_text((tmp_path / rel).read_text() + extra)
        code_digest.cache_clear()

    edit("unlearn/methods/finetune.py", "\n# a comment\n")
    assert code_digest(None, tmp_path) == before[None]  # comments are not code
    edit("unlearn/methods/finetune.py", '\n\ndef _added():\n    """a docstring is not code either"""\n    return 1\n')
    after = {m: code_digest(m, tmp_path) for m in before}
    # editing one method recomputes its cells (and the method-less ones), not the other methods'
    assert after["finetune"] != before["finetune"] and after[None] != before[None]
    assert after["retrain"] == before["retrain"] and after["condensed"] == before["condensed"]
    path = tmp_path / "unlearn/methods/finetune.py"
    path.write_text(path.read_text().replace("a docstring is not code either", "reworded"))
    code_digest.cache_clear()
    assert code_digest("finetune", tmp_path) == after["finetune"]
    edit("unlearn/methods/distill.py", "\nX = 1\n")
    assert code_digest("condensed", tmp_path) != after["condensed"]  # condensed imports distill's kd_kl
    edit("dcforget/train.py", "\nX = 1\n")
    assert code_digest("retrain", tmp_path) != after["retrain"]  # shared code: every cell
    d = code_digest("retrain", tmp_path)
    for rel in ("experiments/figures.py", "experiments/report.py", "experiments/runner.py"):  # not what cells compute
        edit(rel, "\nX = 1\n")
    assert code_digest("retrain", tmp_path) == d
    # code no unlearning cell imports (U-LiRA's, the attacks kind) leaves the reproduction's cells alone ...
    attacks_kind = code_digest(None, tmp_path, "experiments.kinds.attacks")
    edit("attacks/ulira.py", "\nX = 1\n")
    edit("experiments/kinds/attacks.py", "\nY = 1\n")
    assert code_digest("retrain", tmp_path) == d
    # ... and recomputes the cells that do import it
    assert code_digest(None, tmp_path, "experiments.kinds.attacks") != attacks_kind
    edit("attacks/roc.py", "\nX = 1\n")  # the unlearning kind draws ROC curves with it
    assert code_digest("retrain", tmp_path) != d
    code_digest.cache_clear()


def test_variants_are_rows_of_one_method_with_their_own_options():
    from dcforget.errors import ConfigError
    from experiments.kinds.unlearn import method_options, resolve_method
    from experiments.runner import Experiment

    exp = Experiment(
        "x",
        {
            "methods": ["retrain", "hard"],
            "variants": {"hard": {"method": "condensed", "options": {"reset": "all"}}},
            "method_options": {"condensed": {"distill": 0.5}, "hard@mlp": {"min_steps": 9}},
        },
    )
    assert resolve_method(exp, "hard") == ("condensed", {"reset": "all"})
    assert method_options(exp, {"method_options": {"*": {"bf16": True}}}, "hard", "mlp") == {
        "bf16": True,
        "distill": 0.5,
        "reset": "all",
        "min_steps": 9,
    }
    assert method_options(exp, {}, "hard", "cnn") == {"distill": 0.5, "reset": "all"}
    bad = Experiment("x", {"variants": {"v": {"method": "condensed", "options": {"nope": 1}}}})
    with pytest.raises(ConfigError, match="unknown option"):
        resolve_method(bad, "v")


def test_reported_std_is_the_sample_std():
    from experiments.report import mean_std

    assert mean_std([1.0, 2.0, 3.0]) == (2.0, 1.0)  # n-1 in the denominator (the population std would be 0.816)


def test_interrupted_run_leaves_no_partial_cell(tmp_path, monkeypatch):
    import experiments as rp

    calls = {"n": 0}
    real = rp.KINDS.get("unlearn")

    def flaky(cell, exp, ws):
        calls["n"] += 1
        if calls["n"] == 3:
            raise RuntimeError("power cut")
        return real.run(cell, exp, ws)

    monkeypatch.setitem(rp.KINDS._items, "unlearn", rp.Kind(real.cells, flaky, real.rows))
    res = CliRunner().invoke(
        unlearn_main,
        [
            "reproduce",
            "dcu",
            "--preset",
            "smoke",
            "--out",
            str(tmp_path),
            "--only",
            "random-forgetting",
            "--seeds",
            "1",
        ],
    )
    assert res.exit_code != 0
    files = list((tmp_path / "cells").rglob("*"))
    assert sorted(f.name for f in files if f.is_file()) == [
        "mlp-random_0.1-finetune-s0.json",
        "mlp-random_0.1-retrain-s0.json",
    ]
    assert not (tmp_path / "report.md").exists()


def test_a_diverged_cell_is_a_result_the_report_names(tmp_path, monkeypatch):
    """A method whose weights go non-finite at a benchmark's settings does not stop the suite: the cell records it,
    a rerun reads it back instead of recomputing, the report lists it and the other rows are there."""
    import experiments as rp
    from dcforget.errors import DivergedError

    calls = {"n": 0}
    real = rp.KINDS.get("unlearn")

    def diverging(cell, exp, ws):
        calls["n"] += 1
        if cell.key["method"] == "finetune":
            raise DivergedError("method 'finetune' diverged: w has non-finite values")
        return real.run(cell, exp, ws)

    monkeypatch.setitem(rp.KINDS._items, "unlearn", rp.Kind(real.cells, diverging, real.rows))
    args = [
        "reproduce",
        "dcu",
        "--preset",
        "smoke",
        "--out",
        str(tmp_path),
        "--only",
        "random-forgetting",
        "--seeds",
        "1",
    ]
    res = CliRunner().invoke(unlearn_main, args)
    assert res.exit_code == 0, res.output
    rec = json.loads((tmp_path / "cells" / "random-forgetting" / "mlp-random_0.1-finetune-s0.json").read_text())
    assert "diverged" in rec["result"]
    report = json.loads((tmp_path / "report.json").read_text())
    listed = report["meta"]["cells_diverged"]
    assert "random-forgetting/mlp-random_0.1-finetune-s0: method 'finetune' diverged: w has non-finite values" in listed
    assert all("-finetune-s0: " in d for d in listed)
    methods = {r["method"] for r in report["rows"]}
    assert "finetune" not in methods and "retrain" in methods
    assert f"{len(listed)} cells diverged" in (tmp_path / "report.md").read_text()
    n = calls["n"]
    assert CliRunner().invoke(unlearn_main, args).exit_code == 0 and calls["n"] == n  # read back, not rerun


def test_bad_input_is_one_line(tmp_path):
    r = CliRunner().invoke(unlearn_main, ["reproduce", "nosuch", "--preset", "smoke", "--out", str(tmp_path)])
    assert r.exit_code == 2 and "unknown experiment suite 'nosuch'" in r.output
    r = CliRunner().invoke(
        unlearn_main, ["reproduce", "dcu", "--preset", "smoke", "--out", str(tmp_path), "--only", "x"]
    )
    assert r.exit_code == 2 and "unknown experiment(s) x" in r.output


def test_the_choices_suite_sweeps_the_default_against_retraining():
    from experiments.runner import KINDS, load_suite

    preset, exps = load_suite("choices", "cpu")
    assert preset["per_class"] == 250 and "val_fraction" not in preset  # the default 15% validation split
    per_exp = {e.name: KINDS.get(e.spec["kind"]).cells(e, 1) for e in exps}
    labels = {n: {c.key["method"] for c in cells} for n, cells in per_exp.items()}
    models = {e.name: len(e.spec["models"]) for e in exps}
    assert all(len(per_exp[n]) == models[n] * len(labels[n]) for n in per_exp)  # every row on every model
    assert models["default-random"] == 2
    assert all({"retrain", "condensed"} <= v for v in labels.values())  # each sweep carries its own baseline rows
    assert {"reset=final", "distill=0"} <= labels["default-random"]
    assert {"keep=0.5", "mask=0.1", "onecycle"} <= labels["default-explore"]
    assert {"reset=none,forget_ce=3"} <= labels["default-explore-forget"]
    assert {"keep=0.8,forget_ce=3,min_steps=40", "keep=0.8,forget_ce=1val,min_steps=40"} <= labels[
        "default-explore-tau"
    ]
    assert {"quantiles,w=1", "quantiles,w=4"} <= labels["default-explore-quantiles"] & labels[
        "default-explore-quantiles-demo"
    ]
    assert {"keep,s=10", "keep,s=40"} <= labels["default-explore-keep"]
    assert {"large-keep,p=4", "large-keep,p=13"} <= labels["default-explore-large"] & labels[
        "default-explore-large-demo"
    ]


def test_artefacts_of_other_settings_are_never_shared(tmp_path):
    # an original trained under one preset must not be read back under another (bf16, epochs, data...), and a
    # setting the original does not depend on (K, the offline phase, a condenser's options) must not retrain it
    from experiments.runner import Experiment, Workspace

    def folder(preset, spec=None):
        ws = Workspace(preset, tmp_path, torch.device("cpu"), None, print)
        return ws.for_experiment(Experiment("e", spec or {"models": ["mlp"]})).variant("mlp")

    base = {"dataset": "cifar10", "per_class": 250, "original_epochs": 30, "bf16": False, "clusters": 25, "seeds": 3}
    assert folder(base) == folder({**base, "seeds": 5, "description": "other words"})  # seeds: not an artefact's
    assert folder(base) == folder({**base, "method_options": {"*": {"epochs": 1}}})
    for same in ({"clusters": 10}, {"offline": {"iterations": 1}}, {"condense": {"mi": {"epochs": 1}}}):
        assert folder({**base, **same}) == folder(base), same
    for change in ({"bf16": True}, {"original_epochs": 20}, {"per_class": 100}, {"val_fraction": 0.0}):
        assert folder({**base, **change}) != folder(base), change
    assert folder(base, {"models": ["mlp"], "model_options": {"mlp": {"width": 64}}}) != folder(base)


def test_an_experiment_may_name_its_own_originals_epochs(tmp_path):
    """An experiment that checks a choice on another recipe's original (choices' round 4 on the demo's 12-epoch
    model) gets that original as its own artefact; the other experiments keep the preset's."""
    from experiments.runner import Experiment, Workspace, experiment_workspace

    base = {"dataset": "cifar10", "per_class": 250, "original_epochs": 30, "bf16": False, "clusters": 25, "seeds": 3}
    ws = Workspace(base, tmp_path, torch.device("cpu"), None, print)
    own = experiment_workspace(ws, Experiment("e", {"models": ["cnn"], "original_epochs": 12, "per_class": 300}))
    plain = experiment_workspace(ws, Experiment("f", {"models": ["cnn"]}))
    assert own.preset["original_epochs"] == 12 and own.preset["per_class"] == 300
    assert plain.preset["original_epochs"] == 30 and ws.preset["original_epochs"] == 30
    assert own.variant("cnn") != plain.variant("cnn")


def test_a_variants_artefact_settings_must_take_effect():
    from dcforget.errors import ConfigError, UnknownNameError
    from experiments.kinds.unlearn import resolve_method
    from experiments.runner import Experiment

    def check(variant):
        return resolve_method(Experiment("e", {"models": ["mlp"], "variants": {"v": variant}}), "v")

    assert (
        check(
            {
                "method": "dcu-reference",
                "remembrance": "test",
                "offline": {"@mlp": {"logit_relu": True}},
                "condense": {"blend": "normalized"},
            }
        )[0]
        == "dcu-reference"
    )
    bad = [
        {"method": "retrain", "remembrance": "test"},  # retraining has no remembrance set
        {"method": "dcu-reference", "remembrance": {"source": "test"}},
        {"method": "finetune", "condense": {"blend": "clamp"}},  # finetune reads no condensed file
        {"method": "condensed", "offline": {"iterations": 1}},  # nor does the default run an offline phase
        {"method": "dcu-reference", "offline": {"@MLP": {"logit_relu": True}}},  # no such model
        {"method": "dcu-reference", "offline": {"logit_reluu": True}},
        {"method": "dcu-reference", "condense": {"blnd": "clamp"}},
        {"method": "dcu-reference", "offlne": {}},
    ]
    for variant in bad:
        with pytest.raises((ConfigError, UnknownNameError)):
            check(variant)


def test_bf16_auto_is_decided_and_nothing_else_reaches_bool():
    from dcforget.errors import ConfigError
    from dcforget.runtime import bf16_native, resolve_bf16

    cpu = torch.device("cpu")
    tree, auto = resolve_bf16({"bf16": "auto", "method_options": {"*": {"bf16": "auto"}}, "x": [{"bf16": True}]}, cpu)
    assert auto and tree["bf16"] is bf16_native(cpu) and tree["method_options"]["*"]["bf16"] is bf16_native(cpu)
    assert resolve_bf16({"bf16": False}, cpu) == ({"bf16": False}, False)
    for bad in ("false", "Auto", 1, None):
        with pytest.raises(ConfigError):
            resolve_bf16({"train": {"bf16": bad}}, cpu)


def test_experiment_index_files_resolve_under_configs_and_join_the_digest(tmp_path, monkeypatch):
    """An experiment's ``indices:PATH`` names a file under the configs folder (not the working directory), the
    request gets its absolute path, and the file's bytes join the cell's digest: editing it recomputes the cell."""
    import experiments.kinds.unlearn as grid
    from dcforget.errors import ConfigError
    from experiments.runner import cell_digest
    from experiments.workspace import Cell, Experiment

    cfg = tmp_path / "cfg"
    (cfg / "experiments" / "x").mkdir(parents=True)
    f = cfg / "experiments" / "x" / "forget.txt"
    f.write_text("# two positions\n3\n5\n")
    monkeypatch.setattr(grid, "config_dirs", lambda: [tmp_path / "elsewhere", cfg])
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")  # not where the file is: resolved under configs, not the cwd
    assert str(grid.forget_spec("indices:experiments/x/forget.txt")) == f"indices:{f}"
    assert str(grid.forget_spec("random:0.1")) == "random:0.1"
    with pytest.raises(ConfigError, match="not under any configs folder"):
        grid.forget_spec("indices:experiments/x/missing.txt")
    exp = Experiment(
        "e",
        {"kind": "unlearn", "models": ["mlp"], "forget": ["indices:experiments/x/forget.txt"], "methods": ["retrain"]},
    )
    cell, other = (
        Cell("e", {"model": "mlp", "forget": s, "method": "retrain"}, 0)
        for s in ("indices:experiments/x/forget.txt", "random:0.1")
    )
    P = {"dataset": "cifar10"}
    before = cell_digest("s", cell, exp, P), cell_digest("s", other, exp, P)
    f.write_text("# two positions\n3\n6\n")
    after = cell_digest("s", cell, exp, P), cell_digest("s", other, exp, P)
    assert after[0] != before[0] and after[1] == before[1]


def test_the_paper_preset_index_files_fit_the_experiment():
    """Experiment 10's files index the 42,500-image training set they say they do: distinct, in range, sized."""
    from dcforget.forget import read_index_file
    from experiments.kinds.unlearn import forget_spec
    from experiments.runner import load_suite

    preset, exps = load_suite("dcu", "paper", ["default-requests"])
    files = [s for s in exps[0].spec["forget"] if s.startswith("indices:")]
    assert len(files) == 2
    for spec, n in zip(files, (500, 5000)):
        idx = read_index_file(forget_spec(spec).path)
        assert len(idx) == n == len(set(idx.tolist())) and 0 <= int(idx.min()) and int(idx.max()) < 42500


@pytest.mark.parametrize("preset", ["smoke", "cpu", "paper"])
def test_every_committed_suite_plans_its_cells_under_every_preset(preset):
    """Every experiment config a user can run plans its cells: a committed config that refers to what a later change
    removed (a policy candidate it leaves out that a new search no longer has, a variant, an index file) fails here,
    not minutes into `experiments reproduce`."""
    from dcforget.config import load_toml
    from experiments.runner import KINDS, known_suites, load_suite, suite_dir

    suites = sorted(known_suites())
    assert {"benchmark", "dcu", "targets"} <= set(suites)
    planned = 0
    for suite in suites:
        if not isinstance(load_toml(suite_dir(suite) / "presets.toml").get(preset), dict):
            continue
        _, exps = load_suite(suite, preset)
        for exp in exps:
            planned += len(KINDS.get(exp.spec.get("kind", "unlearn")).cells(exp, 1))
    assert planned > 0
