"""Markdown table of the tuned files of one preset/dataset-model folder (README's "Tuned" table).

    .venv/bin/python scripts/tuned-table.py configs/tuned/cpu/cifar10-mlp
"""
import json
import sys
from pathlib import Path


def fmt(v):
    return f"{v:.3g}" if isinstance(v, float) else str(v)


def main(folder: str) -> None:
    print("| method | forget | norm | \\|dRA\\|/3 | \\|dFA\\|/3 | \\|dVA\\|/3 | 1 - indisc. | chosen options | trials |")
    print("|---|---|---|---|---|---|---|---|---|")
    for f in sorted(Path(folder).glob("*.json"), key=lambda p: json.loads(p.read_text())["norm"]):
        d = json.loads(f.read_text())
        o = d["objectives"]
        searched = {k: v for k, v in d["options"].items() if k not in d.get("fixed", {})}
        opts = ", ".join(f"{k}={fmt(v)}" for k, v in sorted(searched.items()))
        trials = d["study"]["trials"]
        halves = " (halves)" if d["setup"].get("validation") == "halves" else ""  # VA and MIA on the selection half
        print(f"| `{d['method']}` | {d['setup']['forget']}{halves} | {d['norm']:.3f} | {o['retain_gap']:.3f} | "
              f"{o['forget_gap']:.3f} | {o['val_gap']:.3f} | {o['val_mia_distinguishability']:.3f} | {opts} | {trials} |")


if __name__ == "__main__":
    main(sys.argv[1])
