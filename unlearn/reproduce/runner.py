"""`unlearn reproduce SUITE --preset P --out DIR`: a paper's experiments run from config files, resumable, reported
next to the paper's committed numbers.

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

import csv
import functools
import hashlib
import inspect
import io
import json
import platform
import re
import statistics
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from dcforget.config import config_dirs, load_toml
from dcforget.datasets import DEFAULT_VAL_FRACTION, Data, load_data
from dcforget.errors import ConfigError
from dcforget.io import atomic_path
from dcforget.registry import Registry
from dcforget.train import TrainConfig

from ..artefacts import condensed_file, dcu_offline, original_model

PRESET_NAMES = ("smoke", "cpu", "paper")
ROW_AXES = ("ipc", "clusters", "condenser", "classifier", "cycle")  # key fields a table shows between forget and method
Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------- suite files
def suite_dir(suite: str) -> Path:
    for base in config_dirs():
        d = base / "experiments" / suite
        if d.is_dir():
            return d
    raise ConfigError(f"unknown experiment suite {suite!r} (no configs/experiments/{suite}/)")


@dataclass
class Experiment:
    name: str
    spec: dict[str, Any]  # the experiment file with the preset's overrides applied

    @property
    def title(self) -> str:
        return self.spec.get("title", self.name)


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
        exps.append(Experiment(name, spec))
    if only:
        names = {e.name for e in exps}
        unknown = [o for o in only if o not in names]
        if unknown:
            raise ConfigError(f"unknown experiment(s) {', '.join(unknown)}; this suite has: {', '.join(sorted(names))}")
        exps = [e for e in exps if e.name in only]
    return presets[preset], exps


def val_fraction(preset: dict[str, Any]) -> float:
    """The preset's validation fraction (default 0.15): held out of the capped training set, never trained on."""
    return float(preset.get("val_fraction", DEFAULT_VAL_FRACTION))


# --------------------------------------------------------------------------------------------- workspace
@dataclass
class Workspace:
    """The preset's data and every cached artefact, made on first use."""
    preset: dict[str, Any]
    root: Path
    device: torch.device
    data_dir: str | None
    log: Log
    _memo: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # arch -> {model_options, offline}

    def for_experiment(self, exp: "Experiment") -> "Workspace":
        """This workspace (same data and memo) with ``exp``'s model and offline-phase settings."""
        mo, off = exp.spec.get("model_options", {}), exp.spec.get("offline", {})
        ov = {a: {"model_options": mo.get(a), "offline": off} for a in set(mo) | set(exp.spec.get("models", []))}
        return replace(self, overrides=ov)

    def data(self) -> Data:
        p = self.preset
        return self._cached("data", lambda: load_data(p["dataset"], self.data_dir, p.get("per_class") or None, seed=0,
                                                      val_fraction=val_fraction(p)).to(self.device))

    def _cached(self, key: str, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def variant(self, arch: str) -> str:
        """The artefact folder of ``arch``: its name, plus a digest of the model/offline options an experiment
        sets (``model_options``, ``offline``), so experiments with different settings never share a file."""
        extra = {k: v for k, v in self.overrides.get(arch, {}).items() if v}
        if not extra:
            return arch
        return f"{arch}-{hashlib.sha256(json.dumps(extra, sort_keys=True).encode()).hexdigest()[:8]}"

    def original(self, arch: str):
        cfg = TrainConfig(epochs=int(self.preset["original_epochs"]), bf16=bool(self.preset.get("bf16", False)))
        mo = self.overrides.get(arch, {}).get("model_options") or None
        v = self.variant(arch)
        return self._cached(f"orig/{v}", lambda: original_model(
            self.root / v / "original.pt", self.data(), arch, cfg, device=self.device, model_options=mo, log=self.log))

    def condensed(self, arch: str, offline: bool = False, *, clusters: int | None = None, condenser: str = "fdm",
                  ipc: int | None = None, source: str | None = None):
        """The ``condenser`` file (K = ``clusters`` or the preset's) from the original's or the offline model's
        features."""
        k = int(clusters or self.preset["clusters"])
        v = self.variant(arch)
        model = self.offline(arch, ipc, source)[0] if offline else self.original(arch)
        default_ipc = int(self.preset.get("remembrance", {}).get("ipc", 10))
        tag = ("offline-" if ipc in (None, default_ipc) else f"offline-ipc{ipc}-") if offline else ""
        if offline and source not in (None, self.preset.get("remembrance", {}).get("source", "heldout")):
            tag += f"{source}-"
        name = f"{condenser}-{tag}{k}.h5"
        options = self.preset.get("condense", {}).get(condenser, {})
        return self._cached(f"cs/{v}/{name}", lambda: condensed_file(
            self.root / v / name, self.data(), model, condenser, clusters=k, options=options, device=self.device,
            log=self.log))

    def offline(self, arch: str, ipc: int | None = None, source: str | None = None):
        """DC-U's offline checkpoint of ``arch``, its remembrance set of ``ipc`` images per class from ``source``
        ("heldout" training images or the "test" split, as the reference; default: the preset's)."""
        p = self.preset
        rem = p.get("remembrance", {})
        ipc = int(ipc if ipc is not None else rem.get("ipc", 10))
        default_source = rem.get("source", "heldout")
        source = source or default_source
        opts = {**p.get("offline", {}), **(self.overrides.get(arch, {}).get("offline") or {}),
                "bf16": bool(p.get("bf16", False))}
        name = "offline" + ("" if ipc == int(rem.get("ipc", 10)) else f"-ipc{ipc}") + \
            ("" if source == default_source else f"-{source}") + ".pt"
        v = self.variant(arch)
        return self._cached(f"off/{v}/{name}", lambda: dcu_offline(
            self.root / v / name, self.data(), self.original(arch), opts, ipc=ipc,
            source=source, data_dir=self.data_dir, device=self.device, log=self.log))


# --------------------------------------------------------------------------------------------- experiment kinds
@dataclass
class Cell:
    experiment: str
    key: dict[str, Any]
    seed: int

    @property
    def id(self) -> str:
        parts = [re.sub(r"[^A-Za-z0-9_.]+", "_", str(v)) for v in self.key.values()]
        return "-".join(parts + [f"s{self.seed}"])


@dataclass(frozen=True)
class Kind:
    cells: Callable[[Experiment, int], list[Cell]]
    run: Callable[[Cell, Experiment, Workspace], dict[str, Any]]
    rows: Callable[[Experiment, list[dict[str, Any]]], list[dict[str, Any]]]


KINDS: Registry[Kind] = Registry("experiment kind")


def mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)


def lookup(tree: dict[str, Any], path: list[Any]):
    """tree[p0][p1]... with every key as a string (TOML keys), or None."""
    for p in path:
        if not isinstance(tree, dict) or str(p) not in tree:
            return None
        tree = tree[str(p)]
    return tree


def add_reference(row: dict[str, Any], ref: list[float], ref_retrain: list[float] | None, flag: bool = True) -> None:
    """Put the reference's [RA, FA, MIA, seconds] beside a row; time as the reference's ratio to its retraining;
    flag each metric that differs by more than max(2 std, 2 points)."""
    row["ref_retain_acc"], row["ref_forget_acc"], row["ref_mia"] = ref[0], ref[1], ref[2]
    if isinstance(ref_retrain, list) and len(ref) > 3 and len(ref_retrain) > 3:
        row["ref_time_ratio"] = ref[3] / ref_retrain[3]
    if not flag:
        return
    flags = []
    for k, short in (("retain_acc", "RA"), ("forget_acc", "FA"), ("mia", "MIA")):
        if k in row and abs(row[k] - row["ref_" + k]) > max(2.0 * row.get(k + "_std", 0.0), 2.0):
            flags.append(f"{short} {row[k] - row['ref_' + k]:+.1f}")
    row["flags"] = ", ".join(flags)





# --------------------------------------------------------------------------------------------- runner + report
def _fmt(row: dict[str, Any], k: str) -> str:
    if k not in row:
        return ""
    std = row.get(k + "_std")
    one_seed = isinstance(row.get("seeds"), int) and row["seeds"] < 2  # no spread to show
    return f"{row[k]:.2f} ± {std:.2f}" if std is not None and not one_seed else f"{row[k]:.2f}"


def render_markdown(meta: dict[str, Any], sections: list[tuple[Experiment, list[dict[str, Any]]]]) -> str:
    out = io.StringIO()
    w = out.write
    w(f"# {meta['suite']} reproduction, preset `{meta['preset']}`\n\n")
    w(f"Command: `{meta['command']}`  \nMachine: {meta['machine']}  \nFinished: {meta['finished_utc']}  \n")
    w(f"Preset: {meta['preset_description']}\n\n")
    if meta.get("figures_note"):
        w(f"({meta['figures_note']})\n\n")
    if meta.get("cells_older_code"):
        w(f"**{len(meta['cells_older_code'])} cells were computed by an earlier version of the code** (same settings; "
          f"`--report-only` reports them as they are, a normal run recomputes them).\n\n")
    if meta.get("cells_missing"):
        w(f"**Partial report**: {len(meta['cells_missing'])} of {meta['cells']} cells are not computed yet "
          f"(`--report-only`): {', '.join(meta['cells_missing'])}.\n\n")
    w(f"Each cell is the mean ± sample standard deviation (n-1) over seeds 0..{meta['seeds'] - 1}. {SEED_NOTE} "
      f"Data: {meta.get('data_note', '')} Time is a ratio to retraining of the same model, forget set and seed, "
      "measured in the same run; it counts the whole online request (reduced-set assembly and training) and "
      "excludes offline work (training the original, condensation, DC-U's offline phase). Absolute seconds depend "
      "on the machine; the reference's ratio is its method time over its retraining time. "
      f"{meta.get('bf16_note', '')} A flag marks a difference from the reference's single run larger than "
      "max(2 std, 2 points).\n")
    for exp, rows in sections:
        w(f"\n## {exp.title}\n\n")
        if exp.spec.get("description"):
            w(exp.spec["description"].strip() + "\n\n")
        if exp.spec.get("reductions"):
            w(f"Reduced at this preset: {exp.spec['reductions']}.\n\n")
        if any(k in r for r in rows for k, _ in VAL_COLUMNS):
            w(VAL_NOTE + "\n\n")
        if exp.spec.get("reference_source"):
            w(f"Reference numbers: {exp.spec['reference_source']}\n\n")
        axes = [a for a in ROW_AXES if any(a in r for r in rows)]
        val = [k for k, _ in VAL_COLUMNS if any(k in r for r in rows)]
        w("| model | forget | " + "".join(f"{a} | " for a in axes) + "method | RA | FA | "
          + "".join(f"{dict(VAL_COLUMNS)[k]} | " for k in val) + "TA | MIA | time / retrain | "
          "ref RA | ref FA | ref MIA | ref time / R | flags | notes |\n")
        w("|---" * (14 + len(axes) + len(val)) + "|\n")
        for r in rows:
            ref = lambda k: f"{r[k]:.2f}" if k in r else ""
            w(f"| {r['model']} | {r['forget']} | " + "".join(f"{r.get(a, '')} | " for a in axes) + f"{r['method']} | "
              f"{_fmt(r, 'retain_acc')} | {_fmt(r, 'forget_acc')} | " + "".join(f"{_fmt(r, k)} | " for k in val) +
              f"{_fmt(r, 'test_acc')} | {_fmt(r, 'mia')} | {_fmt(r, 'time_ratio')} | {ref('ref_retain_acc')} | "
              f"{ref('ref_forget_acc')} | {ref('ref_mia')} | {ref('ref_time_ratio')} | {r.get('flags', '')} | "
              f"{r.get('extra', '')} |\n")
        if exp.name in meta.get("figures", {}):
            w(f"\n![{exp.name}]({meta['figures'][exp.name]})\n")
        noted = [r for r in rows if r.get("note")]
        for method in dict.fromkeys(r["method"] for r in noted):
            w(f"\n- `{method}`: {next(r['note'] for r in noted if r['method'] == method)}")
        if noted:
            w("\n")
    return out.getvalue()


SEED_NOTE = ("A seed varies the forget set's draw (random and fractional specs) and the method's own randomness "
             "(initialisation, batch order, augmentation, noise); the original model, its condensed files and DC-U's "
             "offline checkpoint are made once (seed 0) and shared by every seed, and so are the per-class cap and "
             "the validation split.")


VAL_COLUMNS = (("val_acc", "VA"), ("val_mia", "val MIA"), ("val_gap", "val gap to R"))
VAL_NOTE = ("VA is accuracy on the validation split; val MIA the population attack with validation images as "
            "non-members; val gap to R the distance to retraining of the same seed on RA, FA, VA and val MIA "
            "(points). Choices read only these columns and RA/FA; TA and MIA (test split) are reported, never "
            "optimised.")


PRESENTATION_KEYS = ("title", "description", "reductions", "reference_source", "reference", "reference_keys", "notes",
                     "flag")  # shape the report, not the cells


def settings_digest(preset: dict[str, Any], exp: Experiment) -> str:
    """What an experiment's cells are computed from: the preset's settings (seeds aside: the seed is in the cell)
    and the experiment's grid and options after the preset's overrides. A finished cell whose digest differs was
    computed under other settings and is recomputed, not read back."""
    settings = {"preset": {k: v for k, v in preset.items() if k not in ("description", "seeds")},
                "val_fraction": val_fraction(preset),
                "experiment": {k: v for k, v in exp.spec.items() if k not in PRESENTATION_KEYS}}
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


REPO_ROOT = Path(__file__).resolve().parents[2]
CODE_PACKAGES = ("dcforget", "condense", "unlearn", "attacks")  # what a cell's computation can run through
NOT_CELL_CODE = ("unlearn/reproduce/figures.py", "unlearn/cli.py", "unlearn/requests_cli.py", "unlearn/compare.py",
                 "condense/cli.py", "attacks/cli.py")  # drawing, reporting and argument parsing only


@functools.lru_cache(maxsize=None)
def code_digest(method: str | None = None, root: Path | None = None) -> str:
    """sha256 of the source a cell runs through: every module of the toolkit's packages under ``root`` (default:
    this installation) except the CLIs, the figure code and the method files of *other* methods, so editing one
    method recomputes only its cells and a change to shared code recomputes all. ``method`` None: every method
    file counts. A method's file counts with the sibling method files it imports (``from .distill import ...``)."""
    from ..methods import METHODS

    root = root or REPO_ROOT
    methods_dir = root / "unlearn" / "methods"
    own: set[str] = set()
    if method is not None:
        name = Path(inspect.getsourcefile(METHODS.get(method).run)).name
        own = {name} | {f"{m}.py" for m in re.findall(r"^from \.(\w+) import", (methods_dir / name).read_text(), re.M)}
    h = hashlib.sha256()
    for pkg in CODE_PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            rel = path.relative_to(root).as_posix()
            if rel in NOT_CELL_CODE:
                continue
            if method is not None and path.parent == methods_dir and path.name not in ("__init__.py", "base.py") \
                    and path.name not in own:
                continue
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def cell_digest(settings: str, cell: "Cell", exp: Experiment) -> str:
    from ..methods import METHODS

    method = cell.key.get("method")
    variant = exp.spec.get("variants", {}).get(method) if isinstance(method, str) else None
    if isinstance(variant, dict):
        method = variant.get("method")
    return f"{settings}-{code_digest(method if isinstance(method, str) and method in METHODS else None)}"


def reproduce(suite: str, preset: str, out: str | Path, *, only: list[str] | None = None, data_dir: str | None = None,
              device: torch.device, seeds: int | None = None, command: str = "", log: Log = print,
              report_only: bool = False) -> dict[str, Any]:
    """Run (or read back) every cell of the suite's experiments and write the report. ``report_only``: compute
    nothing, report the finished, current cells and list the missing ones (a partial report says so)."""
    p, exps = load_suite(suite, preset, only)
    n_seeds = int(seeds or p.get("seeds", 3))
    out = Path(out)
    ws = Workspace(p, out / "artefacts", device, data_dir, log)
    plan = [(exp, cell) for exp in exps for cell in KINDS.get(exp.spec.get("kind", "unlearn")).cells(exp, n_seeds)]
    done_before = 0
    results: dict[str, list[dict[str, Any]]] = {e.name: [] for e in exps}
    t0 = time.perf_counter()
    digests = {e.name: settings_digest(p, e) for e in exps}
    missing: list[str] = []
    older_code: list[str] = []
    for i, (exp, cell) in enumerate(plan, 1):
        path = out / "cells" / exp.name / f"{cell.id}.json"
        rec = json.loads(path.read_text()) if path.exists() else None
        digest = cell_digest(digests[exp.name], cell, exp)
        if rec is not None and rec.get("settings") == digest:
            done_before += 1
        elif report_only:
            if rec is None or str(rec.get("settings", "")).split("-")[0] != digests[exp.name]:
                missing.append(f"{exp.name}/{cell.id}")
                continue
            older_code.append(f"{exp.name}/{cell.id}")  # same settings, computed by an earlier version of the code
        else:
            stale = " (settings or code changed since it ran: recomputed)" if rec is not None else ""
            log(f"[{i}/{len(plan)}] {exp.name}: {cell.id}{stale}")
            t = time.perf_counter()
            result = KINDS.get(exp.spec.get("kind", "unlearn")).run(cell, exp, ws.for_experiment(exp))
            rec = {"experiment": exp.name, "key": cell.key, "seed": cell.seed, "settings": digest,
                   "result": result, "cell_seconds": time.perf_counter() - t}
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, force=True) as tmp:
                tmp.write_text(json.dumps(rec, indent=1, default=str))
        results[exp.name].append(rec)
    sections = [(e, KINDS.get(e.spec.get("kind", "unlearn")).rows(e, results[e.name])) for e in exps]
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    meta = {"suite": suite, "preset": preset, "command": command, "machine": f"{platform.node()}: {dev_name}",
            "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "seeds": n_seeds,
            "preset_description": p.get("description", ""), "preset_settings": {k: v for k, v in p.items() if k != "description"},
            "cells": len(plan), "cells_read_back": done_before, "seconds_this_run": time.perf_counter() - t0,
            "cells_missing": missing, "cells_older_code": older_code,
            "data_note": (f"{p['dataset']}, {p.get('per_class') or 'all'} training images per class (seed 0), of which "
                          f"{100 * val_fraction(p):.0f}% per class are held out as the validation split (not retain, "
                          "not forget); RA/FA are on the rest, TA on the test split."),
            "bf16_note": ("bf16 autocast is on for training the originals and inside every method with a bf16 "
                          "option (evaluation runs in float32)." if p.get("bf16") else "Everything runs in float32.")}
    rows = [r for _, rs in sections for r in rs]
    from . import figures

    meta["figures"] = {}
    for exp, rs in sections:
        png = out / "figures" / f"{exp.name}.png"
        if figures.draw(exp.spec.get("kind", "unlearn"), rs, png, exp.title):
            meta["figures"][exp.name] = f"figures/{exp.name}.png"
    meta["figures_note"] = "" if figures.available() else "figures skipped: matplotlib is not installed (pip install 'dcforget[plots]')"
    with atomic_path(out / "report.md", force=True) as tmp:
        tmp.write_text(render_markdown(meta, sections))
    buf = io.StringIO()
    cols = [k for k in dict.fromkeys(k for r in rows for k in r) if not k.startswith("roc_")]
    writer = csv.DictWriter(buf, fieldnames=cols, extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out / "report.csv", force=True) as tmp:
        tmp.write_text(buf.getvalue())
    with atomic_path(out / "report.json", force=True) as tmp:
        tmp.write_text(json.dumps({"meta": meta, "rows": rows, "cells": results}, indent=1, default=str))
    log(f"{len(plan)} cells ({done_before} read back, {len(plan) - done_before} run now); report: {out / 'report.md'}")
    return {"meta": meta, "rows": rows}
