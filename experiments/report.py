"""The report of a reproduction: mean +- sample std rows beside the reference's numbers, as markdown, CSV and
JSON, with figures. Nothing here computes a cell, so editing it never invalidates finished cells (it is outside
``runner.code_digest``)."""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dcforget.io import atomic_path

if TYPE_CHECKING:
    from .workspace import Experiment

ROW_AXES = ("part", "ipc", "clusters", "condenser", "classifier", "cycle")  # key fields a table shows between forget and method


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample std; where a value is not finite (a diverged model's distance) the std is NaN."""
    if not all(math.isfinite(v) for v in values):
        return statistics.fmean(values), math.nan
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



def _fmt(row: dict[str, Any], k: str) -> str:
    if k not in row:
        return ""
    std = row.get(k + "_std")
    one_seed = isinstance(row.get("seeds"), int) and row["seeds"] < 2  # no spread to show
    return f"{row[k]:.2f} ± {std:.2f}" if std is not None and not one_seed else f"{row[k]:.2f}"


def render_markdown(meta: dict[str, Any], sections: list[tuple[Experiment, list[dict[str, Any]]]]) -> str:
    out = io.StringIO()
    w = out.write
    w(f"# `{meta['suite']}` experiments, preset `{meta['preset']}`\n\n")
    w(f"Command: `{meta['command']}`  \nCode: {meta.get('git', 'unknown')}  \nMachine: {meta['machine']}  \n"
      f"Finished: {meta['finished_utc']}  \n")
    w(f"Preset: {meta['preset_description']}\n\n")
    if meta.get("figures_note"):
        w(f"({meta['figures_note']})\n\n")
    if meta.get("cells_older_code"):
        w(f"**{len(meta['cells_older_code'])} cells were computed by an earlier version of the code** (same settings; "
          f"`--report-only` reports them as they are, a normal run recomputes them).\n\n")
    if meta.get("cells_missing"):
        w(f"**Partial report**: {len(meta['cells_missing'])} of {meta['cells']} cells are not computed yet "
          f"(`--report-only`): {', '.join(meta['cells_missing'])}.\n\n")
    if meta.get("cells_diverged"):
        w(f"**{len(meta['cells_diverged'])} cells diverged** (the method's weights became non-finite at these "
          "settings; a missing row, or a row with fewer seeds, shows where):\n\n"
          + "".join(f"- {d}\n" for d in meta["cells_diverged"]) + "\n")
    w(f"Each cell is the mean ± sample standard deviation (n-1) over seeds 0..{meta['seeds'] - 1}. "
      f"{meta.get('seed_note') or SEED_NOTE} "
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
        if meta.get("columns", {}).get(exp.name):
            w(_kind_table(rows, axes, meta["columns"][exp.name]))
            if exp.name in meta.get("figures", {}):
                w(f"\n![{exp.name}]({meta['figures'][exp.name]})\n")
            if exp.spec.get("kind") == "leaderboard":
                w(claims_markdown(deep_unlearn_claims(rows)))
            continue
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


def _kind_table(rows: list[dict[str, Any]], axes: list[str], columns) -> str:
    """A kind's own table: model, its axes, method, then the kind's (key, header, format) columns and notes."""
    cols = [c for c in columns if any(c[0] in r for r in rows)]
    out = ["| model | " + "".join(f"{a} | " for a in axes) + "method | " + "".join(f"{h} | " for _, h, _ in cols)
           + "notes |", "|---" * (3 + len(axes) + len(cols)) + "|"]
    for r in rows:
        cell = lambda k, f: "" if k not in r else (f"{r[k]:{f}} ± {r[k + '_std']:{f}}"
                                                     if r.get(k + "_std") is not None and r.get("seeds", 1) > 1
                                                     else f"{r[k]:{f}}")
        out.append(f"| {r.get('model', '')} | " + "".join(f"{r.get(a, '')} | " for a in axes) + f"{r['method']} | "
                   + "".join(f"{cell(k, f)} | " for k, _, f in cols) + f"{r.get('extra', '')} |")
    return "\n".join(out) + "\n"


DEEP_UNLEARN_18 = ("finetune", "gradient-ascent", "bad-teacher", "fisher", "neggrad-plus", "srl", "fcs", "msg", "cfw",
                   "prmq", "ct", "kde", "rni", "salun", "scrub", "iu", "cf-k", "eu-k")


def deep_unlearn_claims(rows: list[dict[str, Any]], top: int = 3) -> list[dict[str, Any]]:
    """Deep Unlearn's qualitative claims (arXiv 2410.01276) checked on a leaderboard's rows, per model: MSG and CT
    come out best (both among the ``top`` average ranks of Deep Unlearn's 18 methods), and NG+ ranks above GA and
    SRL. Each claim: confirmed or not, with the ranks that decide it (average rank over seeds; lower is better)."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        ranked = {r["method"]: r for r in rows if r["model"] == model and "avg_rank" in r}
        ours = sorted((m for m in ranked if m in DEEP_UNLEARN_18), key=lambda m: ranked[m]["avg_rank"])
        every = sorted(ranked, key=lambda m: ranked[m]["avg_rank"])
        if not ours:
            continue
        pos = {m: ours.index(m) + 1 for m in ours}
        where = lambda m: (f"{m} {pos[m]} of {len(ours)} (avg rank {ranked[m]['avg_rank']:.2f}; "
                           f"{every.index(m) + 1} of {len(every)} with the toolkit's other methods)")
        if {"msg", "ct"} <= set(pos):
            out.append({"model": model, "claim": f"MSG and CT are the best methods (both in the top {top} of "
                        "Deep Unlearn's 18 by average rank)",
                        "confirmed": pos["msg"] <= top and pos["ct"] <= top,
                        "evidence": f"{where('msg')}; {where('ct')}; best: {', '.join(ours[:top])}"})
        if {"neggrad-plus", "gradient-ascent", "srl"} <= set(pos):
            ng = ranked["neggrad-plus"]["avg_rank"]
            out.append({"model": model, "claim": "NG+ ranks above GA and SRL",
                        "confirmed": ng < ranked["gradient-ascent"]["avg_rank"] and ng < ranked["srl"]["avg_rank"],
                        "evidence": f"{where('neggrad-plus')}; {where('gradient-ascent')}; {where('srl')}"})
    return out


def claims_markdown(claims: list[dict[str, Any]]) -> str:
    if not claims:
        return ""
    return ("\nDeep Unlearn's claims on this table:\n\n"
            + "".join(f"- {c['model']}: {c['claim']}: **{'confirmed' if c['confirmed'] else 'not confirmed'}** "
                      f"({c['evidence']})\n" for c in claims))


SEED_NOTE = ("A seed varies the forget set's draw (random and fractional specs) and the method's own randomness "
             "(initialisation, batch order, augmentation, noise); the original model, its condensed files and DC-U's "
             "offline checkpoint are made once (seed 0) and shared by every seed, and so are the per-class cap and "
             "the validation split.")


VAL_COLUMNS = (("val_acc", "VA"), ("val_mia", "val MIA"), ("val_gap", "val gap to R"))
VAL_NOTE = ("VA is accuracy on the validation split; val MIA the population attack with validation images as "
            "non-members; val gap to R the distance to retraining of the same seed on RA, FA, VA and val MIA "
            "(points). Choices read only these columns and RA/FA; TA and MIA (test split) are reported, never "
            "optimised.")


def write_report(out: Path, meta: dict[str, Any], sections: list[tuple["Experiment", list[dict[str, Any]]]],
                 results: dict[str, list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """Draw the figures and write report.md, report.csv and report.json (each atomically); returns the rows."""
    rows = [r for _, rs in sections for r in rs]
    from . import figures

    meta["figures"] = {}
    for exp, rs in sections:
        png = out / "figures" / f"{exp.name}.png"
        if figures.draw(exp.spec.get("kind", "unlearn"), rs, png, exp.title):
            meta["figures"][exp.name] = f"figures/{exp.name}.png"
    meta["claims"] = {exp.name: deep_unlearn_claims(rs) for exp, rs in sections
                      if exp.spec.get("kind") == "leaderboard"}
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
    return rows


def append_section(out: Path, markdown: str) -> None:
    """Add a section at the end of ``out``/report.md (atomically), e.g. a picture a command draws after the run."""
    path = Path(out) / "report.md"
    text = path.read_text()
    with atomic_path(path, force=True) as tmp:
        tmp.write_text(text.rstrip("\n") + "\n\n" + markdown.strip("\n") + "\n")
