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

ROW_AXES = (
    "part",
    "ipc",
    "clusters",
    "condenser",
    "classifier",
    "cycle",
)  # key fields a table shows between forget and method


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


def other_runs(meta: dict[str, Any]) -> list[dict[str, Any]]:
    """The runs a report's cells come from (``meta["runs"]``) where they are not just the report's own invocation
    (whose command the report names): several, or one at another commit (a ``--report-only`` report); else []."""
    runs = meta.get("runs") or []
    return runs if len(runs) > 1 or any(r.get("git") != meta.get("git") for r in runs) else []


def render_markdown(meta: dict[str, Any], sections: list[tuple[Experiment, list[dict[str, Any]]]]) -> str:
    out = io.StringIO()
    w = out.write
    w(f"# `{meta['suite']}` experiments, preset `{meta['preset']}`\n\n")
    w(
        f"Command: `{meta['command']}`  \nCode: {meta.get('git', 'unknown')}  \nMachine: {meta['machine']}  \n"
        f"Finished: {meta['finished_utc']}  \n"
    )
    w(f"Preset: {meta['preset_description']}\n\n")
    runs = other_runs(meta)
    if runs:
        n = f"{len(runs)} runs" if len(runs) > 1 else "one run"
        w(f"The cells come from {n} (every time ratio divides two times of one run):\n\n")
        for r in runs:
            where = (
                f"`{r['command']}` at {str(r.get('git'))[:12]}, {r.get('machine')}, started {r.get('started_utc')}"
                if r.get("command")
                else f"run {r['id'][:12]} (cells written before runs were recorded)"
            )
            w(f"- {where}: {r['cells']} cells ({', '.join(r['experiments'])})\n")
        w("\n")
    if meta.get("figures_note"):
        w(f"({meta['figures_note']})\n\n")
    if meta.get("cells_older_code"):
        w(
            f"**{len(meta['cells_older_code'])} cells were computed by an earlier version of the code** (same settings; "
            f"`--report-only` reports them as they are, a normal run recomputes them).\n\n"
        )
    if meta.get("cells_missing"):
        w(
            f"**Partial report**: {len(meta['cells_missing'])} of {meta['cells']} cells are not computed yet "
            f"(`--report-only`): {', '.join(meta['cells_missing'])}.\n\n"
        )
    if meta.get("cells_diverged"):
        w(
            f"**{len(meta['cells_diverged'])} cells diverged** (the method's weights became non-finite at these "
            "settings; a missing row, or a row with fewer seeds, shows where):\n\n"
            + "".join(f"- {d}\n" for d in meta["cells_diverged"])
            + "\n"
        )
    per_seed = [exp.name for exp, _ in sections if exp.spec.get("originals") == "per-seed"]
    own = (
        f"In {', '.join(per_seed)}, the original (initialisation and data order), its condensed file and DC-U's "
        "offline checkpoint are instead made per seed; the per-class cap and the validation split stay shared. "
        if per_seed
        else ""
    )
    w(
        f"Each cell is the mean ± sample standard deviation (n-1) over seeds 0..{meta['seeds'] - 1}. "
        f"{meta.get('seed_note') or SEED_NOTE} {own}"
        f"Data: {meta.get('data_note', '')} Time is a ratio to retraining of the same model, forget set and seed, "
        "measured in the same run; it counts the whole online request (reduced-set assembly and training) and "
        "excludes offline work (training the original, condensation, DC-U's offline phase). Absolute seconds depend "
        "on the machine; the reference's ratio is its method time over its retraining time. "
        f"{meta.get('bf16_note', '')} A flag marks a difference from the reference's single run larger than "
        "max(2 std, 2 points).\n"
    )
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
                w(LEADERBOARD_NOTE)
                w(claims_markdown(deep_unlearn_claims(rows)))
            continue
        val = [k for k, _ in VAL_COLUMNS if any(k in r for r in rows)]
        w(
            "| model | forget | "
            + "".join(f"{a} | " for a in axes)
            + "method | RA | FA | "
            + "".join(f"{dict(VAL_COLUMNS)[k]} | " for k in val)
            + "TA | MIA | time / retrain | "
            "ref RA | ref FA | ref MIA | ref time / R | flags | notes |\n"
        )
        w("|---" * (14 + len(axes) + len(val)) + "|\n")
        for r in rows:
            ref = lambda k: f"{r[k]:.2f}" if k in r else ""
            w(
                f"| {r['model']} | {r['forget']} | " + "".join(f"{r.get(a, '')} | " for a in axes) + f"{r['method']} | "
                f"{_fmt(r, 'retain_acc')} | {_fmt(r, 'forget_acc')} | "
                + "".join(f"{_fmt(r, k)} | " for k in val)
                + f"{_fmt(r, 'test_acc')} | {_fmt(r, 'mia')} | {_fmt(r, 'time_ratio')} | {ref('ref_retain_acc')} | "
                f"{ref('ref_forget_acc')} | {ref('ref_mia')} | {ref('ref_time_ratio')} | {r.get('flags', '')} | "
                f"{r.get('extra', '')} |\n"
            )
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
    out = [
        "| model | "
        + "".join(f"{a} | " for a in axes)
        + "method | "
        + "".join(f"{h} | " for _, h, _ in cols)
        + "notes |",
        "|---" * (3 + len(axes) + len(cols)) + "|",
    ]
    for r in rows:
        cell = lambda k, f: (
            ""
            if k not in r
            else (
                f"{r[k]:{f}} ± {r[k + '_std']:{f}}"
                if r.get(k + "_std") is not None and r.get("seeds", 1) > 1
                else f"{r[k]:{f}}"
            )
        )
        out.append(
            f"| {r.get('model', '')} | "
            + "".join(f"{r.get(a, '')} | " for a in axes)
            + f"{r['method']} | "
            + "".join(f"{cell(k, f)} | " for k, _, f in cols)
            + f"{r.get('extra', '')} |"
        )
    return "\n".join(out) + "\n"


LEADERBOARD_NOTE = (
    "\nRTE divides two times of one invocation on one machine (retraining is timed again in the run where its file "
    "came from an earlier one); a seed whose two times are not from one run gives no ratio (RTE withheld). avg rank: "
    "the toolkit's ranking, where a method with a degenerate cell (RA or TA at or below chance + 5 points, "
    "non-finite or exploded weights) is not ranked; rank range: its 2.5-97.5% range when every time is scaled by "
    "an independent factor in [0.8, 1.2] (500 draws); DU rank (all): Deep Unlearn's ranking of every method, "
    "degenerate ones included.\n"
)


DEEP_UNLEARN_18 = (
    "finetune",
    "gradient-ascent",
    "bad-teacher",
    "fisher",
    "neggrad-plus",
    "srl",
    "fcs",
    "msg",
    "cfw",
    "prmq",
    "ct",
    "kde",
    "rni",
    "salun",
    "scrub",
    "iu",
    "cf-k",
    "eu-k",
)


def _claim_checks(avg: dict[str, float], top: int) -> dict[str, bool]:
    """Deep Unlearn's claims on one set of average ranks (lower is better), among its 18 methods present."""
    ours = sorted((m for m in avg if m in DEEP_UNLEARN_18), key=lambda m: avg[m])
    out = {}
    if {"msg", "ct"} <= set(ours):
        out["msg-ct"] = ours.index("msg") < top and ours.index("ct") < top
    if {"neggrad-plus", "gradient-ascent", "srl"} <= set(ours):
        out["ng+"] = avg["neggrad-plus"] < avg["gradient-ascent"] and avg["neggrad-plus"] < avg["srl"]
    return out


DECIDED = 0.975  # a claim or a placement holds, or fails, in at least this share of the timing-noise draws
CLAIMS = {
    "msg-ct": "MSG and CT are the best methods (both in the top {top} of Deep Unlearn's 18 by average rank)",
    "ng+": "NG+ ranks above GA and SRL",
}


def deep_unlearn_claims(rows: list[dict[str, Any]], top: int = 3) -> list[dict[str, Any]]:
    """Deep Unlearn's qualitative claims (arXiv 2410.01276) checked on a leaderboard's rows, per model and per
    ranking (Deep Unlearn's, every method; the toolkit's, degenerate models left out): MSG and CT come out best
    (both among the ``top`` average ranks of Deep Unlearn's 18 methods), and NG+ ranks above GA and SRL. A claim
    is confirmed (or not) only where it holds (or fails) in at least 97.5% of the draws of timing noise that come
    with the rows (experiments/kinds/leaderboard_rows.py); otherwise it is within timing noise. A method missing
    from a ranking (degenerate) makes a claim about it false there."""
    out = []
    for model in dict.fromkeys(r["model"] for r in rows):
        table = [r for r in rows if r["model"] == model]
        first = next((r for r in table if "_rank_draws" in r), None)
        for ranking, key, draws_key, label in (
            ("du", "avg_rank_du", "_rank_draws_du", "Deep Unlearn's ranking"),
            ("toolkit", "avg_rank", "_rank_draws", "without degenerate models"),
        ):
            avg = {r["method"]: r[key] for r in table if key in r}
            every = {r["method"] for r in table}
            if not avg:
                continue
            point = _claim_checks(avg, top)
            draws = [_claim_checks({m: d[m] for m in avg if m in d}, top) for d in (first or {}).get(draws_key, [])]
            ours = sorted((m for m in avg if m in DEEP_UNLEARN_18), key=lambda m: avg[m])
            for claim in _claim_checks(dict.fromkeys(every, 0.0), top):  # the claims this table's methods allow
                share = statistics.fmean(d.get(claim, False) for d in draws) if draws else None
                held = point.get(claim, False)
                verdict = (
                    ("confirmed" if held else "not confirmed")
                    if share is None
                    else (
                        "confirmed"
                        if share >= DECIDED
                        else "not confirmed"
                        if share <= 1 - DECIDED
                        else "within timing noise"
                    )
                )
                names = ("msg", "ct") if claim == "msg-ct" else ("neggrad-plus", "gradient-ascent", "srl")
                where = "; ".join(
                    f"{m} {ours.index(m) + 1} of {len(ours)} (avg rank {avg[m]:.2f})"
                    if m in avg
                    else f"{m} not ranked (degenerate)"
                    for m in names
                )
                out.append(
                    {
                        "model": model,
                        "ranking": ranking,
                        "claim": CLAIMS[claim].format(top=top),
                        "confirmed": verdict == "confirmed",
                        "verdict": verdict,
                        "share_of_timing_draws": share,
                        "evidence": f"{label}: {where}; best: {', '.join(ours[:top])}"
                        + (f"; holds in {100 * share:.0f}% of timing draws" if share is not None else ""),
                    }
                )
    return out


def claims_markdown(claims: list[dict[str, Any]]) -> str:
    if not claims:
        return ""
    return "\nDeep Unlearn's claims on this table:\n\n" + "".join(
        f"- {c['model']}: {c['claim']}: **{c.get('verdict') or ('confirmed' if c['confirmed'] else 'not confirmed')}** "
        f"({c['evidence']})\n"
        for c in claims
    )


SEED_NOTE = (
    "A seed varies the forget set's draw (random and fractional specs) and the method's own randomness "
    "(initialisation, batch order, augmentation, noise); the original model, its condensed files and DC-U's "
    "offline checkpoint are made once (seed 0) and shared by every seed, and so are the per-class cap and "
    "the validation split."
)


VAL_COLUMNS = (("val_acc", "VA"), ("val_mia", "val MIA"), ("val_gap", "val gap to R"))
VAL_NOTE = (
    "VA is accuracy on the validation split; val MIA the population attack with validation images as "
    "non-members; val gap to R the distance to retraining of the same seed on RA, FA, VA and val MIA "
    "(points). Choices read only these columns and RA/FA; TA and MIA (test split) are reported, never "
    "optimised."
)


def write_report(
    out: Path,
    meta: dict[str, Any],
    sections: list[tuple["Experiment", list[dict[str, Any]]]],
    results: dict[str, list[dict[str, Any]]],
) -> list[dict[str, Any]]:
    """Draw the figures and write report.md, report.csv and report.json (each atomically); returns the rows."""
    rows = [{"experiment": exp.name, **r} for exp, rs in sections for r in rs]  # a kind may name it itself
    from . import figures

    meta["figures"] = {}
    for exp, rs in sections:
        png = out / "figures" / f"{exp.name}.png"
        if figures.draw(exp.spec.get("kind", "unlearn"), rs, png, exp.title):
            meta["figures"][exp.name] = f"figures/{exp.name}.png"
    meta["claims"] = {
        exp.name: deep_unlearn_claims(rs) for exp, rs in sections if exp.spec.get("kind") == "leaderboard"
    }
    meta["figures_note"] = (
        "" if figures.available() else "figures skipped: matplotlib is not installed (pip install 'dcforget[plots]')"
    )
    with atomic_path(out / "report.md", force=True) as tmp:
        tmp.write_text(render_markdown(meta, sections))
    rows = [{k: v for k, v in r.items() if not k.startswith("_")} for r in rows]  # working data of the rows
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
