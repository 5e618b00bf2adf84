"""``experiments``: run suites of experiments from config files and report them.

The ``unlearn`` console script's group is built here too (``unlearn_main``), through the unlearn stage's extension
point ``unlearn.cli.build_group``: the stage's own commands plus the ones that span every stage (``unlearn
reproduce``, kept as the name users know, and ``unlearn demo``), so no stage imports the layer above it."""

from __future__ import annotations

import dataclasses
import json
import shlex
import sys
from pathlib import Path

import click

from dcforget.cli import Group, opt, options, out_dir, with_logging
from dcforget.io import check_writable_dir
from dcforget.runtime import resolve_device
from unlearn.cli import build_group

from .hpsearch import TUNE_DEFAULTS
from .runner import reproduce


@click.group(cls=Group, context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Grids of unlearning experiments from configs/experiments/SUITE/, resumable, with reports.

    \b
    experiments reproduce dcu --preset cpu --data-dir data --out runs/dcu-cpu
    experiments reproduce choices --preset cpu --data-dir data --out runs/choices-cpu
    experiments reproduce throughput --preset cpu --data-dir data --out runs/throughput-cpu
    """


@main.command("reproduce")
@click.argument("suite")
@opt(
    "preset",
    required=True,
    help="The suite's preset (its presets.toml): smoke: minutes, synthetic data; cpu: real "
    "data reduced for a CPU; paper: the paper's settings.",
)
@out_dir("cells/ (one JSON per finished cell), artefacts/, report.md/.csv/.json.", required=True)
@click.option("--only", default=None, help="Comma list of experiments to run (default: all of the suite).")
@click.option("--seeds", type=click.IntRange(min=1), default=None, help="Seeds per cell (default: the preset's).")
@options("data_dir", "device", "executor", "workers", "address")
@click.option(
    "--report-only",
    is_flag=True,
    help="Compute nothing: write the report from the finished cells and list the missing ones.",
)
@opt(
    "force",
    help="Replace the run of another suite or preset that --out holds (its report; cells of the same "
    "name are recomputed).",
)
@opt("quiet")
@click.pass_context
@with_logging
def reproduce_cmd(
    ctx, suite, preset, out, only, seeds, data_dir, device, executor, workers, address, report_only, force, quiet
) -> None:
    """Run the experiments of configs/experiments/SUITE (e.g. `dcu`); resumable: finished cells are read back,
    not recomputed."""
    from dcforget.provenance import argv_command

    said = argv_command()  # the console script, or `python -m experiments.cli`, with every flag (--report-only too)
    command = (
        said
        if said.split(" ", 1)[0] in ("unlearn", "experiments")
        else f"{ctx.command_path} {suite} --preset {preset} --out {out}" + (f" --only {only}" if only else "")
    )
    only_list = [o.strip() for o in only.split(",")] if only is not None else None  # a blank name is refused
    check_writable_dir(out)
    from dcforget.jobs import make_executor

    with make_executor(executor or "local", workers=workers or 1, address=address) as ex:
        reproduce(
            suite,
            preset,
            out,
            only=only_list,
            data_dir=data_dir,
            device=resolve_device(device),
            seeds=seeds,
            command=command,
            log=(lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True)),
            report_only=report_only,
            executor=ex,
            force=force,
        )
    click.echo(f"wrote {Path(out) / 'report.md'}")


@main.command("demo")
@opt(
    "preset",
    default="cpu",
    show_default=True,
    help="cpu: real CIFAR-10, about 5 minutes on a 2-core CPU; smoke: seconds, synthetic data; paper: DC-U's sizes.",
)
@out_dir(
    "report.md (table and pictures), report.json, cells/ and artefacts/ (model, condensed set).",
    default="runs/demo",
    show_default=True,
)
@options("data_dir", "device")
@opt("force", help="Replace the demo of another preset that --out holds.")
@opt("quiet")
@with_logging
def demo_cmd(preset, out, data_dir, device, force, quiet) -> None:
    """The first run: train a small CNN on CIFAR-10, condense its training set, forget a random 10% with the
    default method and with retraining, attack both, and write a short report with a table and pictures.
    Resumable: a rerun reads finished work back."""
    from .demo import run_demo

    check_writable_dir(out)
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    log(
        f"demo ({preset}): the original, the condensed set, then retraining and the default method; progress "
        "lines below, report at the end"
    )
    res = run_demo(
        out,
        preset=preset,
        data_dir=data_dir,
        device=resolve_device(device),
        log=log,
        progress=not quiet,
        force=force,
        command=" ".join(["unlearn demo", *(shlex.quote(a) for a in sys.argv[2:])]),
    )
    for r in res["rows"]:
        click.echo(
            f"{r['method']:10s} RA {r['retain_acc']:6.2f}  FA {r['forget_acc']:6.2f}  TA {r['test_acc']:6.2f}  "
            f"MIA {r['mia']:6.2f}  time {r['time_ratio']:.2f}x retraining's"
        )
    click.echo(f"wrote {Path(out) / 'report.md'} (pictures: {', '.join(sorted(res['pictures'].values()))})")


def study_setup(dataset: str, t: dict, config: dict, forget: str):
    """The study's setup from the resolved ``[tune]`` table ``t`` (and the config's ``[condense.fdm]``)."""
    from dcforget.train import TrainConfig

    from .hpsearch import StudySetup

    return StudySetup(
        dataset=dataset,
        model=t["model"],
        per_class=t["per_class"],
        val_fraction=t["val_fraction"],
        forget=forget,
        seeds=tuple(range(int(t["seeds"]))),
        train={**TrainConfig().to_dict(), **t["train"]},
        condense={
            "condenser": "fdm",
            "clusters": int(t["clusters"]),
            "options": config.get("condense", {}).get("fdm", {}),
        },
    )


def study_outputs(name: str, preset, study, store, data_dir, device, quiet):
    """A tuning command's study storage (checked), job store (checked writable), log and job context."""
    from dcforget.jobs import JobStore

    from .hpsearch import check_storage

    storage = study or Path("runs") / "studies" / f"{name}-{preset or 'custom'}.journal"
    JobStore(store).check_writable()
    check_storage(storage)
    log = (lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True))
    context = {"root": str(Path(store) / "tune-artefacts"), "data_dir": data_dir, "device": str(resolve_device(device))}
    return storage, log, context


def _tune_policy_cli(
    *,
    dataset,
    methods,
    policy,
    objective,
    promote,
    promote_trials,
    benchmark_report,
    preset,
    config_file,
    arch,
    trials,
    seeds,
    forget_spec,
    per_class,
    data_dir,
    study,
    store,
    executor,
    workers,
    address,
    device,
    quiet,
    out,
    force,
    **_,
) -> None:
    """`experiments tune --policy KIND`: every check first (candidates, forget spec, outputs), then the studies."""
    from dcforget.config import resolve_config, section
    from dcforget.datasets import load_data
    from dcforget.errors import ConfigError
    from dcforget.forget import ForgetSpec
    from dcforget.jobs import make_executor
    from dcforget.provenance import run_meta
    from unlearn.methods import METHODS
    from unlearn.policy import read_policy, runs_on_plain
    from unlearn.request import check_forget_kind

    from .policy import (
        POLICY_FORGET,
        check_policy_forget,
        check_policy_output,
        check_promotion,
        default_candidates,
        tune_policy,
        write_policy,
    )

    overrides = {"model": arch, "trials": trials, "seeds": seeds, "per_class": per_class, "forget": forget_spec}
    config = resolve_config({"tune": TUNE_DEFAULTS}, preset, config_file, {"tune": overrides})
    t = section(config, "tune", set(TUNE_DEFAULTS))
    check_promotion(promote or 0, promote_trials or 0, int(t["trials"]))
    forget = forget_spec or POLICY_FORGET[policy]
    spec = ForgetSpec.parse(forget)
    name = dataset.split(":")[0]
    if methods:
        candidates, picked = list(dict.fromkeys(methods)), "given with --method"
    else:
        candidates, picked = default_candidates(policy, name, t["model"], benchmark_report)
    for m in candidates:
        if not METHODS.get(m).space:
            raise ConfigError(f"method {m!r} declares no search space")
        check_forget_kind(m, spec)
    setup = study_setup(dataset, t, config, forget)
    trained_on = load_data(dataset, data_dir, setup.per_class, seed=0, val_fraction=setup.val_fraction)
    check_policy_forget(policy, spec, len(trained_on.train))
    path = Path(out or Path("configs") / "policy" / (preset or "custom")) / f"{name}-{t['model']}.json"
    check_writable_dir(path.parent)
    check_policy_output(path, policy, force)
    storage, log, context = study_outputs(f"{name}-{t['model']}", preset, study, store, data_dir, device, quiet)
    with make_executor(executor or "local", workers=workers or 1, address=address) as ex:
        entry, results = tune_policy(
            policy,
            candidates,
            setup,
            trials=int(t["trials"]),
            objective=objective or "ours",
            base_options=t["base_options"],
            log=log,
            storage=storage,
            store=store,
            executor=ex,
            context=context,
            population=t["population"],
            promote=promote or 0,
            promote_trials=promote_trials or 0,
        )
    entry["candidates_picked"] = picked
    entry["defaults_digest"] = METHODS.get(entry["method"]).defaults_digest  # the defaults its options ran over
    entry["meta"] = run_meta(resolve_device(device), seeds=list(setup.seeds))
    entry["study_storage"] = str(storage)
    write_policy(path, policy, entry, dataset=name, model=t["model"], preset=preset or "custom", force=force)
    for row in sorted(entry["candidates"], key=lambda r: r["norm"]):
        ratio = row["time_ratio"]
        click.echo(
            f"  {row['method']:>14s} ({row['retain']:7s}) norm {row['norm']:.4f}  time "
            f"{'n/a' if ratio is None else f'{ratio:.3f}x'}{'' if row['feasible'] else '  (over the time bound)'}"
            f"{'' if row.get('time_ratios_one_run') else '  (times of earlier runs, not paired by run)'}"
        )
    click.echo(
        f"policy {policy}: {entry['method']} ({entry['retain']} retain), norm {entry['norm']:.4f}, "
        f"{', '.join(f'{k}={v}' for k, v in sorted(entry['options'].items()))} -> {path}"
    )
    written = next(e for e in read_policy(path) if e.kind == policy)
    plain = runs_on_plain(written)
    if plain is not written:  # what `unlearn` runs on a checkpoint that did not go through DC-U's offline phase
        click.echo(
            "  on a checkpoint without DC-U's offline phase: "
            + (
                f"{plain.method} ({plain.retain} retain), norm {plain.summary['norm']:.4f}"
                if plain is not None
                else "no candidate within the time bound runs there (`unlearn offline` first)"
            )
        )


@main.command("tune")
@click.argument("dataset")
@click.option("--method", "methods", multiple=True, help="Method to tune (repeatable).")
@click.option(
    "--suite",
    default=None,
    help="Tune what a suite's leaderboards run on DATASET and --model, instead of --method: random "
    "forgetting for every method with a search space, class forgetting for the class-only ones and "
    "those a class experiment lists in `tune_class` (e.g. --suite benchmark).",
)
@click.option(
    "--skip-existing", is_flag=True, help="Leave methods whose tuned file exists alone (instead of refusing)."
)
@click.option(
    "--policy",
    type=click.Choice(["class", "small", "large"]),
    default=None,
    help="Pick the default for one kind of request: tune every candidate (--method, repeatable; default the ten "
    "closest to retraining in --benchmark-report plus condensed and dcu-reference) with both retain sources, and "
    "write the best as that kind's entry of OUT/DATASET-MODEL.json (default configs/policy/PRESET), which "
    "`unlearn` follows when no --method is given.",
)
@click.option(
    "--objective",
    type=click.Choice(["ours", "deep-unlearn"]),
    default=None,
    help="What a study minimises on validation: ours (|dRA|, |dFA|, |dVA|, |d validation MIA| to retraining, "
    "trials over 0.1x retraining's time infeasible; the default with --policy) or deep-unlearn (Deep Unlearn's "
    "objective10, faithful; the default otherwise).",
)
@click.option(
    "--promote",
    type=click.IntRange(min=1),
    default=None,
    help="With --policy: successive halving. After every study has --trials trials, the N best (feasible first, "
    "then the norm) resume to --promote-trials trials, and the best is chosen over every study again.",
)
@click.option(
    "--promote-trials",
    type=click.IntRange(min=2),
    default=None,
    help="With --promote: the trials each promoted study resumes to (more than --trials).",
)
@click.option(
    "--benchmark-report",
    type=click.Path(dir_okay=False),
    default="reports/benchmark-cpu/report.json",
    show_default=True,
    help="With --policy and no --method: the benchmark report whose table ranks the default candidates.",
)
@options("preset", "config")
@click.option("--model", "arch", default=None, help=f"Architecture (default {TUNE_DEFAULTS['model']}).")
@click.option(
    "--trials",
    type=click.IntRange(min=1),
    default=None,
    help=f"Complete trials per method (default {TUNE_DEFAULTS['trials']}).",
)
@click.option(
    "--seeds",
    type=click.IntRange(min=1),
    default=None,
    help=f"Originals (seeds 0..N-1) each trial runs on; objectives are their mean (default {TUNE_DEFAULTS['seeds']}).",
)
@click.option(
    "--forget",
    "forget_spec",
    default=None,
    help=f"Forget spec the study unlearns (default {TUNE_DEFAULTS['forget']}, Deep Unlearn's; class:C tunes for class "
    "forgetting, written as METHOD.class.json).",
)
@options("per_class", "data_dir")
@click.option(
    "--study",
    default=None,
    help="Optuna storage: a journal file (default runs/studies/DATASET-MODEL-PRESET.journal) or a database "
    "URL (sqlite:///..., postgresql://...). An interrupted study resumes from it.",
)
@click.option(
    "--store",
    type=click.Path(file_okay=False),
    default="runs/jobs",
    show_default=True,
    help="Job store (directory): finished unlearning runs are read back from it, never recomputed.",
)
@options("executor", "workers", "address", "device", "quiet")
@out_dir(
    "one METHOD.json per method (the chosen options with their study and provenance); default "
    "configs/tuned/PRESET/DATASET-MODEL, where `unlearn --method` finds them."
)
@opt("force")
@with_logging
def tune_cmd(
    dataset,
    methods,
    suite,
    skip_existing,
    policy,
    objective,
    promote,
    promote_trials,
    benchmark_report,
    preset,
    config_file,
    arch,
    trials,
    seeds,
    forget_spec,
    per_class,
    data_dir,
    study,
    store,
    executor,
    workers,
    address,
    device,
    quiet,
    out,
    force,
) -> None:
    """Tune unlearning methods on the validation split (Deep Unlearn's protocol: four objectives against
    retraining, NSGA-III, the min-norm trial), on Optuna and the job engine.

    \b
    experiments tune cifar10 --method kde --preset cpu --data-dir data
    experiments tune cifar10 --suite benchmark --skip-existing --preset cpu --data-dir data
    experiments tune cifar10 --model mlp --policy small --preset cpu --data-dir data
    """
    from dcforget.config import resolve_config, section
    from dcforget.errors import ConfigError, OutputExistsError
    from dcforget.forget import ForgetSpec
    from dcforget.io import atomic_path
    from dcforget.jobs import make_executor
    from dcforget.provenance import run_meta
    from unlearn.methods import METHODS
    from unlearn.request import check_forget_kind
    from unlearn.tuned import tuned_filename

    from .hpsearch import StudySetup, study_validation, tune, tuned_config

    if policy is not None:
        if suite or skip_existing:
            raise ConfigError("--policy searches candidates (--method); --suite and --skip-existing do not apply")
        return _tune_policy_cli(**{k: v for k, v in locals().items() if k not in ("suite", "skip_existing")})
    if promote is not None or promote_trials is not None:
        raise ConfigError("--promote and --promote-trials go with --policy")
    if bool(methods) == bool(suite):
        raise ConfigError("give --method (repeatable) or --suite, not both" if methods else "give --method or --suite")
    if suite and forget_spec is not None:
        raise ConfigError("--forget goes with --method; a suite's experiments say what each method forgets")
    if skip_existing and force:
        raise ConfigError("--skip-existing and --force contradict each other")
    overrides = {"model": arch, "trials": trials, "seeds": seeds, "per_class": per_class, "forget": forget_spec}
    config = resolve_config({"tune": TUNE_DEFAULTS}, preset, config_file, {"tune": overrides})
    t = section(config, "tune", set(TUNE_DEFAULTS))
    if suite:
        from .runner import suite_tuning

        jobs = suite_tuning(suite, preset or "cpu", dataset.split(":")[0], t["model"])
    else:
        jobs = [(m, t["forget"]) for m in methods]
    parsed = {forget: ForgetSpec.parse(forget) for _, forget in jobs}  # each forget spec parsed once, here
    for m, forget in jobs:
        if not METHODS.get(m).space:
            raise ConfigError(f"method {m!r} declares no search space")
        check_forget_kind(m, parsed[forget])
    name = f"{dataset.split(':')[0]}-{t['model']}"
    out = Path(out or Path("configs") / "tuned" / (preset or "custom") / name)
    files = {(m, forget): out / tuned_filename(m, parsed[forget]) for m, forget in jobs}
    existing = [f for f in files.values() if f.exists()]
    if skip_existing:
        for job, f in list(files.items()):
            if f.exists():
                click.echo(f"skip {job[0]} ({f} exists)", err=True)
                del files[job]
        jobs = [j for j in jobs if j in files]
        if not jobs:
            click.echo(f"nothing to tune: every tuned file exists in {out}")
            return
    elif existing and not force:
        raise OutputExistsError(f"{existing[0]} exists; pass --force to replace it, or --skip-existing")
    check_writable_dir(out)

    def setup_for(forget: str) -> StudySetup:
        return study_setup(dataset, t, config, forget)

    # every output location is checked before any job runs: the tuned files (above), the job store, the study
    storage, log, context = study_outputs(name, preset, study, store, data_dir, device, quiet)
    with make_executor(executor or "local", workers=workers or 1, address=address) as ex:
        for m, forget in jobs:
            base = {k: v for k, v in t["base_options"].get(m, {}).items()}
            # a method that reads the validation split is served its method half and chosen on the selection half
            setup = setup_for(forget)
            setup_m = dataclasses.replace(setup, validation=study_validation(m, base))
            res = tune(
                m,
                setup_m,
                trials=int(t["trials"]),
                storage=storage,
                store=store,
                executor=ex,
                context=context,
                base_options=base,
                population=t["population"],
                log=log,
                objective=objective or "deep-unlearn",
            )
            doc = tuned_config(
                res, preset=preset or "custom", meta=run_meta(resolve_device(device), seeds=list(setup.seeds))
            )
            doc["study_storage"] = str(storage)
            with atomic_path(files[(m, forget)], force=True) as tmp:
                tmp.write_text(json.dumps(doc, indent=1, sort_keys=True))
            b = res.best
            click.echo(
                f"{m}: trial {b['number']} of {res.summary()['trials']}, norm {b['norm']:.4f} "
                f"({', '.join(f'{k} {v:.4f}' for k, v in b['objectives'].items())}): "
                f"{', '.join(f'{k}={v}' for k, v in sorted(b['options'].items()))} -> {files[(m, forget)]}"
            )


@main.command("report")
@click.argument("path", required=False, type=click.Path(exists=True))
@click.option(
    "--markdown",
    "markdown",
    is_flag=True,
    default=True,
    help="Markdown tables (the only format; the flag is accepted for clarity).",
)
@click.option(
    "--table",
    default=None,
    help="One table of a benchmark report: 'summary' or an experiment's name (default: every table).",
)
@click.option(
    "--ulira",
    default=None,
    type=click.Path(exists=True, dir_okay=False),
    help="With --table naming a policy table (a policy search's candidates as rows): an `attacks ulira` report of "
    "some of them, joined as a U-LiRA AUC column.",
)
@click.option(
    "--refresh",
    "refresh",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False),
    help="Rewrite the generated blocks (<!-- experiments report ARGS --> ... <!-- end -->) of these Markdown "
    "files from the reports, in place; with --check, only say which differ.",
)
@click.option("--check", is_flag=True, help="With --refresh: change nothing, exit 1 when a block is out of date.")
@with_logging
def report_cmd(path, markdown, table, ulira, refresh, check) -> None:
    """Render results tables from committed reports (PATH: a report folder, its report.json, or a folder of tuned
    files), so that no figure is typed by hand.

    \b
    experiments report reports/benchmark-cpu --table summary
    experiments report reports/benchmark-cpu --table cifar10
    experiments report configs/tuned/cpu/cifar10-mlp
    experiments report --refresh README.md --check
    """
    from dcforget.errors import ConfigError
    from dcforget.io import atomic_path

    from .tables import refresh_blocks, render

    if refresh:
        if path is not None or table is not None or ulira is not None:
            raise ConfigError("--refresh takes no PATH, --table or --ulira (each block names its own)")
        stale = []
        for f in map(Path, refresh):
            text = f.read_text()
            new = refresh_blocks(text, Path.cwd())
            if new != text:
                stale.append(str(f))
                if not check:
                    with atomic_path(f, force=True) as tmp:
                        tmp.write_text(new)
        verb = "out of date" if check else "refreshed"
        click.echo(f"{len(stale)} of {len(refresh)} file(s) {verb}" + (f": {', '.join(stale)}" if stale else ""))
        if check and stale:
            sys.exit(1)
        return
    if check:
        raise ConfigError("--check goes with --refresh")
    if path is None:
        raise ConfigError("give a report folder (or --refresh FILE)")
    click.echo(render(path, table, ulira=ulira), nl=False)


@main.command("check-tuned")
@click.argument("files", nargs=-1, required=True)
@click.option(
    "--store",
    type=click.Path(file_okay=False),
    required=True,
    help="Job store (directory) for the recomputation; a new, empty one recomputes everything (originals, "
    "retrainings, the method), which is the check. Rerunning into it reads the jobs back.",
)
@options("data_dir", "executor", "workers", "address", "device", "quiet")
@click.option(
    "--out",
    type=click.Path(dir_okay=False),
    required=True,
    help="File to write: the JSON report (per file: recorded and recomputed objectives, tolerances, verdict).",
)
@opt("force")
@with_logging
def check_tuned_cmd(files, store, data_dir, executor, workers, address, device, quiet, out, force) -> None:
    """Check that tuned-options files (FILES: files or folders of them, or policy entries named POLICY.json#KIND)
    reproduce their study's best trial within noise: each file's options run again under its recorded setup, every
    seed, from new originals and retrainings; the time over retraining's is reported beside the recorded one.
    Exit 0 when every file is within noise, 1 when one is not."""
    from dcforget.errors import ConfigError, OutputExistsError
    from dcforget.io import atomic_path
    from dcforget.jobs import JobStore, make_executor
    from dcforget.provenance import run_meta
    from unlearn.methods import METHODS
    from unlearn.policy import POLICY_KINDS, read_policy
    from unlearn.tuned import read_tuned

    from .hpsearch import recheck

    def tuned_file(p: Path) -> dict:
        try:
            method = json.loads(p.read_text()).get("method")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, AttributeError):
            method = None  # read_tuned says what is wrong with the file
        read_tuned(p, METHODS.get(method).defaults if isinstance(method, str) else {})  # refuses a bad file
        return json.loads(p.read_text())

    def policy_entry(ref: str) -> dict:
        where, _, kind = ref.rpartition("#")
        if kind not in POLICY_KINDS:
            raise ConfigError(f"{ref}: a policy entry is named POLICY.json#KIND, KIND one of {', '.join(POLICY_KINDS)}")
        if not any(e.kind == kind for e in read_policy(where)):  # refuses a bad file
            raise ConfigError(f"{ref}: {where} has no {kind!r} entry")
        return json.loads(Path(where).read_text())["entries"][kind]

    docs: list[tuple[str, dict]] = []
    for arg in files:
        f = Path(arg)
        if not f.exists() and "#" in arg:
            docs.append((arg, policy_entry(arg)))
        elif not f.exists():
            raise ConfigError(f"{arg} does not exist")
        else:
            docs.extend((str(p), tuned_file(p)) for p in (sorted(f.glob("*.json")) if f.is_dir() else [f]))
    if not docs:
        raise ConfigError(f"no tuned-options file in {', '.join(files)}")
    for p, doc in docs:
        if not all(k in doc for k in ("setup", "objectives", "norm")):
            raise ConfigError(f"{p} records no study result (setup, objectives, norm)")
    out_path = Path(out)
    if out_path.exists() and not force:
        raise OutputExistsError(f"{out_path} exists; pass --force to replace it")
    check_writable_dir(out_path.parent)
    JobStore(store).check_writable()
    dev = resolve_device(device)
    context = {"root": str(Path(store) / "artefacts"), "data_dir": data_dir, "device": str(dev)}
    rows = []
    with make_executor(executor or "local", workers=workers or 1, address=address) as ex:
        for p, doc in docs:
            r = recheck(doc, store=store, executor=ex, context=context)
            rows.append({"file": str(p), **r})
            if not quiet:
                t = r["time_ratio"]
                recorded = "" if t["recorded"] is None else f", {t['recorded']:.3g}x recorded"
                click.echo(
                    f"{p}: norm {r['recorded_norm']:.4f} recorded, {r['recomputed_norm']:.4f} recomputed "
                    f"({'within noise' if r['within_noise'] else 'NOT within noise'}; "
                    f"{r['jobs_computed']} jobs computed); time {t['recomputed']:.3g}x retraining's{recorded}",
                    err=True,
                )
    report = {
        "meta": run_meta(dev),
        "tolerance": "per objective: |recomputed - recorded| <= max(2 x standard error over seeds, 0.005)",
        "files": rows,
        "within_noise": sum(r["within_noise"] for r in rows),
        "checked": len(rows),
    }
    with atomic_path(out_path, force=True) as tmp:
        tmp.write_text(json.dumps(report, indent=1, sort_keys=True))
    click.echo(
        f"{report['within_noise']} of {len(rows)} tuned file(s) reproduce their study's best trial within "
        f"noise -> {out_path}"
    )
    if report["within_noise"] < len(rows):
        sys.exit(1)


@main.command("parity")
@click.option(
    "--checkpoint",
    type=click.Path(dir_okay=False),
    required=True,
    help="The original model (unlearn train); its own dataset, cap and validation split are used.",
)
@click.option(
    "--methods",
    default="ssd,lfssd,jit,unsir,scrub,salun,bad-teacher,neggrad,fisher",
    show_default=True,
    help="Comma list of methods to compare (SUPREME: ssd, lfssd, jit, unsir, scrub; torchunlearn: salun, "
    "bad-teacher, neggrad, fisher, scrub).",
)
@click.option(
    "--forget",
    "forget_specs",
    default="class:2,random:0.1",
    show_default=True,
    help="Semicolon- or comma-separated forget specs (e.g. class:2,random:0.1).",
)
@click.option("--seeds", default="0", show_default=True, help="Comma list of seeds (e.g. 0,1,2).")
@out_dir("report.json and report.md.", required=True)
@options("data_dir", "device")
@opt("force")
@opt("quiet")
@with_logging
def parity_cmd(checkpoint, methods, forget_specs, seeds, out, data_dir, device, force, quiet) -> None:
    """Our namesake methods against the reference libraries' own functions (SUPREME 0.1.5; torchunlearn), on one
    checkpoint, the same forget sets and seeds: FA / RA / TA / MIA / seconds side by side (issue #32)."""
    from dcforget.checkpoint import open_checkpoint
    from dcforget.errors import ConfigError, OutputExistsError
    from dcforget.forget import ForgetSpec
    from dcforget.io import atomic_paths
    from dcforget.provenance import run_meta

    from .parity import markdown, run_parity

    method_list = [m.strip() for m in methods.split(",")]
    if not all(method_list):
        raise ConfigError(f"--methods has an empty name: {methods!r}")
    specs = [s.strip() for s in forget_specs.replace(";", ",").split(",")]
    specs = [s for s in specs if s]
    fixed = []  # "random:0.1" splits cleanly; "classes:1,2:0.1" would not: refuse it rather than guess
    for s in specs:
        if ForgetSpec.parse(s).kind == "classes":
            raise ConfigError("--forget: classes:... specs are not supported here (use class:C or random:F)")
        fixed.append(s)
    try:
        seed_list = [int(x) for x in seeds.split(",")]
    except ValueError:
        raise ConfigError(f"--seeds must be a comma list of integers, got {seeds!r}") from None
    if any(x < 0 for x in seed_list) or len(set(seed_list)) != len(seed_list):
        raise ConfigError(f"--seeds must be distinct integers >= 0, got {seeds!r}")
    out_path = Path(out)
    files = [out_path / "report.json", out_path / "report.md"]
    if not force and any(f.exists() for f in files):
        raise OutputExistsError(f"{out_path} holds a report; pass --force to replace it")
    check_writable_dir(out_path)
    from .parity import PAIRS, TORCHUNLEARN_METHODS

    unknown = [m for m in method_list if m not in PAIRS and m not in TORCHUNLEARN_METHODS]
    if unknown:
        raise ConfigError(
            f"no parity pair for {', '.join(unknown)}; known: {', '.join(sorted(PAIRS))} (SUPREME), "
            f"{', '.join(TORCHUNLEARN_METHODS)} (torchunlearn)"
        )
    ck, data = open_checkpoint(checkpoint, data_dir)
    dev = resolve_device(device)
    command = "experiments " + " ".join(shlex.quote(a) for a in sys.argv[1:])  # also under python -m experiments.cli
    rows = run_parity(
        ck.model,
        data,
        methods=method_list,
        specs=fixed,
        seeds=seed_list,
        device=dev,
        log=(lambda msg: None) if quiet else (lambda msg: click.echo(msg, err=True)),
    )
    epochs = ((ck.meta.config or {}).get("train") or {}).get("epochs", "?")
    meta = run_meta(
        dev,
        command=command,
        checkpoint=str(checkpoint),
        seeds=seed_list,
        setting=f"{data.info.name}, {ck.model.arch}, per class {data.per_class}, "
        f"{len(data.train)} training images, trained {epochs} "
        f"epochs with seed {ck.meta.seed}",
    )
    report = {"meta": meta, "tolerance_points": 5, "rows": rows}
    with atomic_paths(files, force=True) as (tj, tm):
        tj.write_text(json.dumps(report, indent=1, sort_keys=True))
        tm.write_text(markdown(rows, meta))
    click.echo(f"wrote {files[1]}")


# `experiments concepts-report`: concept unlearning on a real dataset next to retraining (experiments.concepts_report)
from .concepts_report import concepts_report_cmd  # noqa: E402

main.add_command(concepts_report_cmd)


# the `unlearn` console script: the stage's group plus `unlearn reproduce` (the name the README has always used) and
# `unlearn demo`
unlearn_main = build_group([reproduce_cmd, demo_cmd])

if __name__ == "__main__":
    main()
