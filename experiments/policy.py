"""The default policy, picked by search: `experiments tune DATASET --model M --policy KIND`.

For one kind of request (``unlearn.policy.POLICY_KINDS``: a whole class, a small request, a large random request)
every candidate method is tuned on the validation split (:func:`experiments.hpsearch.tune`), with each retain
source where the method reads a retain set (``full``, and ``reduced``: the condensed file's audited reduced set),
and the study whose chosen trial is best wins. Best means, by default, *our* objective: the smallest norm of the
distances to retraining on validation RA, FA, VA and the validation MIA among trials whose whole-request time is at
most ``MAX_TIME_RATIO`` of retraining's; Deep Unlearn's faithful objective (``--objective deep-unlearn``) stays
available and is labelled in the file. No test figure is read: the candidates' own default list is ranked by a
validation distance too (:func:`default_candidates`).

The result is one entry of ``configs/policy/<preset>/<dataset>-<model>.json`` (the other kinds' entries are kept):
the method, its retain source and options (with the registered defaults its study ran under:
:func:`experiments.hpsearch.ran_with`), the setting it was tuned on, every candidate study's outcome, and the run's
provenance (command, commit, machine, seeds). `unlearn --from-condensed FILE` without ``--method`` follows it
(:mod:`unlearn.policy`)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any, Callable

from dcforget.errors import ConfigError, OutputExistsError
from dcforget.forget import ForgetSpec
from dcforget.io import atomic_path
from unlearn.methods import METHODS
from unlearn.policy import POLICY_KINDS, SCHEMA, SMALL_REQUEST, VERSION, read_policy, request_kind

from .hpsearch import StudyResult, StudySetup, ran_with, study_validation, times_one_run, tune, tuned_on

POLICY_FORGET = {"class": "class:2", "small": "random:0.005", "large": "random:0.1"}
"""The forget spec each kind's study unlearns unless ``--forget`` says otherwise: the benchmark's class 2, a request
of 0.5% of the training set (under ``SMALL_REQUEST``; about 10 images at the cpu preset's 2,125), Deep Unlearn's
10% random."""

ALWAYS = ("condensed", "dcu-reference")  # the "plus condensed and dcu-reference": always searched
CLOSEST = 10


def check_policy_forget(kind: str, spec: ForgetSpec, train_size: int) -> None:
    """The study's forget spec must be a request of ``kind`` on the originals' training set."""
    got, why = request_kind(spec, train_size)
    if got != kind:
        raise ConfigError(f"--forget {spec} is a {got} request ({why}), not a {kind} one; --policy {kind} tunes on one")


def default_candidates(kind: str, dataset: str, model: str, report: str | Path) -> tuple[list[str], str]:
    """(candidates, how they were picked): the ``CLOSEST`` methods nearest retraining in the benchmark report's
    table for ``dataset``/``model`` and the kind's forgetting (class 2 for ``class``, random 10% otherwise), by the
    Euclidean distance of their mean |dRA|, |dFA|, |dVA| to retraining's (validation accuracy, never test: the
    issue names RetDev, which reads test accuracy), plus ``ALWAYS``. A method without a search space is left out."""
    p = Path(report)
    try:
        rows = json.loads(p.read_text())["rows"]
    except (OSError, KeyError, TypeError, json.JSONDecodeError) as err:
        raise ConfigError(f"cannot read the benchmark report {p} for the default candidates: {err}") from None
    forget = "class" if kind == "class" else "random"
    # a policy table of the report (its rows labelled "METHOD (full|reduced)", with its own retraining row) ranks
    # the policy's candidates, not the methods: only the leaderboards' tables are read
    # (a leaderboard's default row, `policy = true`, runs what `unlearn` picks: neither a method nor a candidate)
    policy_tables = {r.get("experiment") for r in rows if r.get("method") not in METHODS and not r.get("default")}
    table = [
        r
        for r in rows
        if r.get("experiment") not in policy_tables
        and r.get("model") == model
        and str(r.get("experiment", "")).split("-")[0] == dataset
        and str(r.get("forget", "")).startswith(forget)
    ]
    ref = next((r for r in table if r["method"] == "retrain"), None)
    if ref is None:
        raise ConfigError(
            f"{p} has no {forget} table for {dataset}/{model} with retraining; give the candidates with --method"
        )

    def dist(r: dict[str, Any]) -> float:
        return math.sqrt(sum((r[k] - ref[k]) ** 2 for k in ("retain_acc", "forget_acc", "val_acc")))

    ranked = sorted(
        (
            r
            for r in table
            if r["method"] in METHODS and r["method"] not in ("retrain", *ALWAYS) and METHODS.get(r["method"]).space
        ),
        key=lambda r: (dist(r), r["method"]),
    )
    names = list(dict.fromkeys(r["method"] for r in ranked))[:CLOSEST]
    return [*names, *(m for m in ALWAYS if m not in names)], (
        f"the {CLOSEST} methods closest to retraining on validation (|dRA|, |dFA|, |dVA|) in {p}'s {dataset}/{model} "
        f"{forget} table, plus {', '.join(ALWAYS)}"
    )


def sources(method: str) -> tuple[str, ...]:
    """The retain sources a method is searched with: both where it reads a retain set, else the one it has."""
    return ("full", "reduced") if METHODS.get(method).reads_retain else ("full",)


def tune_policy(
    kind: str,
    candidates: list[str],
    setup: StudySetup,
    *,
    trials: int,
    objective: str,
    base_options: dict[str, dict[str, Any]] | None = None,
    log: Callable[[str], None] = lambda _: None,
    promote: int = 0,
    promote_trials: int = 0,
    **study: Any,
) -> tuple[dict[str, Any], list[StudyResult]]:
    """Tune every candidate with each of its retain sources (``study``: ``tune``'s storage, store, executor, context,
    population), and return (the policy entry of the best, every study's result). The best is the study whose chosen
    trial is feasible (within the time bound, ``ours``) with the smallest norm; with none feasible, the smallest norm,
    marked ``feasible: false``.

    ``promote`` > 0 is successive halving: after every study has ``trials`` trials, the ``promote`` best studies (by
    the same order: feasible first, then the norm of the chosen trial) resume to ``promote_trials`` trials each, and
    the best is chosen over every study again. The search spends its budget where the screen found the most."""
    if kind not in POLICY_KINDS:
        raise ConfigError(f"unknown kind of request {kind!r}; one of {', '.join(POLICY_KINDS)}")
    check_promotion(promote, promote_trials, trials)
    results: list[StudyResult] = []
    plan: list[tuple[str, StudySetup, dict[str, Any]]] = []
    for method in candidates:
        base = dict((base_options or {}).get(method, {}))
        for retain in sources(method):
            s = dataclasses.replace(setup, retain=retain, validation=study_validation(method, base))
            plan.append((method, s, base))
            log(f"policy {kind}: {method} ({retain} retain)")
            results.append(tune(method, s, trials=trials, base_options=base, log=log, objective=objective, **study))
    if promote:
        for i in sorted(range(len(results)), key=lambda i: _rank(results[i], i))[:promote]:
            method, s, base = plan[i]
            log(f"policy {kind}: {method} ({s.retain} retain) promoted to {promote_trials} trials")
            results[i] = tune(
                method, s, trials=promote_trials, base_options=base, log=log, objective=objective, **study
            )
    rows = [
        {
            "method": r.method,
            "retain": r.setup.retain,
            "validation": r.setup.validation,  # how the study served the validation split
            "reads_retain": METHODS.get(r.method).reads_retain,  # False: the method builds its own set
            "norm": r.best["norm"],
            "objectives": r.best["objectives"],
            "time_ratio": r.best.get("time_ratio"),
            "time_ratios_one_run": times_one_run(r.best),  # False: told before a search paired its times by run
            "feasible": r.best.get("feasible", True),
            "options": r.best["options"],
            "defaults": ran_with(r.method, r.best["options"]),
            "trials": r.summary()["trials"],
            "trial": r.best["number"],
        }
        for r in results
    ]
    finite = [i for i, row in enumerate(rows) if math.isfinite(row["norm"])]
    if not finite:
        raise ConfigError(f"no candidate of the {kind} policy finished a trial without diverging")
    feasible = [i for i in finite if rows[i]["feasible"]]
    win = min(feasible or finite, key=lambda i: (rows[i]["norm"], i))
    best = results[win]
    entry = {
        "method": best.method,
        "retain": best.setup.retain,
        "options": best.best["options"],
        "defaults": ran_with(best.method, best.best["options"]),
        "objective": objective,
        "norm": best.best["norm"],
        "objectives": best.best["objectives"],
        "time_ratio": best.best.get("time_ratio"),
        "time_ratios_one_run": rows[win]["time_ratios_one_run"],
        "feasible": bool(rows[win]["feasible"]),
        "tuned_on": {
            **tuned_on(best.setup, best.data_size.get("train_size"), best.data_size.get("num_classes")),
            "forget_kind": kind,
        },
        "setup": best.setup.to_dict(),
        "candidates": rows,
        "selection": (
            f"validation only: each candidate x retain source tuned ({trials} trials, NSGA-III, objective "
            f"{objective})"
            + (f", the {promote} best of them then to {promote_trials} trials" if promote else "")
            + "; the study whose chosen trial has the smallest norm"
            + (" among those within the time bound" if objective == "ours" else "")
            + ("" if rows[win]["feasible"] else "; NO candidate met the time bound: the smallest norm overall")
        ),
    }
    return entry, results


def check_promotion(promote: int, promote_trials: int, trials: int) -> None:
    """Successive halving's settings: none, or a number of studies to promote and more trials than the screen's."""
    if promote < 0 or (promote and promote_trials <= trials) or (promote_trials and not promote):
        raise ConfigError(
            f"--promote N goes with --promote-trials M above --trials ({trials}); got N={promote}, M={promote_trials}"
        )


def _rank(result: StudyResult, index: int) -> tuple[bool, float, int]:
    """A study's place in the search: feasible first, then the norm of its chosen trial (diverged ones last)."""
    norm = result.best["norm"]
    return (not result.best.get("feasible", True), norm if math.isfinite(norm) else math.inf, index)


def write_policy(
    path: str | Path, kind: str, entry: dict[str, Any], *, dataset: str, model: str, preset: str, force: bool
) -> None:
    """Add (or, with ``force``, replace) the ``kind`` entry of the policy file at ``path``; the other entries are
    kept. Written atomically; the result is read back through ``unlearn.policy.read_policy``'s checks first."""
    p = Path(path)
    doc: dict[str, Any] = {"schema": SCHEMA, "version": VERSION, "dataset": dataset, "model": model, "preset": preset}
    if p.exists():
        read_policy(p)  # a damaged file is refused, never silently replaced
        doc = json.loads(p.read_text())
        if kind in doc["entries"] and not force:
            raise OutputExistsError(f"{p} has a {kind} entry; pass --force to replace it")
    doc.setdefault("entries", {})[kind] = entry
    doc["small_request"] = SMALL_REQUEST
    with atomic_path(p, force=True) as tmp:
        tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
    read_policy(p)


def check_policy_output(path: str | Path, kind: str, force: bool) -> None:
    """Before any job runs: an existing policy file must be readable, and its ``kind`` entry replaced only with
    ``force``."""
    p = Path(path)
    if p.exists():
        read_policy(p)
        if kind in json.loads(p.read_text())["entries"] and not force:
            raise OutputExistsError(f"{p} has a {kind} entry; pass --force to replace it")
