"""Hyperparameter search (experiments.hpsearch): Deep Unlearn's objectives on validation only, NSGA-III on Optuna,
the min-norm trial chosen, jobs on the engine read back on a rerun, an interrupted study resumed."""

import json
import math
import socket
import subprocess
import sys
from dataclasses import replace

import pytest

pytest.importorskip("optuna")

from dcforget.errors import ConfigError  # noqa: E402
from dcforget.space import Choice, Epochs, Fixed, Float, Int, method_space, resolve  # noqa: E402
from experiments.hpsearch import (
    StudySetup,
    distributions,
    method_seed_offset,
    objectives,
    open_study,
    population_size,  # noqa: E402
    start_points,
    study_name,
    tune,
    tuned_config,
)
from unlearn.methods import METHODS  # noqa: E402

SETUP = StudySetup(
    dataset="synthetic:classes=4,train=40,test=20,size=16,noise=0.5",
    model="mlp",
    seeds=(0, 1),
    train={"epochs": 10, "batch_size": 32, "optimizer": "adam", "lr": 1e-3},
)


def test_spaces_are_declared_with_the_methods_and_resolve_epochs():
    s = METHODS.get("neggrad-plus").space
    assert s["alpha"] == Float(0.0, 1.0) and s["momentum"] == Fixed(0.9) and s["batch_size"] == Choice((64, 128, 256))
    assert resolve(s, 182)["epochs"] == Int(1, 37) and resolve(s, 50)["epochs"] == Int(1, 10)  # Deep Unlearn's
    assert METHODS.get("finetune").space["optimizer"] == Fixed("sgd")  # searched as Deep Unlearn's FT
    assert METHODS.get("retrain").space == {}
    with pytest.raises(ValueError, match="does not have"):
        method_space({"lr": 1.0}, {"alpha": Float(0, 1)})
    assert method_space({"lr": 1, "epochs": 2}, None)["epochs"] == Epochs(0.2)


def test_objectives_are_deep_unlearns_and_read_no_test_figure():
    r = {"retain_acc": 0.9, "forget_acc": 0.6, "val_acc": 0.5, "val_mia": 0.7}
    ref = {"retain_acc": 1.0, "forget_acc": 0.3, "val_acc": 0.5, "val_mia": 0.5}
    assert objectives(r, ref) == pytest.approx([0.1 / 3, 0.3 / 3, 0.0, 0.4])  # no test key is needed
    assert objectives({"diverged": "method 'x' diverged"}, ref) == [math.inf] * 4  # Deep Unlearn: inf


def test_study_tunes_on_validation_reads_back_and_resumes(tmp_path):
    ctx = {"root": str(tmp_path / "art"), "device": "cpu"}
    kw = dict(storage=tmp_path / "study.journal", store=tmp_path / "jobs", context=ctx, base_options={"batch_size": 32})
    res = tune("neggrad-plus", SETUP, trials=3, **kw)
    done = [t for t in res.trials if t["state"] == "COMPLETE"]
    assert len(done) == 3 and res.computed == 2 + 2 + 3 * 2  # 2 originals, 2 retrainings, 3 trials x 2 seeds
    # the chosen trial is the complete one with the smallest norm of its mean objective vector
    assert res.best["norm"] == min(t["norm"] for t in done)
    for t in done:  # objectives = mean over seeds of each seed's objectives against that seed's retraining
        per = [objectives(r, res.references[s]) for r, s in zip(t["per_seed"], SETUP.seeds)]
        mean = [sum(v) / 2 for v in zip(*per)]
        assert list(t["objectives"].values()) == pytest.approx(mean)
        assert t["norm"] == pytest.approx(math.sqrt(sum(v * v for v in mean)))
        assert t["options"]["momentum"] == 0.9 and 1 <= t["options"]["epochs"] <= 2 and 0 <= t["options"]["alpha"] <= 1
    again = tune("neggrad-plus", SETUP, trials=3, **kw)  # a rerun computes nothing and chooses the same trial
    assert again.computed == 0 and again.best["number"] == res.best["number"]
    assert again.best["options"] == res.best["options"]
    # an interrupted search left a trial running: the next call evaluates it and completes the study
    base = {"batch_size": 32, "momentum": 0.9}  # the base options and the space's fixed values, as tune() makes them
    study = open_study(study_name("neggrad-plus", SETUP, base), tmp_path / "study.journal", seed=99)
    dists = distributions(METHODS.get("neggrad-plus").space, SETUP.train_epochs)[0]
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    study.ask(dists).set_user_attr("driver", {"host": socket.gethostname(), "pid": dead.pid})  # a killed driver's
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
    try:  # ... and one that another driver, still running, is working on: left to it
        busy = study.ask(dists)
        busy.set_user_attr("driver", {"host": socket.gethostname(), "pid": live.pid})
        more = tune("neggrad-plus", SETUP, trials=5, **kw)
    finally:
        live.kill()
        live.wait()
    states = {t["number"]: t["state"] for t in more.trials}
    assert states.pop(busy.number) == "RUNNING"
    assert list(states.values()).count("COMPLETE") == 5 and "RUNNING" not in states.values()
    assert more.computed == 2 * 2  # the killed driver's trial and one new one, 2 seeds each; not the busy one
    done = [t for t in more.trials if t["state"] == "COMPLETE"]
    assert len({json.dumps(t["options"], sort_keys=True) for t in done}) == 5  # a resumed sampler draws anew
    cfg = tuned_config(more, preset="test", meta={"git": "x"})
    assert cfg["options"] == more.best["options"] and cfg["study"]["trials"] == 5 and cfg["dataset"] == "synthetic"
    # beside its options, the registered defaults it ran under (here every option of the method is in one or the other)
    assert not set(cfg["defaults"]) & set(cfg["options"])
    assert {**cfg["defaults"], **cfg["options"]}.keys() == METHODS.get(more.method).defaults.keys()


def test_a_method_needing_a_condensed_file_is_tuned_with_one(tmp_path):
    ctx = {"root": str(tmp_path / "art"), "device": "cpu"}
    setup = StudySetup(
        **{**SETUP.__dict__, "seeds": (0,), "condense": {"condenser": "fdm", "clusters": 3, "options": {"steps": 3}}}
    )
    kw = dict(storage=tmp_path / "s.journal", store=tmp_path / "jobs", context=ctx)
    res = tune("condensed", setup, trials=2, **kw)
    assert [t["state"] for t in res.trials] == ["COMPLETE"] * 2
    assert all(t["options"]["epochs"] == 0 for t in res.trials)  # fixed: auto epochs
    # the study starts at each large-request rule's registered point (then the sampler's draws), and says so
    starts = start_points("condensed", distributions(METHODS.get("condensed").space, setup.train_epochs)[0])
    assert [t["params"] for t in res.trials] == starts == res.sampler["starts"]
    assert [s["large_request"] for s in starts] == ["reset", "keep"]
    assert [s["forget_match"] for s in starts] == ["mean", "neighbours"]  # what ``auto`` resolves to per rule
    more = tune("condensed", setup, trials=3, **kw)  # resumed: the start points are not asked again
    assert more.computed == 1 and more.trials[2]["params"] not in starts


def test_a_study_short_of_trials_queues_only_the_start_points_it_can_ask(tmp_path):
    """One trial asks only the first start point (the second is not left waiting); resumed to two, the study asks
    the second one, not a draw: a point it holds is skipped before the remaining budget is counted."""
    ctx = {"root": str(tmp_path / "art"), "device": "cpu"}
    setup = StudySetup(
        **{**SETUP.__dict__, "seeds": (0,), "condense": {"condenser": "fdm", "clusters": 3, "options": {"steps": 3}}}
    )
    kw = dict(storage=tmp_path / "s.journal", store=tmp_path / "jobs", context=ctx)
    starts = start_points("condensed", distributions(METHODS.get("condensed").space, setup.train_epochs)[0])
    one = tune("condensed", setup, trials=1, **kw)
    assert [t["state"] for t in one.trials] == ["COMPLETE"] and one.sampler["starts"] == starts[:1]
    two = tune("condensed", setup, trials=2, **kw)
    assert [t["params"] for t in two.trials] == starts == two.sampler["starts"]


def test_a_point_the_sampler_redraws_is_told_what_it_measured_and_not_counted(tmp_path, monkeypatch):
    """NSGA-III can redraw a point the study holds: the repeat runs nothing, is told the earlier trial's values,
    is marked and not counted as a trial; a space with fewer points than trials ends the search instead of redrawing
    forever."""
    import experiments.hpsearch as hp

    class TwoPoints:  # finetune with a space of two points
        def get(self, name):
            m = METHODS.get(name)
            return replace(m, space={"lr": Choice((0.01, 0.02)), "epochs": Fixed(1)}) if name == "finetune" else m

    monkeypatch.setattr(hp, "METHODS", TwoPoints())
    ctx = {"root": str(tmp_path / "art"), "device": "cpu"}
    setup = StudySetup(**{**SETUP.__dict__, "seeds": (0,)})
    kw = dict(storage=tmp_path / "s.journal", store=tmp_path / "jobs", context=ctx, base_options={"batch_size": 32})
    res = tune("finetune", setup, trials=3, **kw)
    done = [t for t in res.trials if t["state"] == "COMPLETE"]
    fresh = [t for t in done if "repeat_of" not in t]
    repeats = [t for t in done if "repeat_of" in t]
    assert sorted(t["params"]["lr"] for t in fresh) == [0.01, 0.02]  # both points, each run once
    assert res.computed == 1 + 1 + 2  # the original, its retraining and the two distinct trials: no repeat ran
    assert len(repeats) == 3 and res.summary()["trials"] == 2 and res.summary()["repeats"] == 3
    by_number = {t["number"]: t for t in done}
    for t in repeats:  # told exactly what the trial it repeats measured
        first = by_number[t["repeat_of"]]
        assert t["params"] == first["params"] and t["objectives"] == first["objectives"]
        assert t["per_seed"] == first["per_seed"]
    assert "repeat_of" not in res.best
    # asked two at a time: a point drawn twice within one batch is measured once too
    kw.update(storage=tmp_path / "b.journal")
    batched = tune("finetune", setup, trials=2, batch=2, sampler_seed=5, **kw)
    done = [t for t in batched.trials if t["state"] == "COMPLETE"]
    fresh = [t for t in done if "repeat_of" not in t]
    assert sorted(t["params"]["lr"] for t in fresh) == [0.01, 0.02] and batched.summary()["trials"] == 2
    by_number = {t["number"]: t for t in done}
    assert all(by_number[t["repeat_of"]]["params"] == t["params"] for t in done if "repeat_of" in t)


def test_start_points_are_registered_values_inside_the_space():
    """Each start point is the registered defaults (over the method's own ``starts``) cut to the searched
    dimensions; a value outside its dimension (an ``auto``, epochs over the resolved range) is left to the sampler,
    and a method cannot name a start over options it does not have."""
    from unlearn.methods.base import register

    dists = distributions(METHODS.get("neggrad-plus").space, 5)[0]
    (point,) = start_points("neggrad-plus", dists)
    d = METHODS.get("neggrad-plus").defaults
    assert point == {k: d[k] for k in point} and "alpha" in point and "epochs" not in point  # epochs 1..1 here
    dists = distributions(METHODS.get("condensed").space, 30)[0]
    assert METHODS.get("condensed").defaults["forget_match"] == "auto"  # not a searched value...
    assert start_points("condensed", dists)[0]["forget_match"] == "mean"  # ... so the method names it per rule
    with pytest.raises(ValueError, match="starts"):
        register("x-start", summary="x", lr=1.0, starts=({"alpha": 1.0},))(lambda ctx: None)
    with pytest.raises(ValueError, match="starts"):
        register("x-start", summary="x", lr=1.0, starts=())(lambda ctx: None)


def test_a_method_without_a_space_or_a_setup_without_validation_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="no search space"):
        tune("retrain", SETUP, trials=1, storage=tmp_path / "s", store=tmp_path / "j", context={"root": str(tmp_path)})
    with pytest.raises(ConfigError, match="population"):
        tune(
            "neggrad-plus",
            SETUP,
            trials=4,
            population=1,
            storage=tmp_path / "s",
            store=tmp_path / "j",
            context={"root": str(tmp_path)},
        )


def test_nsga3_generations_fit_the_trial_budget():
    """20 trials with Optuna's default generation of 50 would be random search; the budget spans ~4 generations."""
    assert population_size(20) == 5 and population_size(8) == 4 and population_size(100) == 50
    study = open_study("s", "sqlite:///:memory:", seed=0, population=5)
    assert study.sampler._population_size == 5
    with pytest.raises(ConfigError, match="validation split"):
        StudySetup(dataset="x", model="mlp", val_fraction=0.0)


def test_tune_cli_writes_one_file_per_kind_of_forgetting(tmp_path):
    from click.testing import CliRunner

    from experiments.cli import main as experiments_main

    spec = "synthetic:classes=4,train=20,test=10,size=16,noise=0.5"
    args = [
        "tune",
        spec,
        "--method",
        "neggrad-plus",
        "--preset",
        "smoke",
        "--trials",
        "2",
        "--seeds",
        "1",
        "--forget",
        "class:1",
        "--study",
        str(tmp_path / "s.journal"),
        "--store",
        str(tmp_path / "jobs"),
        "--out",
        str(tmp_path / "tuned"),
        "--quiet",
    ]
    r = CliRunner().invoke(experiments_main, args)
    assert r.exit_code == 0, r.output
    doc = json.loads((tmp_path / "tuned" / "neggrad-plus.class.json").read_text())
    assert doc["setup"]["forget"] == "class:1" and doc["study"]["trials"] == 2 and doc["preset"] == "smoke"
    assert doc["study"]["sampler"] == {
        "name": "NSGA-III",
        "population": 4,
        "seed": 0,
        "method_offset": method_seed_offset(doc["method"]),
        "starts": doc["study"]["sampler"]["starts"],
    }
    assert len(doc["study"]["sampler"]["starts"]) == 1  # the registered point
    from dcforget.datasets import load_data

    trained_on = load_data(spec, None, doc["setup"]["per_class"], seed=0, val_fraction=doc["setup"]["val_fraction"])
    assert doc["tuned_on"] == {
        "dataset": "synthetic",
        "model": doc["setup"]["model"],
        "forget_kind": "class",
        "forget": "class:1",
        "per_class": doc["setup"]["per_class"],
        "train_size": len(trained_on.train),
        "num_classes": 4,
        "images_per_class": round(len(trained_on.train) / 4, 1),
        "epochs": doc["setup"]["train"]["epochs"],
        "val_fraction": 0.15,
    }
    assert not (tmp_path / "tuned" / "neggrad-plus.json").exists()  # the random-forgetting file is another
    again = CliRunner().invoke(experiments_main, args)
    assert again.exit_code == 2 and "exists" in again.output  # never overwritten without --force
    unsir = CliRunner().invoke(
        experiments_main, [*args[:3], "unsir", *args[4:10], "--forget", "random:0.1", "--out", str(tmp_path / "u")]
    )
    assert unsir.exit_code == 2 and "whole classes only" in unsir.output and not (tmp_path / "u").exists()


def test_check_tuned_recomputes_a_file_from_new_originals_and_flags_a_forged_one(tmp_path):
    """`experiments check-tuned` runs a file's options again from nothing (new originals, retrainings and method
    runs, in a new store) and compares each objective with the study's record: the tuned file reproduces; the same
    file with a forged record does not, and the command exits 1."""
    from click.testing import CliRunner

    from experiments.cli import main as experiments_main

    spec = "synthetic:classes=4,train=20,test=10,size=16,noise=0.5"
    tuned = tmp_path / "tuned"
    r = CliRunner().invoke(
        experiments_main,
        [
            "tune",
            spec,
            "--method",
            "neggrad-plus",
            "--preset",
            "smoke",
            "--trials",
            "2",
            "--seeds",
            "2",
            "--study",
            str(tmp_path / "s.journal"),
            "--store",
            str(tmp_path / "jobs"),
            "--out",
            str(tuned),
            "--quiet",
        ],
    )
    assert r.exit_code == 0, r.output
    doc = json.loads((tuned / "neggrad-plus.json").read_text())
    forged = dict(doc, objectives={**doc["objectives"], "forget_gap": doc["objectives"]["forget_gap"] + 0.2})
    (tmp_path / "forged").mkdir()
    (tmp_path / "forged" / "neggrad-plus.json").write_text(json.dumps(forged))
    out = tmp_path / "check.json"
    ok = CliRunner().invoke(
        experiments_main, ["check-tuned", str(tuned), "--store", str(tmp_path / "fresh"), "--out", str(out)]
    )
    assert ok.exit_code == 0, ok.output
    rep = json.loads(out.read_text())
    row = rep["files"][0]
    assert rep["checked"] == 1 and row["within_noise"] and row["jobs_computed"] == 2 + 2 + 2  # all from nothing
    assert row["recomputed_norm"] == pytest.approx(doc["norm"], abs=0.01)
    # the file records its trial's time ratio, of one run; the check reports its own beside it (not judged)
    assert doc["time_ratios_one_run"] is True and row["time_ratio"]["recorded"] == doc["time_ratio"] > 0
    assert row["time_ratio"]["recomputed"] > 0 and row["jobs_retimed"] == 0
    assert f"{row['time_ratio']['recomputed']:.3g}x retraining's, {doc['time_ratio']:.3g}x recorded" in ok.output
    bad = CliRunner().invoke(
        experiments_main,
        [
            "check-tuned",
            str(tmp_path / "forged"),
            "--store",
            str(tmp_path / "fresh"),
            "--out",
            str(tmp_path / "bad.json"),
            "--quiet",
        ],
    )
    assert bad.exit_code == 1 and "0 of 1" in bad.output
    brow = json.loads((tmp_path / "bad.json").read_text())["files"][0]
    assert not brow["objectives"]["forget_gap"]["within"] and brow["jobs_computed"] == 0  # read back this time
    again = CliRunner().invoke(
        experiments_main, ["check-tuned", str(tuned), "--store", str(tmp_path / "fresh"), "--out", str(out), "--quiet"]
    )
    assert again.exit_code == 2 and "exists" in again.output  # never overwritten without --force
    (tmp_path / "junk.json").write_text("{not json")
    junk = CliRunner().invoke(
        experiments_main,
        [
            "check-tuned",
            str(tmp_path / "junk.json"),
            "--store",
            str(tmp_path / "fresh"),
            "--out",
            str(tmp_path / "j.json"),
        ],
    )
    assert junk.exit_code == 2 and "cannot be read" in junk.output and not (tmp_path / "j.json").exists()


def test_check_tuned_never_passes_a_diverged_rerun_against_a_finite_record(monkeypatch):
    """A rerun whose model diverges (infinite objectives) reproduces only a record that diverged too."""
    import experiments.hpsearch as hp
    from dcforget.jobs import GridRun

    def fake(fn, specs, store, **kw):
        out = [
            {"seed": s["seed"]}
            if fn is hp.original_job
            else (
                {"diverged": "x"}
                if s["method"] != "retrain"
                else {"retain_acc": 1.0, "forget_acc": 0.5, "val_acc": 0.5, "val_mia": 0.5}
            )
            for s in specs
        ]
        return GridRun(out, [""] * len(out), len(out), 0, 0.0)

    monkeypatch.setattr(hp, "run_jobs", fake)
    doc = {
        "setup": SETUP.to_dict(),
        "method": "neggrad-plus",
        "options": {},
        "norm": 0.1,
        "objectives": dict.fromkeys(hp.OBJECTIVES, 0.05),
    }
    r = hp.recheck(doc, store="unused", context={})
    assert not r["within_noise"] and r["objectives"]["retain_gap"]["abs_diff"] == math.inf
    inf = dict(doc, objectives=dict.fromkeys(hp.OBJECTIVES, math.inf))
    assert hp.recheck(inf, store="unused", context={})["within_noise"]
    # a policy entry records our objective: it is checked by its own names, not Deep Unlearn's
    ours = dict(doc, objective="ours", objectives=dict.fromkeys(hp.OBJECTIVE_SETS["ours"], math.inf))
    checked = hp.recheck(ours, store="unused", context={})
    assert set(checked["objectives"]) == set(hp.OBJECTIVE_SETS["ours"]) and checked["within_noise"]
    with pytest.raises(ConfigError, match="objective"):
        hp.recheck(dict(doc, objective="fastest"), store="unused", context={})


def test_studies_of_methods_with_one_search_space_draw_different_trials():
    """ssd and lfssd search the same space; from one sampler seed their studies drew the same first generation,
    which NSGA-III's crossover recombines, and chose identical options (issue #32). `tune` offsets the sampler
    seed by the method, so their first trials differ (and without the offset they would not)."""
    dists, _ = distributions(METHODS.get("ssd").space, 30)
    first = lambda seed: open_study(f"s{seed}", "sqlite:///:memory:", seed=seed, population=5).ask(dists).params
    assert first(0) == first(0)
    assert method_seed_offset("ssd") != method_seed_offset("lfssd")
    assert first(method_seed_offset("ssd") % 2**32) != first(method_seed_offset("lfssd") % 2**32)


def test_a_changed_default_starts_a_new_study_and_reuses_no_job(tmp_path, monkeypatch):
    """Trials are scored with the defaults they ran under: a changed registered default must neither resume the
    older study's trials nor read their cached jobs back."""
    ctx = {"root": str(tmp_path / "art"), "data_dir": str(tmp_path / "data"), "device": "cpu"}
    kw = dict(storage=tmp_path / "study.journal", store=tmp_path / "jobs", context=ctx, base_options={"batch_size": 32})
    first = tune("neggrad-plus", SETUP, trials=2, **kw)
    assert tune("neggrad-plus", SETUP, trials=2, **kw).computed == 0  # unchanged: read back
    name = study_name("neggrad-plus", SETUP, {"batch_size": 32})
    defaults = METHODS.get("neggrad-plus").defaults
    monkeypatch.setitem(defaults, "alpha", defaults.get("alpha", 0.5) * 0.5 + 0.01)
    assert study_name("neggrad-plus", SETUP, {"batch_size": 32}) != name
    again = tune("neggrad-plus", SETUP, trials=2, **kw)
    assert again.computed == 2 * len(SETUP.seeds)  # every trial ran again (the references are retraining's, kept)
    assert first.computed > again.computed


def test_the_originals_digest_follows_the_training_revision(monkeypatch):
    """A study's originals are named by the trainers' revision too: after it changes nothing trained before is read
    back, while the study's own digest (its identity) stays."""
    import experiments.hpsearch as hp

    before, study = SETUP.artefact_digest(), SETUP.digest()
    monkeypatch.setattr(hp, "TRAINING_REVISION", hp.TRAINING_REVISION + 1)
    assert SETUP.artefact_digest() != before and SETUP.digest() == study
    assert replace(SETUP, retain="reduced").artefact_digest() == SETUP.artefact_digest()


def test_the_cpu_search_trains_its_originals_as_the_benchmark_does():
    """A policy searched on float32 originals was measured on the benchmark's bf16 ones and never saw them (the CNN's
    class entry, reports/policy-search-cpu/bf16-probe): at the cpu preset the search's originals take the benchmark's
    precision setting, resolved for the same device."""
    import torch

    from dcforget.config import resolve_config
    from dcforget.runtime import resolve_bf16
    from experiments.cli import TUNE_DEFAULTS
    from experiments.runner import load_suite

    dev = torch.device("cpu")
    tune = resolve_config({"tune": TUNE_DEFAULTS}, "cpu", None, {"tune": {}}, device=dev)["tune"]
    bench, _ = load_suite("benchmark", "cpu")
    assert tune["train"].get("bf16", False) == resolve_bf16(bench, dev)[0]["bf16"]  # the trainer's default: False
    assert tune["train"]["epochs"] == bench["original_epochs"]


def test_the_search_times_its_retraining_reference_as_the_benchmark_does():
    """The search's time bound divides by its retraining's time: that retraining runs in float32 as the benchmark's
    does (and every method), even where the originals train under bf16 autocast, so a ratio measured in the search
    is the ratio the benchmark measures."""
    import torch

    from dcforget.config import resolve_config
    from experiments.cli import TUNE_DEFAULTS
    from experiments.hpsearch import StudySetup, retrain_options
    from experiments.kinds.leaderboard import method_options
    from experiments.runner import Experiment, load_suite

    dev = torch.device("cpu")
    tune = resolve_config({"tune": TUNE_DEFAULTS}, "cpu", None, {"tune": {}}, device=dev)["tune"]
    setup = StudySetup(dataset="cifar10", model="mlp", train={**tune["train"], "bf16": True}, seeds=(0,))
    searched = retrain_options(setup)
    bench, _ = load_suite("benchmark", "cpu")
    exp = Experiment("lb", {"kind": "leaderboard", "models": ["mlp"], "methods": [], "forget": "random:0.1"})
    benchmarked, _ = method_options(exp, bench, "retrain", "mlp")
    assert "bf16" not in searched and not benchmarked.get("bf16", False)
    assert searched["epochs"] == benchmarked["epochs"]


def test_a_study_on_bf16_originals_is_named_for_its_float32_retraining_reference():
    """Studies on bf16 originals made before the retraining reference ran in float32 must never be read back: the
    part of the name that is not the setup's digest differs for a bf16 setup and stays as it was for a float32 one."""
    from experiments.hpsearch import StudySetup, study_name

    tail = lambda bf16: study_name("finetune", StudySetup("cifar10", "mlp", train={"bf16": bf16})).rsplit("-", 1)[1]  # noqa: E731
    assert tail(True) != tail(False)


def test_every_time_ratio_of_a_search_divides_two_times_of_one_run(tmp_path):
    """The job store reads a finished job back with the seconds of the run that made it. A search pairs each trial's
    time with the retraining timed in the same run: the reference job where that run made it, a retiming of it that
    run stored, or else the trial and the reference are timed again in this run (new jobs; no entry replaced)."""
    import shutil

    from dcforget.jobs import JobStore, job_key
    from experiments.hpsearch import reference_spec, unlearn_job

    setup = StudySetup(**{**SETUP.__dict__, "seeds": (0,)})
    ctx = {"root": str(tmp_path / "art"), "device": "cpu"}
    store = tmp_path / "jobs"

    def search(run, storage, bf16=False):
        return tune(
            "finetune",
            setup,
            trials=1,
            storage=tmp_path / f"{storage}.journal",
            store=store,
            context=ctx,
            base_options={"bf16": bf16},  # another value: other trial jobs (the start point sets the batch size)
            run=run,
        )

    def pairs(res):
        [r] = res.trials[0]["per_seed"]
        assert res.trials[0]["time_ratio"] == pytest.approx(r["seconds"] / r["time_reference"]["seconds"])
        return r["run"], r["time_reference"]["run"]

    a = search("a", "first")  # the original, its retraining and the trial, all timed in run a
    assert a.computed == 3 and pairs(a) == ("a", "a") and a.retimed == 0
    assert a.summary()["time_ratios"] == {"one_run": 1, "run_not_recorded": 0}
    again = search("b", "again")  # a new study reads run a's trial back: paired with run a's retraining
    assert again.computed == 0 and pairs(again) == ("a", "a")
    other = search("b", "other", bf16=True)  # a trial made now, against a retraining of run a: timed again now
    assert other.computed == 2 and pairs(other) == ("b", "b") and other.retimed == 0
    assert search("c", "other-again", bf16=True).computed == 0  # run b's pair read back from the store
    # without run b's retiming of the reference, run b's trial is timed again in this run, beside a retraining
    timed_in_b = JobStore(store).path(job_key(unlearn_job, {**reference_spec(setup, 0), "timed_in": "b"}))
    shutil.rmtree(timed_in_b)
    kept = sorted(p.name for p in store.glob("*/*"))
    late = search("d", "late", bf16=True)
    assert late.computed == 2 and late.retimed == 1 and pairs(late) == ("d", "d")
    assert set(kept) <= {p.name for p in store.glob("*/*")}  # new jobs beside the old ones, none replaced
    assert late.summary()["time_ratios"] == {"one_run": 1, "run_not_recorded": 0}
    # a trial told before runs were recorded (an earlier journal) says so; a diverged seed has no time to pair
    from experiments.hpsearch import times_one_run

    assert not times_one_run({"per_seed": [{"seconds": 1.0}]})
    assert times_one_run({"per_seed": [{"diverged": "x"}, late.trials[0]["per_seed"][0]]})
