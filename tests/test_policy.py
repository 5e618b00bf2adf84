"""The default policy: `experiments tune --policy KIND` picks a method, retain source and options on validation, and
`unlearn --from-condensed` without --method follows the entry for its kind of request and setting (or says which
fallback it used and how to tune one)."""

import json

import pytest
from click.testing import CliRunner

pytest.importorskip("optuna")

from condense.cli import main as condense_main  # noqa: E402
from dcforget.errors import ConfigError  # noqa: E402
from dcforget.forget import ForgetSpec  # noqa: E402
from experiments.cli import main as experiments_main  # noqa: E402
from experiments.hpsearch import objectives, time_ratio  # noqa: E402
from unlearn import policy as policy_mod  # noqa: E402
from unlearn.cli import main as unlearn_main  # noqa: E402
from unlearn.methods import METHODS  # noqa: E402
from unlearn.policy import read_policy, request_kind  # noqa: E402

SPEC = "synthetic:classes=4,train=150,test=20,size=16,noise=0.5"  # 512 training images at --per-class 150


def test_a_request_is_classed_by_its_new_images(tmp_path):
    assert request_kind(ForgetSpec.parse("class:1"), 1000)[0] == "class"
    assert request_kind(ForgetSpec.parse("classes:1,2"), 1000)[0] == "class"
    assert request_kind(ForgetSpec.parse("random:0.005"), 1000)[0] == "small"
    assert request_kind(ForgetSpec.parse("random:0.1"), 1000)[0] == "large"
    assert request_kind(ForgetSpec.parse("classes:1,2:0.1"), 1000)[0] == "large"  # sized only on the data
    f = tmp_path / "i.txt"
    f.write_text("\n".join(map(str, range(14))) + "\n")
    spec = ForgetSpec.parse(f"indices:{f}")
    assert request_kind(spec, 1000)[0] == "large"  # 14 new images > 1% of 1000
    kind, why = request_kind(spec, 1000, forgotten=range(6))  # a stream: 8 of them are new
    assert kind == "small" and why.startswith("8 new images")
    assert request_kind(spec, None)[0] == "large"  # unknown training-set size: never called small


def test_our_objective_is_the_distance_to_retraining_and_time_is_a_ratio():
    r = {"retain_acc": 0.9, "forget_acc": 0.6, "val_acc": 0.5, "val_mia": 0.7, "seconds": 2.0}
    ref = {"retain_acc": 1.0, "forget_acc": 0.3, "val_acc": 0.45, "val_mia": 0.6, "seconds": 40.0}
    assert objectives(r, ref, objective="ours") == pytest.approx([0.1, 0.3, 0.05, 0.1])
    assert objectives(r, ref) == pytest.approx([0.1 / 3, 0.1, 0.05 / 3, 0.4])  # Deep Unlearn's, unchanged
    assert time_ratio(r, ref) == pytest.approx(0.05)
    assert time_ratio({"diverged": "x"}, ref) == float("inf")


def _tune(tmp_path, *extra):
    args = ["tune", SPEC, "--model", "mlp", "--policy", "small", "--method", "finetune", "--preset", "smoke"]
    args += ["--per-class", "150", "--trials", "1", "--seeds", "1", "--study", str(tmp_path / "s.journal")]
    args += ["--store", str(tmp_path / "jobs"), "--out", str(tmp_path / "cfg" / "policy" / "test"), "-q", *extra]
    return CliRunner().invoke(experiments_main, args)


def test_a_policy_is_searched_on_validation_and_unlearn_follows_it(tmp_path, monkeypatch):
    res = _tune(tmp_path)
    assert res.exit_code == 0, res.output
    path = tmp_path / "cfg" / "policy" / "test" / "synthetic-mlp.json"
    doc = json.loads(path.read_text())
    e = doc["entries"]["small"]
    rows = e["candidates"]
    assert {(r["method"], r["retain"]) for r in rows} == {("finetune", "full"), ("finetune", "reduced")}
    feasible = [r for r in rows if r["feasible"]] or rows
    best = min(feasible, key=lambda r: r["norm"])
    assert (e["method"], e["retain"], e["norm"]) == (best["method"], best["retain"], best["norm"])
    assert e["objective"] == "ours" and e["tuned_on"]["forget_kind"] == "small" and e["tuned_on"]["train_size"] == 512
    assert {"command", "git", "machine"} <= set(e["meta"]) and e["meta"]["seeds"] == [0]  # its provenance
    assert all(set(r["objectives"]) == {"retain_gap", "forget_gap", "val_gap", "val_mia_gap"} for r in rows)
    [entry] = read_policy(path)
    # every study is read back as a candidate: its retain source, its options and its validation figures
    assert [(c.method, c.retain, c.norm) for c in entry.candidates] == [
        (r["method"], r["retain"], r["norm"]) for r in rows
    ]
    # each study records the registered defaults it ran under, and runs them even after a default changes
    assert rows[0]["defaults"] and not set(rows[0]["defaults"]) & set(rows[0]["options"])
    assert entry.candidates[0].options == {**rows[0]["defaults"], **rows[0]["options"]}
    assert entry.candidates[0].label.startswith("finetune (")
    assert entry.options == {**e["defaults"], **e["options"]}
    moved = json.loads(path.read_text())
    free = next(iter(moved["entries"]["small"]["defaults"]))  # an option the study did not search
    moved["entries"]["small"]["defaults"][free] = 7  # as if the registered default had been 7 then
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    assert read_policy(tmp_path / "moved.json")[0].options[free] == 7 != METHODS.get(e["method"]).defaults[free]
    moved["entries"]["small"]["defaults"]["no_such_option"] = 1
    (tmp_path / "moved.json").write_text(json.dumps(moved))
    with pytest.raises(ConfigError, match="no_such_option"):
        read_policy(tmp_path / "moved.json")
    assert entry.validation == e["setup"].get("validation", "whole") and entry.summary["git"] == e["meta"]["git"]
    bad = json.loads(path.read_text())
    bad["entries"]["small"]["candidates"][1]["retain"] = "half"
    (tmp_path / "bad.json").write_text(json.dumps(bad))
    with pytest.raises(ConfigError, match="candidate 1: retain is full or reduced"):
        read_policy(tmp_path / "bad.json")
    again = _tune(tmp_path)  # an entry is never replaced without --force
    assert again.exit_code == 2 and "has a small entry" in again.output

    run = lambda main, args: CliRunner().invoke(main, [str(a) for a in args])  # noqa: E731
    ck, h5 = tmp_path / "m.pt", tmp_path / "c.h5"
    r = run(unlearn_main, ["train", SPEC, "--model", "mlp", "--per-class", 150, "--epochs", 3, "--out", ck, "-q"])
    assert r.exit_code == 0, r.output
    r = run(
        condense_main, ["build", SPEC, "--method", "kmeans", "--clusters", 2, "--checkpoint", ck, "--out", h5, "-q"]
    )
    assert r.exit_code == 0, r.output
    monkeypatch.setattr(policy_mod, "config_dirs", lambda: [tmp_path / "cfg"])
    (tmp_path / "req.txt").write_text("0\n7\n9\n")
    monkeypatch.chdir(tmp_path)  # the report names the policy file relative to where the request runs
    base = ["--from-condensed", h5, "--checkpoint", ck, "--quiet"]
    r = run(unlearn_main, [*base, "--forget", f"indices:{tmp_path / 'req.txt'}", "--out", tmp_path / "o1"])
    assert r.exit_code == 0, r.output
    assert f"policy: a small request (3 new images <= 0.01 of the 512 training images) -> {entry.method}" in r.stderr
    rep = json.loads((tmp_path / "o1" / "report.json").read_text())
    assert (
        rep["method"] == entry.method
        and rep["policy"]["file"] == "cfg/policy/test/synthetic-mlp.json"
        and not rep["policy"]["fallback"]
    )
    assert rep["retain_source"] == entry.retain and rep["options"]["lr"] == entry.options["lr"]
    assert "policy entry" in rep["tuned_choice"]["reason"]  # not "--untuned": the user did not turn tuning off
    # --untuned without --method reads no entry (a tuned choice of method and options): the registered default
    r = run(unlearn_main, [*base, "--forget", f"indices:{tmp_path / 'req.txt'}", "--untuned", "--out", tmp_path / "o4"])
    assert r.exit_code == 0, r.output
    assert "--untuned: no policy entry or tuned file is read; condensed (the registered default" in r.stderr
    rep = json.loads((tmp_path / "o4" / "report.json").read_text())
    assert rep["method"] == "condensed" and rep["policy"]["fallback"] and rep["policy"]["retain"] == "full"
    registered = METHODS.get("condensed").defaults
    assert all(rep["options"][k] == registered[k] for k in ("lr", "keep", "forget_ce", "small_lr", "large_request"))
    assert "tune one" not in r.stderr and "untuned" in rep["tuned_choice"]["reason"]
    # a kind of request the policy has no entry for: the fallback, named, with the command that tunes one
    r = run(unlearn_main, [*base, "--forget", "random:0.2", "--out", tmp_path / "o2"])
    assert r.exit_code == 0, r.output
    assert "no large entry" in r.stderr and "fallback: condensed" in r.stderr
    assert "experiments tune synthetic --model mlp --policy large" in r.stderr
    assert json.loads((tmp_path / "o2" / "report.json").read_text())["policy"]["fallback"]
    # a large entry that starts from DC-U's offline phase: on this plain checkpoint its closest runnable candidate
    doc = json.loads(path.read_text())
    dcu = {"method": "dcu-reference", "retain": "full", "options": {}, "norm": 0.0, "feasible": True}
    runnable = [{**r, "feasible": True} for r in rows]  # (whatever this tiny study's times were)
    large = {**e, **dcu, "defaults": {}, "candidates": [dcu, *runnable]}
    large["tuned_on"] = {**e["tuned_on"], "forget_kind": "large"}
    doc["entries"]["large"] = large
    path.write_text(json.dumps(doc))
    r = run(unlearn_main, [*base, "--forget", "random:0.2", "--out", tmp_path / "o5"])
    assert r.exit_code == 0, r.output
    assert "the entry, dcu-reference (full retain), starts from DC-U's offline phase" in r.stderr
    rep = json.loads((tmp_path / "o5" / "report.json").read_text())
    closest = min(rows, key=lambda r: (r["norm"], f"{r['method']} ({r['retain']})"))
    assert (rep["method"], rep["retain_source"]) == (closest["method"], closest["retain"])
    assert not rep["policy"]["fallback"]
    assert rep["policy"]["summary"]["instead_of"] == "dcu-reference (full retain)"
    # a damaged policy file: one error line, nothing written
    path.write_text('{"schema": "dcforget-policy", "version": 1, "entries": {"small": {"method": "nope"}}}')
    r = run(unlearn_main, [*base, "--forget", f"indices:{tmp_path / 'req.txt'}", "--out", tmp_path / "o3"])
    assert r.exit_code == 2 and r.stderr.startswith("error: ") and r.stderr.count("\n") == 1, r.output
    assert not (tmp_path / "o3").exists()


def test_check_tuned_runs_a_policy_entry_again_and_reports_its_time_of_one_run(tmp_path):
    """`experiments check-tuned POLICY.json#KIND` reruns an entry's choice from new originals and retrainings, like a
    tuned file; the entry says its time ratios are of one run, and the check reports its own ratio beside it."""
    res = _tune(tmp_path)
    assert res.exit_code == 0, res.output
    path = tmp_path / "cfg" / "policy" / "test" / "synthetic-mlp.json"
    e = json.loads(path.read_text())["entries"]["small"]
    assert e["time_ratios_one_run"] is True and all(c["time_ratios_one_run"] for c in e["candidates"])
    assert "norm" in res.output and "not paired by run" not in res.output  # every listed ratio is of one run
    out = tmp_path / "check.json"
    args = ["check-tuned", f"{path}#small", "--store", str(tmp_path / "fresh"), "--out", str(out), "-q"]
    r = CliRunner().invoke(experiments_main, args)
    assert r.exit_code == 0, r.output
    [row] = json.loads(out.read_text())["files"]
    assert row["within_noise"] and row["method"] == e["method"] and row["jobs_computed"] == 3  # all from nothing
    assert row["time_ratio"]["recorded"] == e["time_ratio"] and row["time_ratio"]["recomputed"] > 0
    for ref, why in ((f"{path}#large", "has no 'large' entry"), (f"{path}#huge", "POLICY.json#KIND")):
        bad = CliRunner().invoke(experiments_main, ["check-tuned", ref, "--store", str(tmp_path / "x"), "--out", "y"])
        assert bad.exit_code == 2 and why in bad.output and bad.output.startswith("error: "), bad.output
    assert not (tmp_path / "x").exists()


def test_a_policy_study_refuses_a_forget_spec_of_another_kind(tmp_path):
    res = _tune(tmp_path, "--forget", "random:0.2")
    assert res.exit_code == 2 and "is a large request" in res.output
    assert not (tmp_path / "cfg").exists() and not (tmp_path / "jobs").exists()


def test_the_policys_small_request_is_the_default_methods():
    from unlearn.policy import SMALL_REQUEST

    assert METHODS.get("condensed").defaults["small_request"] == SMALL_REQUEST


def test_the_docs_policy_table_puts_each_gap_under_its_own_column(tmp_path):
    """The objectives are stored with sorted keys (forget_gap first); the generated table reads them by name."""
    import json

    from experiments.docgen import policy_section

    (tmp_path / "configs" / "policy" / "cpu").mkdir(parents=True)
    gaps = {"forget_gap": 0.25, "retain_gap": 0.01, "val_gap": 0.03, "val_mia_gap": 0.04}
    cand = {"method": "condensed", "retain": "full", "norm": 0.5, "objectives": gaps, "time_ratio": 0.05}
    entry = {**cand, "candidates": [cand], "meta": {}, "tuned_on": {}, "objective": "ours"}
    doc = {"dataset": "cifar10", "model": "mlp", "preset": "cpu", "entries": {"small": entry}}
    (tmp_path / "configs" / "policy" / "cpu" / "cifar10-mlp.json").write_text(json.dumps(doc, sort_keys=True))
    text = policy_section(tmp_path)
    header = next(ln for ln in text.splitlines() if ln.startswith("| candidate"))
    row = next(ln for ln in text.splitlines() if ln.startswith("| `condensed`"))
    cells = dict(zip([c.strip() for c in header.split("|")], [c.strip() for c in row.split("|")]))
    assert cells["RA gap"] == "`0.01`" and cells["FA gap"] == "`0.25`", cells


def test_default_candidates_read_the_leaderboard_not_a_policy_table_beside_it(tmp_path):
    """A benchmark report also holds policy tables (rows labelled "METHOD (full|reduced)" with their own retraining
    row): the default candidates are ranked on the leaderboard's table alone, against its own retraining."""
    from experiments.policy import default_candidates

    def row(experiment, method, ra, forget="random:0.1"):
        return {
            "experiment": experiment,
            "model": "mlp",
            "forget": forget,
            "method": method,
            "retain_acc": ra,
            "forget_acc": 0.5,
            "val_acc": 0.5,
        }

    rows = [
        row("cifar10-retain-sources", "retrain", 0.0),  # listed first: it must not be the reference
        row("cifar10-retain-sources", "finetune (full)", 0.0),
        row("cifar10-retain-sources", "kde (reduced)", 0.0),
        row("cifar10", "retrain", 0.9),
        row("cifar10", "kde", 0.5),
        row("cifar10", "finetune", 0.85),
        row("cifar10", "salun", 0.7),
    ]
    path = tmp_path / "report.json"
    path.write_text(json.dumps({"rows": rows}))
    names, picked = default_candidates("large", "cifar10", "mlp", path)
    assert names == ["finetune", "salun", "kde", "condensed", "dcu-reference"]
    assert "random table" in picked


def test_successive_halving_resumes_the_best_studies_and_chooses_over_all(tmp_path):
    """--promote N --promote-trials M: every study is screened with --trials, the N best (feasible first, then the
    norm) resume to M trials, and the entry is the best over every study; bad settings are refused before any work."""
    res = _tune(tmp_path, "--promote", "1", "--promote-trials", "2")
    assert res.exit_code == 0, res.output
    e = json.loads((tmp_path / "cfg" / "policy" / "test" / "synthetic-mlp.json").read_text())["entries"]["small"]
    rows = e["candidates"]
    assert sorted(r["trials"] for r in rows) == [1, 2]  # one study promoted, the other left at the screen
    feasible = [r for r in rows if r["feasible"]] or rows
    best = min(feasible, key=lambda r: r["norm"])
    assert (e["method"], e["retain"], e["norm"]) == (best["method"], best["retain"], best["norm"])
    assert "the 1 best of them then to 2 trials" in e["selection"]
    for extra, match in (
        (("--promote", "1"), "--promote N goes with --promote-trials M above --trials"),
        (("--promote", "1", "--promote-trials", "1"), None),  # click: M >= 2
        (("--promote", "1", "--promote-trials", "2", "--trials", "2"), "above --trials"),
    ):
        out = tmp_path / "refused"
        r = CliRunner().invoke(
            experiments_main,
            ["tune", SPEC, "--model", "mlp", "--policy", "small", "--method", "finetune", "--preset", "smoke",
             "--per-class", "150", "--seeds", "1", "--study", str(out / "s.journal"), "--store", str(out / "jobs"),
             "--out", str(out / "cfg"), "-q", *extra],
        )  # fmt: skip
        assert r.exit_code == 2 and (match is None or match in r.output), r.output
        assert not (out / "jobs").exists() and not (out / "cfg").exists()
    r = CliRunner().invoke(experiments_main, ["tune", SPEC, "--method", "finetune", "--promote", "1"])
    assert r.exit_code == 2 and "go with --policy" in r.output


def test_an_entry_needing_the_offline_phase_gives_way_on_a_plain_checkpoint(tmp_path):
    """A policy entry whose method starts from DC-U's offline phase (dcu-reference) answers only a checkpoint that
    went through it; on a plain one its search's closest feasible candidate that runs there answers, and says so."""
    from unlearn.policy import choose_policy
    from unlearn.tuned import Setting

    on = {"dataset": "mnist", "model": "mlp", "train_size": 2120, "epochs": 30, "num_classes": 10}
    cand = lambda m, r, norm, feasible=True, **o: {  # noqa: E731
        "method": m,
        "retain": r,
        "options": o,
        "norm": norm,
        "time_ratio": 0.05,
        "feasible": feasible,
    }
    dcu = cand("dcu-reference", "full", 0.08, overture_epochs=3)
    candidates = [dcu, cand("kde", "full", 0.05, False), cand("ct", "reduced", 0.10), cand("condensed", "full", 0.09)]
    entry = {**dcu, "tuned_on": {**on, "forget_kind": "large"}, "objective": "ours", "candidates": candidates}
    doc = {"schema": "dcforget-policy", "version": 1, "preset": "cpu", "entries": {"large": entry}}
    (tmp_path / "policy" / "cpu").mkdir(parents=True)
    (tmp_path / "policy" / "cpu" / "mnist-mlp.json").write_text(json.dumps(doc))
    here = Setting("mnist", "mlp", 2120, 30, num_classes=10)
    spec = ForgetSpec.parse("random:0.1")
    offline = choose_policy(spec, here, roots=[tmp_path], offline=True)
    assert (offline.method, offline.options["overture_epochs"], offline.note) == ("dcu-reference", 3, None)
    plain = choose_policy(spec, here, roots=[tmp_path])  # kde is closer but over the time bound; ct further
    assert (plain.method, plain.retain, plain.entry.summary["norm"]) == ("condensed", "full", 0.09)
    assert plain.entry.summary["instead_of"] == "dcu-reference (full retain)" and not plain.untuned
    line = plain.line(here)
    assert "starts from DC-U's offline phase" in line and line.endswith("objective ours over 4 candidate studies]")
    assert "-> the entry, dcu-reference" in line and "condensed (full retain) from" in line
    # no candidate that runs without the offline phase: the entry stands (the request then says what it needs)
    entry["candidates"] = [dcu, cand("condensed", "full", 0.09, False)]
    (tmp_path / "policy" / "cpu" / "mnist-mlp.json").write_text(json.dumps(doc))
    assert choose_policy(spec, here, roots=[tmp_path]).method == "dcu-reference"


def test_reports_name_a_file_relative_to_where_the_request_runs_else_absolutely(tmp_path, monkeypatch):
    from dcforget.config import shown_path

    (tmp_path / "run").mkdir()
    monkeypatch.chdir(tmp_path / "run")
    assert shown_path(tmp_path / "run" / "configs" / "policy" / "cpu" / "x.json") == "configs/policy/cpu/x.json"
    assert shown_path("configs/x.json") == "configs/x.json"
    assert shown_path(tmp_path / "elsewhere.json") == str((tmp_path / "elsewhere.json").resolve())
