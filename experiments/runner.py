"""`experiments reproduce SUITE --preset P --out DIR` (also `unlearn reproduce`): a suite of experiments run from
config files, resumable, reported next to a paper's committed numbers where it has them. This module is the
orchestration (which cells to run, reading back finished ones, the report); what a cell computes with is in
workspace.py and kinds/.

A suite is a folder ``configs/experiments/SUITE/``: ``presets.toml`` (data, training sizes and seeds per preset,
``smoke`` / ``cpu`` / ``paper``) and one TOML file per experiment. An experiment names its kind (a registry:
``unlearn`` = models x forget specs x methods), its grid, per-preset overrides of the grid, the reference's
numbers and notes on where they come from a reference bug. Nothing experiment-specific lives in code.

Every (experiment, model, forget spec, method, seed) is a cell. A finished cell is a JSON file under
``DIR/cells/``, written atomically: a rerun reads it back instead of recomputing it, and an interrupted run
leaves no partial cell. A cell records a digest of the settings it ran under (``settings_digest``) and of the code
it ran through (``code_digest``: the toolkit's shared code plus the cell's own method file); a cell whose settings
or code have changed since is recomputed.
Offline artefacts (original models, condensed files, DC-U offline checkpoints) are cached under
``DIR/artefacts/`` the same way. ``DIR/report.md`` (with ``report.csv`` and ``report.json``) gives mean +-
std over seeds, the reference's numbers beside ours, and flags the differences beyond noise.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import inspect
import json
import re
import sys
import time
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

import torch

from dcforget.config import config_dirs, load_toml
from dcforget.datasets import default_data_dir
from dcforget.errors import ConfigError, DcForgetError, DivergedError, OutputExistsError
from dcforget.forget import ForgetSpec
from dcforget.io import atomic_path
from dcforget.jobs import Executor, LocalExecutor
from dcforget.provenance import command_line, git_hash, machine
from dcforget.runtime import bf16_native, resolve_bf16
from unlearn.methods import METHODS

from .report import write_report
from .workspace import KINDS, Cell, Experiment, Kind, Workspace, val_fraction

__all__ = [
    "KINDS",
    "Cell",
    "Experiment",
    "Kind",
    "Workspace",
    "reproduce",
    "load_suite",
    "settings_digest",
    "code_digest",
]

PRESET_NAMES = ("smoke", "cpu", "paper")

Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------- suite files
SUITE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]*")


def known_suites() -> list[str]:
    """The suites there are: folders of configs/experiments/ holding a presets.toml."""
    names: set[str] = set()
    for base in config_dirs():
        d = base / "experiments"
        if d.is_dir():
            names.update(p.name for p in d.iterdir() if (p / "presets.toml").is_file() and SUITE_NAME.fullmatch(p.name))
    return sorted(names)


def suite_dir(suite: str) -> Path:
    """The folder of a suite named by a plain name (never a path: ``../x`` or ``/x`` would load presets from
    outside configs/experiments/)."""
    known = known_suites()
    if isinstance(suite, str) and SUITE_NAME.fullmatch(suite) and suite in known:
        for base in config_dirs():
            d = base / "experiments" / suite
            if (d / "presets.toml").is_file():
                return d
    raise ConfigError(
        f"unknown experiment suite {suite!r} (a name of a folder of configs/experiments/); "
        f"known suites: {', '.join(known) or 'none'}"
    )


def _check_default_labels(name: str, spec: dict[str, Any]) -> None:
    """A ``policy = true`` variant (the default as a user gets it) is a row label, never a registered method's name:
    a row labelled ``condensed`` that runs whatever the policy picks would pass for the method everywhere rows are
    read by method (the policy search's candidates, the targets)."""
    from unlearn.methods import METHODS

    variants = spec.get("variants", {})
    for label, v in variants.items() if isinstance(variants, dict) else ():
        if isinstance(v, dict) and "policy" in v and label in METHODS.names():
            raise ConfigError(
                f"experiment {name}: variant {label!r} follows the policy, so it cannot carry a method's name; "
                'call it "default"'
            )


def load_suite(suite: str, preset: str, only: list[str] | None = None) -> tuple[dict[str, Any], list[Experiment]]:
    if preset not in PRESET_NAMES:
        raise ConfigError(f"unknown preset {preset!r}; choose one of: {', '.join(PRESET_NAMES)}")
    d = suite_dir(suite)
    presets = load_toml(d / "presets.toml")
    if preset not in presets:
        raise ConfigError(f"suite {suite!r} has no preset {preset!r}")
    exps = []
    for path in sorted(d.glob("*.toml")):
        if path.name == "presets.toml":
            continue
        raw = load_toml(path)
        name = path.stem.split("-", 1)[1] if re.match(r"\d+-", path.stem) else path.stem
        spec = {k: v for k, v in raw.items() if k != "presets"}
        spec.update(raw.get("presets", {}).get(preset, {}))
        if spec.get("skip"):
            continue
        _check_default_labels(name, spec)
        exps.append(Experiment(name, spec))
    if only is not None and (not only or any(not isinstance(o, str) or not o.strip() for o in only)):
        raise ConfigError("--only needs experiment names (a comma list without empty names)")
    if only:
        names = {e.name for e in exps}
        unknown = [o for o in only if o not in names]
        if unknown:
            raise ConfigError(f"unknown experiment(s) {', '.join(unknown)}; this suite has: {', '.join(sorted(names))}")
        exps = [e for e in exps if e.name in only]
    shared = {k: v for k, v in presets.items() if not isinstance(v, dict)}  # top-level keys: every preset's
    return {**shared, **presets[preset]}, exps


def suite_tuning(suite: str, preset: str, dataset: str, model: str) -> list[tuple[str, str]]:
    """What ``experiments tune --suite SUITE`` tunes for ``dataset``/``model``: (method, forget spec) pairs from the
    suite's leaderboards on that dataset and model whose options are tuned on it (``tuned_on``): random forgetting
    for every method with a search space that is not class-only; class forgetting for the class-only ones and those
    the experiment lists in ``tune_class``. The list comes from the suite's files, so it never drifts from what the
    suite runs."""
    from unlearn.methods import METHODS

    _, exps = load_suite(suite, preset)
    jobs: dict[tuple[str, str], None] = {}
    for e in exps:
        s = e.spec
        if (
            s.get("kind") != "leaderboard"
            or s.get("tuned_on", s.get("dataset")) != dataset
            or s.get("dataset") != dataset
        ):
            continue
        if model not in s.get("models", []):
            continue
        forget = s["forget"]
        whole = ForgetSpec.parse(forget).family == "class"
        extra = set(s.get("tune_class", []))
        variants = s.get("variants", {})
        for m in s["methods"]:
            if m in variants:  # the default as a user gets it (`policy = true`): what a policy or fallback picks
                continue
            method = METHODS.get(m)
            if not method.space:
                continue
            if (not whole and not method.class_only) or (whole and (method.class_only or m in extra)):
                jobs[(m, forget)] = None
    if not jobs:
        raise ConfigError(f"suite {suite!r} tunes nothing on {dataset}/{model} at preset {preset!r}")
    return list(jobs)


PRESENTATION_KEYS = (
    "title",
    "description",
    "reductions",
    "reference_source",
    "reference",
    "reference_keys",
    "notes",
    "flag",
    "tune_class",
)  # shape the report (or `experiments tune --suite`), not the cells


PRESET_PRESENTATION_KEYS = ("description", "seeds", "seed_note")  # the report's text, and the seed (in the cell)


def settings_digest(preset: dict[str, Any], exp: Experiment) -> str:
    """What an experiment's cells are computed from: the preset's settings (seeds aside: the seed is in the cell)
    and the experiment's grid and options after the preset's overrides. A finished cell whose digest differs was
    computed under other settings and is recomputed, not read back."""
    settings = {
        "preset": {k: v for k, v in preset.items() if k not in PRESET_PRESENTATION_KEYS},
        "val_fraction": val_fraction(preset),
        "experiment": {k: v for k, v in exp.spec.items() if k not in PRESENTATION_KEYS},
    }
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


REPO_ROOT = Path(__file__).resolve().parents[1]
CODE_PACKAGES = (
    "dcforget",
    "condense",
    "unlearn",
    "attacks",
    "experiments",
)  # what a cell's computation can run through
# Orchestration (which cells run, where results go), drawing, reporting and argument parsing: code that decides
# nothing a cell computes. What a cell's modules import, transitively, joins its digest (code_digest).
NOT_CELL_CODE = (
    "experiments/runner.py",
    "experiments/figures.py",
    "experiments/report.py",
    "experiments/cli.py",
    "experiments/demo.py",
    "experiments/kinds/leaderboard_rows.py",
    "dcforget/provenance.py",
    "dcforget/cli.py",
    "unlearn/cli.py",
    "unlearn/compare.py",
    "condense/cli.py",
    "attacks/cli.py",
)


def _code_bytes(path: Path) -> bytes:
    """A module's code without its comments, docstrings and layout (its AST with docstrings dropped), so that
    documenting code never invalidates the cells computed by it."""
    tree = ast.parse(path.read_text(), filename=str(path))
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.body:
            first = node.body[0]
            if (
                isinstance(first, ast.Expr)
                and isinstance(first.value, ast.Constant)
                and isinstance(first.value.value, str)
            ):
                node.body = node.body[1:] or [ast.Pass()]
    return ast.dump(tree, annotate_fields=False).encode()


def _module_files(root: Path) -> dict[str, Path]:
    """Dotted module name -> file, for every module of CODE_PACKAGES under ``root``."""
    out = {}
    for pkg in CODE_PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return out


def _imports(name: str, path: Path, known: dict[str, Path]) -> set[str]:
    """The toolkit modules ``name`` imports anywhere in its body (function-local imports included): for
    ``from X import Y``, X and, where Y is a module, X.Y."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{a.name}" for a in node.names)
    return {m for m in found if m in known}


@functools.lru_cache(maxsize=None)
def code_digest(
    method: str | None = None, root: Path | None = None, kind_module: str = "experiments.kinds.unlearn"
) -> str:
    """sha256 of the source a cell runs through: the modules reachable by imports (static, function-local ones
    included) from its experiment kind's module, the workspace and the cell's method, without docstrings and
    comments. Not followed: orchestration, reports and CLIs (NOT_CELL_CODE), and the method files of *other*
    methods (the registry imports them all), so editing one method recomputes only its cells, editing a kind
    recomputes only that kind's cells, and editing a module no cell imports (U-LiRA's, for the reproduction's
    unlearning cells) recomputes nothing. ``method`` None: every method file counts. ``root``: another copy of the
    toolkit (default: this installation)."""
    root = root or REPO_ROOT
    known = _module_files(root)
    methods_pkg = "unlearn.methods"
    own: set[str] = set()
    if method is not None:
        own = {f"{methods_pkg}.{Path(inspect.getsourcefile(METHODS.get(method).run)).stem}"}
        own |= {m for m in _imports(next(iter(own)), known[next(iter(own))], known) if m.startswith(methods_pkg + ".")}
    skip = {m for m in known if known[m].relative_to(root).as_posix() in NOT_CELL_CODE}
    if method is not None:
        skip |= {
            m for m in known if m.startswith(methods_pkg + ".") and m not in own and m not in (f"{methods_pkg}.base",)
        }
    todo = [m for m in (kind_module, "experiments.workspace", "experiments.artefacts", *sorted(own)) if m in known]
    seen: set[str] = set()
    while todo:
        m = todo.pop()
        if m in seen or m in skip:
            continue
        seen.add(m)
        todo.extend(_imports(m, known[m], known) - seen)
    h = hashlib.sha256()
    for m in sorted(seen):
        h.update(known[m].relative_to(root).as_posix().encode() + b"\0" + _code_bytes(known[m]) + b"\0")
    return h.hexdigest()[:16]


def cell_digest(settings: str, cell: "Cell", exp: Experiment, preset: dict[str, Any]) -> str:
    """SETTINGS-CODE[-INPUTS]: the experiment's settings digest, the code the cell runs through, and what its kind
    says the cell reads besides (``Kind.inputs``: e.g. tuned options, so re-tuning recomputes the cell)."""
    method = cell.key.get("method")
    variant = exp.spec.get("variants", {}).get(method) if isinstance(method, str) else None
    if isinstance(variant, dict):
        method = variant.get("method")
    if isinstance(method, str) and method not in METHODS and exp.spec.get("policy"):  # a policy candidate's label
        from unlearn.policy import method_label

        try:
            method = method_label(method)[0]
        except DcForgetError:  # not a label: the code of every method, as for any unknown name
            pass
    kind = KINDS.get(exp.spec.get("kind", "unlearn"))
    out = f"{settings}-{code_digest(method if isinstance(method, str) and method in METHODS else None, None, kind.run.__module__)}"
    inputs = kind.inputs(cell, exp, Workspace.experiment_preset(preset, exp)) if kind.inputs is not None else None
    if inputs is not None:
        out += "-" + hashlib.sha256(json.dumps(inputs, sort_keys=True, default=str).encode()).hexdigest()[:12]
    return out


def _resolved_suite(suite: str, preset: str, only: list[str] | None, device: torch.device):
    """The suite's preset and experiments with bf16 = "auto" resolved for ``device``; (preset, experiments, auto)."""
    p, exps = load_suite(suite, preset, only)
    p, auto = resolve_bf16(p, device)
    resolved = [resolve_bf16(e.spec, device) for e in exps]
    exps = [replace(e, spec=spec) for e, (spec, _) in zip(exps, resolved)]
    return p, exps, auto or any(a for _, a in resolved)


_WORKSPACES: dict[str, tuple[Workspace, dict[str, Experiment]]] = {}


def experiment_workspace(ws: Workspace, exp: Experiment) -> Workspace:
    """The workspace an experiment's cells run in: its model and offline settings, dataset and cap
    (``Workspace.for_experiment``), and its own ``original_epochs`` where it names one (a choice checked on
    another recipe's original, e.g. the demo's 12-epoch one): that original is a separate artefact, since the
    epochs join the artefact's digest (``Workspace.variant``)."""
    return ws.for_experiment(exp)  # Workspace.experiment_preset applies the experiment's own original_epochs


def run_cell(spec: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """One cell as a job of :mod:`dcforget.jobs` (so a suite runs on any executor: in this process, a local pool,
    Ray). The workspace (data, cached artefacts) is made once per run and process; artefacts are files under
    ``out/artefacts``, so workers on other machines need that directory on a shared file system."""
    state = _WORKSPACES.get(context["run"])
    if state is None:
        device = torch.device(context["device"])
        p, exps, _ = _resolved_suite(spec["suite"], spec["preset"], context.get("only"), device)
        log = context.get("log") or (lambda msg: print(msg, file=sys.stderr, flush=True))
        ws = Workspace(
            p,
            Path(context["out"]) / "artefacts",
            device,
            context.get("data_dir"),
            log,
            quiet=not context.get("progress"),
            run_id=context["run"],
        )
        state = _WORKSPACES[context["run"]] = (ws, {e.name: e for e in exps})
    ws, exps = state
    exp = exps[spec["experiment"]]
    cell = Cell(exp.name, spec["key"], spec["seed"])
    for attempt in range(3):
        try:
            return {"result": KINDS.get(exp.spec.get("kind", "unlearn")).run(cell, exp, experiment_workspace(ws, exp))}
        except DivergedError as err:
            # a method that diverges at these settings is a result, as in Deep Unlearn's searches: the cell records
            # it (a rerun reads it back), the report lists it, and the suite goes on with the other cells
            return {"result": {"diverged": str(err)}}
        except OutputExistsError:
            # another worker wrote an artefact this cell was making (artefacts are written atomically and never
            # overwritten): run again, reading it back
            if attempt == 2:
                raise


def read_cell(path: Path) -> tuple[dict[str, Any] | None, str | None]:
    """(the finished cell at ``path`` or None, why it cannot be used or None). A cell that cannot be read (cut
    short, not JSON, not a cell record) is reported and treated as missing, never a traceback."""
    if not path.exists():
        return None, None
    try:
        rec = json.loads(path.read_text())
    except (OSError, ValueError) as err:  # ValueError: JSONDecodeError, UnicodeDecodeError
        return None, f"{type(err).__name__}: {' '.join(str(err).split())[:120]}"
    if not (isinstance(rec, dict) and isinstance(rec.get("settings"), str) and isinstance(rec.get("result"), dict)):
        return None, "not a cell record (settings and result)"
    return rec, None


def check_out_dir(out: Path, suite: str, preset: str, force: bool) -> None:
    """Refuse (without ``force``) an output directory that holds the report of another suite or preset: its cells
    and report would be replaced by this run's."""
    try:
        meta = json.loads((out / "report.json").read_text()).get("meta")
    except (OSError, ValueError, AttributeError):
        return  # no report (a new or interrupted run), or an unreadable one: nothing it says to protect
    if not isinstance(meta, dict) or force:
        return
    theirs = (meta.get("suite", suite), meta.get("preset"))
    if theirs != (suite, preset):
        raise OutputExistsError(
            f"{out} holds a run of suite {theirs[0]!r} with preset {theirs[1]!r}, not {suite!r} "
            f"with {preset!r}; choose another --out, or pass --force to replace its report"
        )


def cell_runs(records: list[tuple[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """The invocations a report's cells come from, earliest first: each with its command, commit, machine and start
    (as its cells record them; cells written before they did carry only their leaderboard's ``run_id``, or nothing),
    and how many cells of which experiments it computed. A time ratio always divides two times of one of them."""
    runs: dict[str, dict[str, Any]] = {}
    for name, rec in records:
        info = rec.get("run") if isinstance(rec.get("run"), dict) else None
        rid = (info or {}).get("id") or (rec.get("result") or {}).get("run_id") or "unrecorded"
        run = runs.setdefault(str(rid), {"id": str(rid), **(info or {}), "cells": 0, "experiments": []})
        run["cells"] += 1
        if name not in run["experiments"]:
            run["experiments"].append(name)
    return sorted(runs.values(), key=lambda r: (r.get("started_utc") is None, r.get("started_utc") or "", r["id"]))


def reproduce(
    suite: str,
    preset: str,
    out: str | Path,
    *,
    only: list[str] | None = None,
    data_dir: str | None = None,
    device: torch.device,
    seeds: int | None = None,
    command: str = "",
    log: Log = print,
    report_only: bool = False,
    progress: bool = False,
    executor: Executor | None = None,
    force: bool = False,
) -> dict[str, Any]:
    """Run (or read back) every cell of the suite's experiments and write the report. ``report_only``: compute
    nothing, report the finished, current cells and list the missing ones (a partial report says so); an
    unreadable cell counts as missing (and is recomputed by a run). ``only``: run these experiments' cells; the
    suite's other experiments with cells in ``out`` are read back as with ``report_only`` and keep their rows. ``force``: replace the report of another
    suite or preset in ``out`` (refused otherwise).
    ``executor``: where the cells run (default: one after another in this process)."""
    # bf16 = "auto": on exactly where autocast has hardware support (emulated bf16 on a CPU is 4-12x slower than
    # float32: reports/throughput/throughput-cpu.json); the resolved value is what the digests and the report record
    native = bf16_native(device)
    p, exps, auto = _resolved_suite(suite, preset, only, device)
    n_seeds = int(seeds or p.get("seeds", 3))
    out = Path(out)
    check_out_dir(out, suite, preset, force)
    run_names = {e.name for e in exps}
    if only:  # the suite's other experiments that already have cells in ``out`` stay in the report, read back only
        _, every, _ = _resolved_suite(suite, preset, None, device)
        exps = [e for e in every if e.name in run_names or (out / "cells" / e.name).is_dir()]
    plan = [(exp, cell) for exp in exps for cell in KINDS.get(exp.spec.get("kind", "unlearn")).cells(exp, n_seeds)]
    done_before = 0
    records: dict[int, dict[str, Any]] = {}
    t0 = time.perf_counter()
    digests = {e.name: settings_digest(p, e) for e in exps}
    missing: list[str] = []
    older_code: list[str] = []
    damaged: list[str] = []
    todo: list[int] = []
    # each cell's digest as planned, also what its record is written under: a tuned file that changes while the run
    # is in flight then leaves the cell under the old digest (recomputed next time), never stale under the new one
    want: dict[int, str] = {}
    for i, (exp, cell) in enumerate(plan):
        path = out / "cells" / exp.name / f"{cell.id}.json"
        rec, why = read_cell(path)
        if why is not None:
            damaged.append(f"{exp.name}/{cell.id}")
            log(
                f"{exp.name}: {cell.id} cannot be read ({why}): "
                + ("counted as missing" if report_only or exp.name not in run_names else "recomputed")
            )
        want[i] = cell_digest(digests[exp.name], cell, exp, p)
        if rec is not None and rec.get("settings") == want[i]:
            done_before += 1
            records[i] = rec
        elif report_only or exp.name not in run_names:
            if rec is None or str(rec.get("settings", "")).split("-")[0] != digests[exp.name]:
                missing.append(f"{exp.name}/{cell.id}")
                continue
            older_code.append(f"{exp.name}/{cell.id}")  # same settings, computed by an earlier version of the code
            records[i] = rec
        else:
            if rec is not None:
                log(f"{exp.name}: {cell.id} (settings or code changed since it ran: recomputed)")
            todo.append(i)
    if todo:
        executor = executor or LocalExecutor()
        log(
            f"{len(todo)} cell(s) to run ({', '.join(f'{k}={v}' for k, v in executor.describe().items() if v is not None)})"
        )
        where = Path(data_dir) if data_dir is not None else default_data_dir()  # absolute: workers have other cwds
        run_id = uuid.uuid4().hex
        run_info = {  # which invocation computed a cell: a report may gather cells of several (`runs` in its meta)
            "id": run_id,
            "command": command_line(command),
            "git": git_hash(),
            "machine": machine(device),
            "started_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        }
        context = {
            "run": run_id,
            "out": str(out.resolve()),
            "data_dir": str(where.resolve()),
            "device": str(device),
            "only": only,
            "progress": progress,
            # in this process the workspace logs through ``log``; other processes print to their stderr
            "log": log if isinstance(executor, LocalExecutor) and executor.workers == 1 else None,
        }
        specs = [
            {
                "suite": suite,
                "preset": preset,
                "experiment": plan[i][0].name,
                "key": plan[i][1].key,
                "seed": plan[i][1].seed,
            }
            for i in todo
        ]
        try:
            for n_done, (pos, (value, seconds)) in enumerate(executor.map(run_cell, specs, context), 1):
                i = todo[pos]
                exp, cell = plan[i]
                rec = {
                    "experiment": exp.name,
                    "key": cell.key,
                    "seed": cell.seed,
                    "settings": want[i],
                    "result": value["result"],
                    "cell_seconds": seconds,
                    "run": run_info,
                }
                path = out / "cells" / exp.name / f"{cell.id}.json"
                path.parent.mkdir(parents=True, exist_ok=True)
                with atomic_path(path, force=True) as tmp:
                    tmp.write_text(json.dumps(rec, indent=1, default=str))
                records[i] = json.loads(json.dumps(rec, default=str))
                log(f"[{n_done}/{len(todo)}] {exp.name}: {cell.id} ({seconds:.0f} s)")
        finally:
            _WORKSPACES.pop(context["run"], None)
    results: dict[str, list[dict[str, Any]]] = {e.name: [] for e in exps}
    diverged: list[str] = []
    for i in sorted(records):
        if "diverged" in records[i]["result"]:  # no metrics to put in a row: the report names the cell instead
            diverged.append(f"{plan[i][0].name}/{plan[i][1].id}: {records[i]['result']['diverged']}")
            continue
        results[plan[i][0].name].append(records[i])
    sections = [(e, KINDS.get(e.spec.get("kind", "unlearn")).rows(e, results[e.name])) for e in exps]
    columns = {e.name: KINDS.get(e.spec.get("kind", "unlearn")).columns for e in exps}
    meta = {
        "suite": suite,
        "columns": columns,
        "preset": preset,
        "command": command_line(command),  # as the console script, however the run was started
        "machine": machine(device),
        "git": git_hash(),
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "seeds": n_seeds,
        "preset_description": p.get("description", ""),
        "seed_note": p.get("seed_note"),
        "preset_settings": {k: v for k, v in p.items() if k != "description"},
        "cells": len(plan),
        "cells_read_back": done_before,
        "only": only,
        "seconds_this_run": time.perf_counter() - t0,
        "cells_missing": missing,
        "cells_older_code": older_code,
        "cells_damaged": damaged,
        "cells_diverged": diverged,
        "runs": cell_runs([(plan[i][0].name, records[i]) for i in sorted(records)]),
        "data_note": (
            f"{p['dataset']}, {p.get('per_class') or 'all'} training images per class (seed 0), of which "
            f"{100 * val_fraction(p):.0f}% per class are held out as the validation split (not retain, "
            "not forget); RA/FA are on the rest, TA on the test split."
            if p.get("dataset")
            else "this suite reads committed reports, each with its own data."
        ),
        "bf16_note": (
            "bf16 autocast is on for training the originals and inside every method with a bf16 "
            "option (evaluation runs in float32)."
            if p.get("bf16")
            else "Everything runs in float32"
            + (
                " (bf16 = auto: this device has no native bf16, where autocast is 4-12x slower)."
                if auto and not native
                else "."
            )
        ),
    }
    rows = write_report(out, meta, sections, results)
    if report_only:
        log(
            f"{len(plan)} cells: {done_before} read back, {len(older_code)} read back from older code, "
            f"{len(missing)} missing"
            + (f" ({len(damaged)} of them unreadable)" if damaged else "")
            + f"; none run (--report-only); report: {out / 'report.md'}"
        )
    else:
        log(
            f"{len(plan)} cells ({done_before} read back, {len(todo)} run now"
            + (f", {len(damaged)} of them unreadable before" if damaged else "")
            + f"); report: {out / 'report.md'}"
        )
    return {"meta": meta, "rows": rows}
