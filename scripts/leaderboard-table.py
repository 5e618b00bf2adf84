"""Markdown leaderboard of one experiment of a `benchmark` report (README's leaderboard tables), sorted by average
rank, references first; and, with --summary, one line per experiment: the top 5 by average rank and where Deep
Unlearn's claims stand.

    .venv/bin/python scripts/leaderboard-table.py reports/benchmark-cpu 01-cifar10
    .venv/bin/python scripts/leaderboard-table.py reports/benchmark-cpu --summary
"""
import json
import sys
from pathlib import Path


def pm(r, k, scale=1.0, f=".1f"):
    if k not in r:
        return ""
    s = r.get(k + "_std")
    if abs(r[k]) >= 1e4:  # a diverging method's distance
        f = ".2g"
    return f"{r[k] * scale:{f}} ± {s * scale:{f}}" if s is not None and r.get("seeds", 1) > 1 else f"{r[k] * scale:{f}}"


def table(rows, exp):
    """References, then the toolkit's ranking (degenerate models left out) with each rank's range under +-20%
    timing noise, then the degenerate methods (Deep Unlearn's rank of every method beside)."""
    mine = [r for r in rows if r["experiment"] == exp]
    refs = [r for r in mine if r["method"] in ("retrain", "none")]
    ranked = sorted((r for r in mine if "avg_rank" in r), key=lambda r: r["avg_rank"])
    rest = sorted((r for r in mine if r not in refs and r not in ranked), key=lambda r: r.get("avg_rank_du", 1e9))
    other = any("test_acc_other" in r for r in mine)  # whole-class tables: TA on the classes kept
    print("| # | method | RA | FA | TA |" + (" TA other |" if other else "") + " Indisc. | RetDev | RTE | L2 to R | avg rank "
          "| rank range (time ±20%) | DU rank (all) | degenerate | options |")
    print("|---|---|---|---|---|" + ("---|" if other else "") + "---|---|---|---|---|---|---|---|---|")
    for i, r in enumerate(refs + ranked + rest):
        pos = "" if r in refs or r in rest else str(i + 1 - len(refs))
        name = {"none": "original (reference)", "retrain": "retrain (reference)"}.get(r["method"], f"`{r['method']}`")
        rte = pm(r, 'rte', f='.2f') + (f" ({r['rte_withheld']} withheld)" if r.get("rte_withheld") else "")
        print(f"| {pos} | {name} | {pm(r, 'retain_acc')} | {pm(r, 'forget_acc')} | {pm(r, 'test_acc')} | "
              + (f"{pm(r, 'test_acc_other')} | " if other else "") + f"{pm(r, 'indiscernibility', f='.3f')} | {pm(r, 'retention_deviation', f='.3f')} | "
              f"{rte} | {pm(r, 'l2_to_retrain', f='.1f')} | {pm(r, 'avg_rank', f='.2f')} | "
              f"{r.get('avg_rank_range', '')} | {pm(r, 'avg_rank_du', f='.2f')} | {r.get('degenerate', '')} | "
              f"{r.get('tuned', '')} |")


def summary(report):
    rows = report["rows"]
    for exp, claims in report["meta"].get("claims", {}).items():
        ranked = sorted((r for r in rows if r["experiment"] == exp and "avg_rank" in r), key=lambda r: r["avg_rank"])
        top = ", ".join(f"`{r['method']}` {r['avg_rank']:.1f}" for r in ranked[:5])
        verdicts = "; ".join(f"{c['claim']} ({c.get('ranking', 'du')}): {c.get('verdict') or ('confirmed' if c['confirmed'] else 'not confirmed')}"
                             for c in claims)
        degenerate = sum("degenerate" in r for r in rows if r["experiment"] == exp)
        print(f"| {exp} | {len(ranked)} | {degenerate} | {top} | {verdicts} |")


if __name__ == "__main__":
    rep = json.loads((Path(sys.argv[1]) / "report.json").read_text())
    if sys.argv[2] == "--summary":
        print("| experiment | methods ranked | degenerate (not ranked) | top 5 (average rank) | Deep Unlearn's claims |")
        print("|---|---|---|---|---|")
        summary(rep)
    else:
        table(rep["rows"], sys.argv[2])
