"""`unlearn reproduce SUITE --preset P --out DIR`: a paper's experiments run from config files, resumable, reported
next to the paper's committed numbers.

A suite is a folder ``configs/experiments/SUITE/``: ``presets.toml`` (data, training sizes and seeds per preset,
``smoke`` / ``cpu`` / ``paper``) and one TOML file per experiment. An experiment names its kind (a registry:
``unlearn`` = models x forget specs x methods), its grid, per-preset overrides of the grid, the reference's
numbers and notes on where they come from a reference bug. Nothing experiment-specific lives in code.

Every (experiment, model, forget spec, method, seed) is a cell. A finished cell is a JSON file under
``DIR/cells/``, written atomically: a rerun reads it back instead of recomputing it, and an interrupted run
leaves no partial cell. Offline artefacts (original models, condensed files, DC-U offline checkpoints) are cached
under ``DIR/artefacts/`` the same way. ``DIR/report.md`` (with ``report.csv`` and ``report.json``) gives mean +-
std over seeds, the reference's numbers beside ours, and flags the differences beyond noise.
"""

from __future__ import annotations

import csv
import io
import json
import platform
import re
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from dcforget.config import config_dirs, load_toml
from dcforget.datasets import Data, load_data
from dcforget.errors import ConfigError
from dcforget.io import atomic_path
from dcforget.registry import Registry
from dcforget.train import TrainConfig, evaluate

from .artefacts import condensed_file, dcu_offline, original_model
from .methods import METHODS
from .request import unlearn_request

PRESET_NAMES = ("smoke", "cpu", "paper")
METRICS = ("retain_acc", "forget_acc", "test_acc", "mia")
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


# --------------------------------------------------------------------------------------------- workspace
@dataclass
class Workspace:
    """The preset's data and every cached artefact, made on first use."""
    preset: dict[str, Any]
    root: Path
    device: torch.device
    data_dir: str | None
    log: Log
    _data: Data | None = None
    _memo: dict[str, Any] = field(default_factory=dict)

    def data(self) -> Data:
        if self._data is None:
            p = self.preset
            self._data = load_data(p["dataset"], self.data_dir, p.get("per_class") or None, seed=0).to(self.device)
        return self._data

    def _cached(self, key: str, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def original(self, arch: str):
        cfg = TrainConfig(epochs=int(self.preset["original_epochs"]), bf16=bool(self.preset.get("bf16", False)))
        return self._cached(f"orig/{arch}", lambda: original_model(
            self.root / arch / "original.pt", self.data(), arch, cfg, device=self.device, log=self.log))

    def condensed(self, arch: str, offline: bool = False):
        k = int(self.preset["clusters"])
        model = self.offline(arch)[0] if offline else self.original(arch)
        name = f"fdm-{'offline-' if offline else ''}{k}.h5"
        return self._cached(f"cs/{arch}/{name}", lambda: condensed_file(
            self.root / arch / name, self.data(), model, "fdm", clusters=k, device=self.device, log=self.log))

    def offline(self, arch: str):
        p = self.preset
        rem = p.get("remembrance", {})
        opts = {**p.get("offline", {}), "bf16": bool(p.get("bf16", False))}
        return self._cached(f"off/{arch}", lambda: dcu_offline(
            self.root / arch / "offline.pt", self.data(), self.original(arch), opts, ipc=int(rem.get("ipc", 10)),
            source=rem.get("source", "heldout"), data_dir=self.data_dir, device=self.device, log=self.log))


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


def _method_options(exp: Experiment, preset: dict[str, Any], method: str, arch: str) -> dict[str, Any]:
    """Preset, then experiment; within each "*" (keys the method has), then "method", then "method@model"."""
    known = METHODS.get(method).defaults
    out = {}
    for source in (preset.get("method_options", {}), exp.spec.get("method_options", {})):
        for scope in ("*", method, f"{method}@{arch}"):
            out.update({k: v for k, v in source.get(scope, {}).items() if k in known})
    return out


def _unlearn_cells(exp: Experiment, seeds: int) -> list[Cell]:
    s = exp.spec
    for m in s["methods"]:
        METHODS.get(m)
    return [Cell(exp.name, {"model": model, "forget": forget, "method": m}, seed)
            for model in s["models"] for forget in s["forget"] for seed in range(seeds) for m in s["methods"]]


def _unlearn_run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    arch, spec, method = cell.key["model"], cell.key["forget"], cell.key["method"]
    m = METHODS.get(method)
    start, condensed, artefacts = ws.original(arch), None, None
    if method == "dcu-reference":
        start, artefacts = ws.offline(arch)
        condensed = ws.condensed(arch, offline=True)
    elif m.needs_condensed:
        condensed = ws.condensed(arch)
    data = ws.data()
    res = unlearn_request(start, data, spec, method, device=ws.device, seed=cell.seed, quiet=True,
                          options=_method_options(exp, ws.preset, method, arch), condensed=condensed, artefacts=artefacts)
    r = res.report
    out = {k: r[k] for k in METRICS}
    out.update(seconds=r["time"]["total_s"], assembly_s=r["time"]["assembly_s"], forget_size=r["forget_size"],
               reduced_ratio=(r["reduced_set"] or {}).get("ratio_to_retain"), options=r["options"])
    if spec.startswith("class:"):  # TA on the classes that remain
        gone = torch.unique(data.train.labels[res.split.forget.to(data.train.labels.device)])
        keep = ~torch.isin(data.test.labels, gone)
        out["test_acc_other"] = evaluate(res.model, data.test.images[keep], data.test.labels[keep], device=ws.device).accuracy
    return out


def _mean_std(values: list[float]) -> tuple[float, float]:
    return statistics.fmean(values), (statistics.pstdev(values) if len(values) > 1 else 0.0)


def _unlearn_rows(exp: Experiment, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, forget, method): mean/std over seeds, time as a ratio to retraining of the same seed,
    and the reference's numbers with a flag where ours differ beyond noise."""
    ref_all = exp.spec.get("reference", {})
    notes = exp.spec.get("notes", {})
    rows = []
    s = exp.spec
    for model in s["models"]:
        for forget in s["forget"]:
            retrain = {c["seed"]: c["result"] for c in cells if c["key"] == {"model": model, "forget": forget, "method": "retrain"}}
            ref_model = ref_all.get(model, {}) if isinstance(ref_all.get(model), dict) else {}
            ref_r = ref_model.get("retrain")
            for method in s["methods"]:
                got = [c for c in cells if c["key"] == {"model": model, "forget": forget, "method": method}]
                if not got:
                    continue
                row: dict[str, Any] = {"experiment": exp.name, "model": model, "forget": forget, "method": method,
                                       "seeds": len(got)}
                ta_key = "test_acc_other" if forget.startswith("class:") else "test_acc"
                for k, name in ((*[(m, m) for m in ("retain_acc", "forget_acc", "mia")], (ta_key, "test_acc"))):
                    row[name], row[name + "_std"] = _mean_std([100 * c["result"][k] for c in got])
                if retrain:
                    ratios = [c["result"]["seconds"] / retrain[c["seed"]]["seconds"] for c in got if c["seed"] in retrain]
                    if ratios:
                        row["time_ratio"], row["time_ratio_std"] = _mean_std(ratios)
                ref = ref_model.get(method)
                if ref:
                    row["ref_retain_acc"], row["ref_forget_acc"], row["ref_mia"] = ref[0], ref[1], ref[2]
                    if ref_r:
                        row["ref_time_ratio"] = ref[3] / ref_r[3]
                    flags = []
                    for k, short in (("retain_acc", "RA"), ("forget_acc", "FA"), ("mia", "MIA")):
                        tol = max(2.0 * row[k + "_std"], 2.0)
                        if abs(row[k] - row["ref_" + k]) > tol:
                            flags.append(f"{short} {row[k] - row['ref_' + k]:+.1f}")
                    row["flags"] = ", ".join(flags)
                if method in notes:
                    row["note"] = notes[method]
                rows.append(row)
    return rows


KINDS.register("unlearn")(Kind(_unlearn_cells, _unlearn_run, _unlearn_rows))


# --------------------------------------------------------------------------------------------- runner + report
def _fmt(row: dict[str, Any], k: str) -> str:
    if k not in row:
        return ""
    std = row.get(k + "_std")
    return f"{row[k]:.2f} ± {std:.2f}" if std is not None else f"{row[k]:.2f}"


def render_markdown(meta: dict[str, Any], sections: list[tuple[Experiment, list[dict[str, Any]]]]) -> str:
    out = io.StringIO()
    w = out.write
    w(f"# {meta['suite']} reproduction, preset `{meta['preset']}`\n\n")
    w(f"Command: `{meta['command']}`  \nMachine: {meta['machine']}  \nFinished: {meta['finished_utc']}  \n")
    w(f"Preset: {meta['preset_description']}\n\n")
    w("Each cell is mean ± std over seeds 0..n-1. Time is a ratio to retraining of the same model, forget set "
      "and seed (absolute seconds depend on the machine; the reference's ratio is its method time over its "
      "retraining time). A flag marks a difference from the reference's single run larger than max(2 std, 2 "
      "points).\n")
    for exp, rows in sections:
        w(f"\n## {exp.title}\n\n")
        if exp.spec.get("description"):
            w(exp.spec["description"].strip() + "\n\n")
        if exp.spec.get("reference_source"):
            w(f"Reference numbers: {exp.spec['reference_source']}\n\n")
        w("| model | forget | method | RA | FA | TA | MIA | time / retrain | ref RA | ref FA | ref MIA | ref time / R | flags |\n")
        w("|---|---|---|---|---|---|---|---|---|---|---|---|---|\n")
        for r in rows:
            ref = lambda k: f"{r[k]:.2f}" if k in r else ""
            w(f"| {r['model']} | {r['forget']} | {r['method']} | {_fmt(r, 'retain_acc')} | {_fmt(r, 'forget_acc')} | "
              f"{_fmt(r, 'test_acc')} | {_fmt(r, 'mia')} | {_fmt(r, 'time_ratio')} | {ref('ref_retain_acc')} | "
              f"{ref('ref_forget_acc')} | {ref('ref_mia')} | {ref('ref_time_ratio')} | {r.get('flags', '')} |\n")
        noted = [r for r in rows if r.get("note")]
        for method in dict.fromkeys(r["method"] for r in noted):
            w(f"\n- `{method}`: {next(r['note'] for r in noted if r['method'] == method)}")
        if noted:
            w("\n")
    return out.getvalue()


def reproduce(suite: str, preset: str, out: str | Path, *, only: list[str] | None = None, data_dir: str | None = None,
              device: torch.device, seeds: int | None = None, command: str = "", log: Log = print) -> dict[str, Any]:
    p, exps = load_suite(suite, preset, only)
    n_seeds = int(seeds or p.get("seeds", 3))
    out = Path(out)
    ws = Workspace(p, out / "artefacts", device, data_dir, log)
    plan = [(exp, cell) for exp in exps for cell in KINDS.get(exp.spec.get("kind", "unlearn")).cells(exp, n_seeds)]
    done_before = 0
    results: dict[str, list[dict[str, Any]]] = {e.name: [] for e in exps}
    t0 = time.perf_counter()
    for i, (exp, cell) in enumerate(plan, 1):
        path = out / "cells" / exp.name / f"{cell.id}.json"
        if path.exists():
            rec = json.loads(path.read_text())
            done_before += 1
        else:
            log(f"[{i}/{len(plan)}] {exp.name}: {cell.id}")
            t = time.perf_counter()
            result = KINDS.get(exp.spec.get("kind", "unlearn")).run(cell, exp, ws)
            rec = {"experiment": exp.name, "key": cell.key, "seed": cell.seed, "result": result,
                   "cell_seconds": time.perf_counter() - t}
            path.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(path, force=True) as tmp:
                tmp.write_text(json.dumps(rec, indent=1, default=str))
        results[exp.name].append(rec)
    sections = [(e, KINDS.get(e.spec.get("kind", "unlearn")).rows(e, results[e.name])) for e in exps]
    dev_name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"
    meta = {"suite": suite, "preset": preset, "command": command, "machine": f"{platform.node()}: {dev_name}",
            "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()), "seeds": n_seeds,
            "preset_description": p.get("description", ""), "preset_settings": {k: v for k, v in p.items() if k != "description"},
            "cells": len(plan), "cells_read_back": done_before, "seconds_this_run": time.perf_counter() - t0}
    rows = [r for _, rs in sections for r in rs]
    with atomic_path(out / "report.md", force=True) as tmp:
        tmp.write_text(render_markdown(meta, sections))
    buf = io.StringIO()
    cols = list(dict.fromkeys(k for r in rows for k in r))
    writer = csv.DictWriter(buf, fieldnames=cols)
    writer.writeheader()
    writer.writerows(rows)
    with atomic_path(out / "report.csv", force=True) as tmp:
        tmp.write_text(buf.getvalue())
    with atomic_path(out / "report.json", force=True) as tmp:
        tmp.write_text(json.dumps({"meta": meta, "rows": rows, "cells": results}, indent=1, default=str))
    log(f"{len(plan)} cells ({done_before} read back, {len(plan) - done_before} run now); report: {out / 'report.md'}")
    return {"meta": meta, "rows": rows}
