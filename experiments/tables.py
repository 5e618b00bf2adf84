"""Markdown tables rendered from committed reports (``experiments report``), so that no figure in the README or the
docs is typed by hand: a leaderboard per experiment of a ``benchmark`` report, a one-line-per-experiment summary of
a benchmark, the tables of any other suite's report, and the table of a folder of tuned files.

Generated blocks in Markdown files sit between ``<!-- experiments report ARGS -->`` and ``<!-- end -->`` markers;
:func:`refresh_blocks` rewrites them from the reports, and the docs-tables test fails when one differs."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

from dcforget.errors import ConfigError
from dcforget.forget import ForgetSpec
from dcforget.provenance import command_line

from .report import other_runs


def _pm(r: dict[str, Any], k: str, scale: float = 1.0, f: str = ".1f") -> str:
    if k not in r:
        return ""
    s = r.get(k + "_std")
    if abs(r[k]) >= 1e4:  # a diverging method's distance
        f = ".2g"
    return f"{r[k] * scale:{f}} ± {s * scale:{f}}" if s is not None and r.get("seeds", 1) > 1 else f"{r[k] * scale:{f}}"


def leaderboard(rows: list[dict[str, Any]], exp: str) -> str:
    """One experiment of a benchmark report: the references, then the toolkit's ranking (degenerate models left
    out) with each rank's range under +-20% timing noise, then the degenerate methods (Deep Unlearn's rank of every
    method beside)."""
    mine = [r for r in rows if r.get("experiment") == exp]
    if not mine:
        raise ConfigError(f"the report has no leaderboard rows for experiment {exp!r}")
    refs = [r for r in mine if r["method"] in ("retrain", "none")]
    defaults = [r for r in mine if r.get("default")]  # the default as a user gets it: placed, never ranked
    ranked = sorted((r for r in mine if "avg_rank" in r), key=lambda r: r["avg_rank"])
    rest = sorted(
        (r for r in mine if r not in refs and r not in defaults and r not in ranked),
        key=lambda r: r.get("avg_rank_du", 1e9),
    )
    other = any("test_acc_other" in r for r in mine)  # whole-class tables: TA on the classes kept
    out = [
        "| # | method | RA | FA | TA |" + (" TA other |" if other else "") + " Indisc. | RetDev | RTE | L2 to R | "
        "avg rank | rank range (time ±20%) | DU rank (all) | degenerate | Pareto | options |",
        "|---|---|---|---|---|" + ("---|" if other else "") + "---|---|---|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(refs + defaults + ranked + rest):
        pos = "" if r in refs or r in defaults or r in rest else str(i + 1 - len(refs) - len(defaults))
        name = {"none": "original (reference)", "retrain": "retrain (reference)"}.get(r["method"], f"`{r['method']}`")
        rte = _pm(r, "rte", f=".2f") + (f" ({r['rte_withheld']} withheld)" if r.get("rte_withheld") else "")
        out.append(
            f"| {pos} | {name} | {_pm(r, 'retain_acc')} | {_pm(r, 'forget_acc')} | {_pm(r, 'test_acc')} | "
            + (f"{_pm(r, 'test_acc_other')} | " if other else "")
            + f"{_pm(r, 'indiscernibility', f='.3f')} | {_pm(r, 'retention_deviation', f='.3f')} | {rte} | "
            f"{_pm(r, 'l2_to_retrain', f='.1f')} | {_pm(r, 'avg_rank', f='.2f')} | "
            f"{r.get('avg_rank_range', '')} | {_pm(r, 'avg_rank_du', f='.2f')} | {r.get('degenerate', '')} | "
            f"{r.get('pareto', '')} | {r.get('tuned', '')} |"
        )
    return "\n".join(out) + "\n"


def _check_join(joined: dict[str, Any], report: dict[str, Any], table: str, ulira: str) -> None:
    """A U-LiRA report joins a policy table only where it attacks the table's setting: its dataset and model, and
    per-sample forgetting (U-LiRA forgets random samples of each split)."""
    setup = joined.get("setup") or {}
    rows = [r for r in report["rows"] if r.get("experiment") == table]
    models = {r.get("model") for r in rows} - {None}
    forgets = {r.get("forget") for r in rows} - {None}
    if models and models != {setup.get("arch")}:
        raise ConfigError(
            f"--ulira {ulira} attacks the {setup.get('arch')} model, the table {', '.join(sorted(models))}"
        )
    if any(ForgetSpec.parse(f).whole_classes for f in forgets):
        raise ConfigError(f"--ulira {ulira} forgets random samples; table {table!r} forgets whole classes")
    dataset = (report.get("meta") or {}).get("dataset") or next(
        (r.get("dataset") for r in rows if r.get("dataset")), None
    )
    if dataset and setup.get("dataset") and str(setup["dataset"]).split(":")[0] != str(dataset).split(":")[0]:
        raise ConfigError(f"--ulira {ulira} attacks on {setup['dataset']}, the table is on {dataset}")


def retain_sources(rows: list[dict[str, Any]], exp: str, ulira: dict[str, Any] | None = None) -> str:
    """A policy table of a benchmark report (its rows are a policy search's candidates, ``METHOD (full)`` and
    ``METHOD (reduced)``): the references, then each candidate by RetDev, with its retain source ("none read": a
    method that reads no retain set through the context -- ``condensed`` trains on its own reduced set,
    ``dcu-reference`` on its remembrance set, the zero-shot methods on none), RTE (same run),
    whether it is on the Pareto front of RetDev against RTE, and, from an `attacks ulira` report of some of them
    (``ulira``), their U-LiRA AUC with its interval beside retraining's."""
    mine = [r for r in rows if r.get("experiment") == exp]
    if not mine:
        raise ConfigError(f"the report has no leaderboard rows for experiment {exp!r}")
    refs = [r for r in mine if r["method"] in ("retrain", "none")]
    rest = sorted((r for r in mine if r not in refs), key=lambda r: r.get("retention_deviation", 1e9))
    attacks = (ulira or {}).get("attacks", {})
    unknown = sorted(set(attacks) - {r["method"] for r in rest} - {"original", "retrained"})
    if unknown:
        raise ConfigError(f"the U-LiRA report attacks {', '.join(unknown)}, which are not rows of {exp!r}")

    def auc(name: str) -> str:
        a = attacks.get(name)
        if a is None:
            return ""
        ci = a.get("auc_ci")
        return f"{a['auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")

    other = any("test_acc_other" in r for r in mine)
    head = "| method | retain | RA | FA | TA |" + (" TA other |" if other else "") + " MIA | RetDev | RTE | Pareto |"
    head += " U-LiRA AUC [95% CI] |" if ulira else ""
    cols = head.count("|") - 1
    out = [head, "|" + "---|" * cols]
    for r in refs + rest:
        name = {"none": "original (reference)", "retrain": "retrain (reference)"}.get(r["method"], f"`{r['method']}`")
        flag = r.get("pareto", "") + (f" (degenerate: {r['degenerate']})" if r.get("degenerate") else "")
        ref_auc = {"retrain": "retrained", "none": "original"}.get(r["method"], r["method"])
        out.append(
            f"| {name} | {'' if r in refs else r.get('retain_source') or 'none read'} | {_pm(r, 'retain_acc')} | "
            f"{_pm(r, 'forget_acc')} | {_pm(r, 'test_acc')} | "
            + (f"{_pm(r, 'test_acc_other')} | " if other else "")
            + f"{_pm(r, 'mia')} | {_pm(r, 'retention_deviation', f='.3f')} | {_pm(r, 'rte', f='.2f')} | {flag} |"
            + (f" {auc(ref_auc)} |" if ulira else "")
        )
    return "\n".join(out) + "\n"


# the rankings a benchmark's claims are checked on (experiments.report.deep_unlearn_claims), as the summary names them
RANKINGS = {"du": "Deep Unlearn's ranking", "toolkit": "the toolkit's (degenerate models left out)"}


def _claim_verdicts(claims: list[dict[str, Any]]) -> str:
    """Each claim once, with its verdict on each ranking it was checked on ("not confirmed (both rankings)" where
    they agree); a claim checked on more than one model names the model."""
    by_claim: dict[tuple[Any, str], list[tuple[str, str]]] = {}
    for c in claims:
        verdict = c.get("verdict") or ("confirmed" if c["confirmed"] else "not confirmed")
        by_claim.setdefault((c.get("model"), c["claim"]), []).append((c.get("ranking", "du"), verdict))
    several_models = len({model for model, _ in by_claim}) > 1
    out = []
    for (model, claim), verdicts in by_claim.items():
        named = f"{model}: {claim}" if several_models and model else claim
        if len(verdicts) > 1 and len({v for _, v in verdicts}) == 1:
            out.append(f"{named}: {verdicts[0][1]} ({'both rankings' if len(verdicts) == 2 else 'every ranking'})")
        else:
            out.append(f"{named}: " + ", ".join(f"{v} on {RANKINGS.get(r, r)}" for r, v in verdicts))
    return "; ".join(out)


def leaderboard_summary(report: dict[str, Any]) -> str:
    """One line per experiment of a benchmark report: methods ranked, degenerate ones, the top 5 by average rank,
    where Deep Unlearn's claims stand on each ranking, and (where the table has one) the default as a user gets it:
    what it ran and its place against the ranked rows' Pareto front of RetDev against RTE."""
    rows = report["rows"]
    claims_by_exp = report["meta"].get("claims", {})
    if not claims_by_exp:
        raise ConfigError("the report has no leaderboard experiments (no claims in its meta)")
    defaults: dict[str, list[dict[str, Any]]] = {}  # experiment -> its default rows, one per model
    for r in rows:
        if r.get("default"):
            defaults.setdefault(r["experiment"], []).append(r)
    out = [
        "| experiment | methods ranked | degenerate (not ranked) | top 5 (average rank) | Deep Unlearn's claims |"
        + (" the default: what it ran, Pareto |" if defaults else ""),
        "|---|---|---|---|---|" + ("---|" if defaults else ""),
    ]
    for exp, claims in claims_by_exp.items():
        ranked = sorted((r for r in rows if r["experiment"] == exp and "avg_rank" in r), key=lambda r: r["avg_rank"])
        top = ", ".join(f"`{r['method']}` {r['avg_rank']:.1f}" for r in ranked[:5])
        verdicts = _claim_verdicts(claims) or "none checkable (the table lacks the methods they name)"
        degenerate = sum("degenerate" in r for r in rows if r["experiment"] == exp and not r.get("default"))
        line = f"| {exp} | {len(ranked)} | {degenerate} | {top} | {verdicts} |"
        if defaults:
            line += (
                " "
                + "; ".join(
                    (f"{d['model']}: " if len(defaults[exp]) > 1 else "")  # the model, where the table has several
                    + f"{d.get('tuned', '')}: {d.get('pareto', 'not placed')}"
                    for d in defaults.get(exp, [])
                )
                + " |"
            )
        out.append(line)
    return "\n".join(out) + "\n"


def tuned_table(folder: Path) -> str:
    """The tuned files of one preset/dataset-model folder, sorted by their validation objective norm."""
    files = sorted(Path(folder).glob("*.json"))
    if not files:
        raise ConfigError(f"no tuned-options file in {folder}")
    docs = [json.loads(f.read_text()) for f in files]
    out = [
        "| method | forget | norm | \\|dRA\\|/3 | \\|dFA\\|/3 | \\|dVA\\|/3 | 1 - indisc. | chosen options | trials |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    fmt = lambda v: f"{v:.3g}" if isinstance(v, float) else str(v)  # noqa: E731
    for d in sorted(docs, key=lambda d: d["norm"]):
        o = d["objectives"]
        searched = {k: v for k, v in d["options"].items() if k not in d.get("fixed", {})}
        opts = ", ".join(f"{k}={fmt(v)}" for k, v in sorted(searched.items()))
        halves = " (halves)" if d["setup"].get("validation") == "halves" else ""  # VA and MIA on the selection half
        out.append(
            f"| `{d['method']}` | {d['setup']['forget']}{halves} | {d['norm']:.3f} | {o['retain_gap']:.3f} | "
            f"{o['forget_gap']:.3f} | {o['val_gap']:.3f} | {o['val_mia_distinguishability']:.3f} | {opts} | "
            f"{d['study']['trials']} |"
        )
    return "\n".join(out) + "\n"


def read_report(path: Path) -> dict[str, Any]:
    f = Path(path) / "report.json" if Path(path).is_dir() else Path(path)
    try:
        doc = json.loads(f.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"report {f} cannot be read: {err}") from None
    if isinstance(doc, dict) and isinstance(doc.get("meta"), dict) and isinstance(doc.get("attacks"), dict):
        return doc  # an `attacks ulira` report
    if not isinstance(doc, dict) or not isinstance(doc.get("meta"), dict) or not isinstance(doc.get("rows"), list):
        raise ConfigError(
            f"{f} is not a report `experiments reproduce` or `attacks ulira` wrote (needs meta and rows, or attacks)"
        )
    return doc


def ulira_table(report: dict[str, Any]) -> str:
    """An `attacks ulira` report: each model's attack AUC with its interval (the report's bootstrap), accuracy and
    TPR at low FPR, most distinguishable first."""
    b = report.get("bootstrap") or {}
    diagnosed = any(isinstance(a.get("diagnosis"), dict) for a in report["attacks"].values())
    out = [
        f"U-LiRA: {report.get('setup', {}).get('splits', '?')} splits; intervals: {b.get('interval', '95%')} "
        f"({b.get('replicates', '?')} draws over {b.get('over', 'targets')})."
        + (
            " Why a model is told apart: shift, the mean of its forget confidences in sd of the never-seen fit of "
            "the same example (> 0: under-forgotten); spread, its per-example sd over the never-seen one (1: "
            "scattered as retraining is); corr, how well its per-example means follow the never-seen ones."
            if diagnosed
            else ""
        )
        + "\n",
        "| model | AUC [95% CI] | accuracy | TPR at 1% FPR | TPR at 0.1% FPR |"
        + (" shift | spread | corr |" if diagnosed else ""),
        "|---|---|---|---|---|" + ("---|---|---|" if diagnosed else ""),
    ]
    rows = sorted(report["attacks"].items(), key=lambda kv: -kv[1]["auc"])
    for name, a in rows:
        ci = a.get("auc_ci")
        auc = f"{a['auc']:.3f}" + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")
        f = lambda k: f"{a[k]:.3f}" if isinstance(a.get(k), (int, float)) else ""  # noqa: E731
        row = f"| `{name}` | {auc} | {f('accuracy')} | {f('tpr_at_1pct_fpr')} | {f('tpr_at_0.1pct_fpr')} |"
        if diagnosed:
            d = a.get("diagnosis") or {}
            g = lambda k, spec: format(d[k], spec) if isinstance(d.get(k), (int, float)) else ""  # noqa: E731
            row += f" {g('shift', '+.2f')} | {g('spread', '.2f')} | {g('mean_correlation', '.2f')} |"
        out.append(row)
    return "\n".join(out) + "\n"


def _section(md_path: Path, title: str, shown: Path) -> str:
    """The body of the section headed ``## title`` of a report's Markdown (its description, table and figure), its
    figure links made relative to where the reader's page names the report (``shown``)."""
    text = md_path.read_text()
    head = f"\n## {title}\n"
    if head not in text:
        raise ConfigError(f"{md_path} has no section {title!r}")
    body = text.split(head, 1)[1].split("\n## ", 1)[0].strip("\n") + "\n"
    return body.replace("](figures/", f"]({Path(shown).as_posix()}/figures/")


def _prose_before(md_path: Path, table: str) -> str:
    """The text the report's own Markdown puts between the heading of the section holding ``table`` and the table
    (what the table shows: a targets table's targets and what its bold means), so a block carries it with the
    cells; "" when the report has no Markdown or its Markdown does not hold this table."""
    try:
        text = md_path.read_text()
    except OSError:
        return ""
    at = text.find(table.strip("\n"))
    start = text.rfind("\n## ", 0, at)
    if at < 0 or start < 0:
        return ""
    heading_and_prose = text[start + 1 : at].split("\n", 1)  # "## title", then the prose up to the table
    prose = heading_and_prose[1].strip("\n") if len(heading_and_prose) > 1 else ""
    return prose + "\n\n" if prose else ""


def source_line(report: dict[str, Any], path: Path, real: Path | None = None, file: str | None = None) -> str:
    """Where a generated table's figures come from: the report (its Markdown where it has one, else its JSON), its
    command and its commit. ``path``: the report folder as the reader's link names it; ``real``: where it is;
    ``file``: a report file of another name in that folder (an `attacks ulira --out NAME.json`), linked itself."""
    m = report["meta"]
    if file is not None and file != "report.json":
        shown = (Path(path) / file).as_posix()
        return (
            f"From [`{shown}`]({shown}): `{command_line(m.get('command', ''))}` at "
            f"{str(m.get('git', 'unknown'))[:12]}, finished {m.get('finished_utc', '?')}.\n"
        )
    page = "report.md" if (Path(real or path) / "report.md").is_file() else "report.json"
    seeds = m.get("seeds")
    seeds = f", {len(seeds) if isinstance(seeds, list) else seeds} seed(s)" if isinstance(seeds, (int, list)) else ""
    runs = other_runs(m)
    cells = ""
    if len(runs) > 1:
        cells = f" Its cells come from {len(runs)} runs, listed in the report."
    elif runs and runs[0].get("command"):  # a --report-only report
        cells = (
            f" Its cells were computed by `{runs[0]['command']}` at {str(runs[0]['git'])[:12]}, started "
            f"{runs[0].get('started_utc', '?')}."
        )
    return (
        f"From [`{Path(path).as_posix()}`]({Path(path).as_posix()}/{page}): `{command_line(m.get('command', ''))}` at "
        f"{str(m.get('git', 'unknown'))[:12]}{seeds}, finished {m.get('finished_utc', '?')}.{cells}\n"
    )


def render(
    path: str | Path,
    table: str | None = None,
    shown: str | None = None,
    ulira: str | None = None,
    ulira_shown: str | None = None,
) -> str:
    """The Markdown of ``experiments report PATH [--table T]``: a tuned folder's table; a benchmark report's summary
    (``table="summary"``) or one experiment's leaderboard (``table=EXPERIMENT``); with no ``table``, every table of
    the report (a benchmark's summary and each leaderboard; another suite's report.md tables). ``shown``: the path
    the source line names (default: ``path`` as given). ``ulira``: an `attacks ulira` report of some rows of a
    policy table (a leaderboard whose rows are a policy search's candidates), joined as a column; ``ulira_shown``:
    the path its source line names (default: ``ulira`` as given)."""
    p = Path(path)
    if ulira is not None and table is None:
        raise ConfigError("--ulira joins a U-LiRA report to one policy table: give --table too")
    if p.is_dir() and not (p / "report.json").exists() and any(p.glob("*.json")):
        if table is not None:
            raise ConfigError("--table applies to reports, not to a folder of tuned files")
        return tuned_table(p)
    report = read_report(p)
    folder = p if p.is_dir() else p.parent
    shown_folder = Path(shown) if shown is not None else folder
    if shown is not None and not p.is_dir():
        shown_folder = Path(shown).parent
    src = source_line(report, shown_folder, folder, None if p.is_dir() else p.name)
    if "attacks" in report and "rows" not in report:
        if table is not None:
            raise ConfigError("--table applies to experiment reports, not to an `attacks ulira` report")
        return src + "\n" + ulira_table(report)
    boards = list(report["meta"].get("claims", {}))
    if table == "summary":
        return src + "\n" + leaderboard_summary(report)
    columns = report["meta"].get("columns") or {}
    if table is not None and table not in boards and columns.get(table):  # a kind's own table, e.g. targets
        from .report import ROW_AXES, _kind_table

        rows = [r for r in report["rows"] if r.get("experiment") == table]
        axes = [a for a in ROW_AXES if any(a in r for r in rows)]
        body = _kind_table(rows, axes, [tuple(c) for c in columns[table]])
        md = p / "report.md" if p.is_dir() else p.with_name("report.md")
        return src + "\n" + _prose_before(md, body) + body
    if table is not None and table not in boards and table in columns:  # an unlearning table: the report's own
        from .runner import load_suite

        m = report["meta"]
        title = next(
            (e.spec.get("title", e.name) for e in load_suite(m["suite"], m["preset"])[1] if e.name == table), None
        )
        if title is None:
            raise ConfigError(f"suite {m['suite']!r} has no experiment {table!r} any more")
        md = p / "report.md" if p.is_dir() else p.with_name("report.md")
        return src + "\n" + _section(md, title, Path(shown) if shown is not None else folder)
    if table is not None:
        if table not in boards:
            raise ConfigError(f"no table {table!r} in the report (it has: {', '.join(columns) or 'none'})")
        if any(r.get("tuned") == "policy (validation)" for r in report["rows"] if r.get("experiment") == table):
            joined = read_report(Path(ulira)) if ulira is not None else None
            if joined is not None and "attacks" not in joined:
                raise ConfigError(f"--ulira {ulira} is not an `attacks ulira` report")
            extra = ""
            if joined is not None:
                _check_join(joined, report, table, ulira)
                extra = source_line(joined, Path(ulira_shown or ulira).parent, Path(ulira).parent, Path(ulira).name)
            return src + extra + "\n" + retain_sources(report["rows"], table, joined)
        if ulira is not None:
            raise ConfigError(f"--ulira joins a policy table; {table!r} is not one")
        return src + "\n" + leaderboard(report["rows"], table)
    if boards:
        return (
            src
            + "\n"
            + leaderboard_summary(report)
            + "".join(f"\n### {exp}\n\n" + leaderboard(report["rows"], exp) for exp in boards)
        )
    md = p / "report.md" if p.is_dir() else p.with_name("report.md")
    try:  # every other suite's tables are the report's own Markdown, written by the same run
        body = md.read_text().split("\n", 1)[1].lstrip("\n")
        return src + "\n" + body.replace("](figures/", f"]({Path(shown or folder).as_posix()}/figures/")
    except OSError as err:
        raise ConfigError(f"report Markdown {md} cannot be read: {err}") from None


BLOCK = re.compile(r"(<!-- experiments report (?P<args>[^>]*?) -->\n)(?P<body>.*?)(<!-- end -->)", re.S)


def refresh_blocks(text: str, root: Path) -> str:
    """``text`` with every generated block re-rendered from the reports under ``root``."""

    def one(m: re.Match) -> str:
        args = shlex.split(m.group("args"))
        path, table, ulira = args[0], None, None
        if len(args) in (3, 5) and args[1] == "--table":
            table = args[2]
            if len(args) == 5:
                if args[3] != "--ulira":
                    raise ConfigError(f"a generated block takes PATH [--table T [--ulira U]], got {m.group('args')!r}")
                ulira = args[4]
        elif len(args) != 1:
            raise ConfigError(f"a generated block takes PATH [--table T [--ulira U]], got {m.group('args')!r}")
        if ulira is None:
            return m.group(1) + render(root / path, table, shown=path) + m.group(4)
        return (
            m.group(1) + render(root / path, table, shown=path, ulira=str(root / ulira), ulira_shown=ulira) + m.group(4)
        )

    return BLOCK.sub(one, text)
