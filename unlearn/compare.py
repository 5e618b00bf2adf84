"""Several unlearning reports as one Markdown table (retrain first: it is the reference point)."""

from __future__ import annotations

import json
from pathlib import Path

from dcforget.errors import ConfigError


def load_report(path: str | Path) -> dict:
    p = Path(path)
    try:
        rep = json.loads(p.read_text())
        num = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
        assert isinstance(rep, dict) and isinstance(rep.get("method"), str) and isinstance(rep.get("forget_spec"), str)
        assert all(num(rep.get(k)) for k in ("retain_acc", "forget_acc", "test_acc"))
        assert num(rep.get("mia")) or rep.get("mia") is None  # None: a one-image request (no population MIA)
        assert isinstance(rep.get("time"), dict) and num(rep["time"].get("total_s"))
        red = rep.get("reduced_set")
        assert not red or (isinstance(red, dict) and num(red.get("ratio_to_retain")))
        return rep
    except (OSError, ValueError, AssertionError):
        raise ConfigError(f"{p} is not an unlearning report (report.json written by unlearn)") from None


def comparison_table(paths) -> str:
    reps = [load_report(p) for p in paths]
    reps.sort(key=lambda r: (r["method"] != "retrain", r["method"]))
    ref = next((r for r in reps if r["method"] == "retrain"), None)
    head = "| method | forget | RA | FA | TA | MIA | time (s) | x retrain time | reduced / retain |"
    rows = [head, "|" + "---|" * 9]
    for r in reps:
        ratio = f"{r['time']['total_s'] / ref['time']['total_s']:.2f}" if ref else "-"
        red = f"{r['reduced_set']['ratio_to_retain']:.2f}" if r.get("reduced_set") else "-"
        mia = "n/a" if r["mia"] is None else f"{100 * r['mia']:.2f}"
        rows.append(
            f"| {r['method']} | {r['forget_spec']} | {100 * r['retain_acc']:.2f} | {100 * r['forget_acc']:.2f} | "
            f"{100 * r['test_acc']:.2f} | {mia} | {r['time']['total_s']:.1f} | {ratio} | {red} |"
        )
    return "\n".join(rows)
