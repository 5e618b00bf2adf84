"""Collect runs/dcu-mlp/s*/ (runs/dcu-mlp/pipeline.sh, ablate.sh) into results.json and README.md here."""

import json
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
RUNS = ROOT / "runs" / "dcu-mlp"
OUT = Path(__file__).resolve().parent
SEEDS = [0, 1, 2]
DCU_HERE = {"retain_acc": 89.8, "forget_acc": 60.2, "mia": 56.3, "time_s": 80.0}  # DC-U's code, this machine
DCU_CSV = {"retain_acc": 89.50, "forget_acc": 60.70, "mia": 55.37, "time_s": 14.92}  # its committed CSV (GPU)
MAIN_BEFORE = {"retain_acc": 71.4, "forget_acc": 47.3, "test_acc": 43.8, "mia": 51.0, "time_s": 73.0}
KEYS = ["retain_acc", "forget_acc", "test_acc", "mia", "time_s"]
COMMANDS = [
    "OMP_NUM_THREADS=1 unlearn train cifar10 --model mlp --val-fraction 0 --epochs 30 --seed S --out runs/dcu-mlp/sS/original.pt",
    "OMP_NUM_THREADS=1 unlearn offline --checkpoint runs/dcu-mlp/sS/original.pt --remembrance-source test "
    "--option logit_relu=true --seed S --out runs/dcu-mlp/sS/offline.pt",
    "OMP_NUM_THREADS=1 condense build cifar10 --checkpoint runs/dcu-mlp/sS/offline.pt --clusters 450 "
    "--option blend=normalized --seed S --out runs/dcu-mlp/sS/fdm450.h5",
    "OMP_NUM_THREADS=1 unlearn --method dcu-reference --option reference_quirks=true --from-condensed "
    "runs/dcu-mlp/sS/fdm450.h5 --checkpoint runs/dcu-mlp/sS/offline.pt --forget random:0.1 --seed S "
    "--out runs/dcu-mlp/sS/unlearn-ref",
]
ABLATIONS = {
    "unlearn-cnnsettings": "stage settings = the CNN's (--option settings=none: lr 3e-3/3e-3, final 10 epochs, thr 25)",
    "unlearn-pixelblend": "FDM blend in pixel space (--option blend=unconstrained)",
    "unlearn-norelu": "no ReLU on the logits (offline without logit_relu)",
}


def row(report: dict) -> dict:
    r = {k: 100 * report[k] for k in ("retain_acc", "forget_acc", "test_acc", "mia")}
    r["time_s"] = report["time"]["training_s"]
    r["reduced_ratio"] = report["reduced_set"]["ratio_to_retain"]
    return r


def stage_times(seed: int) -> dict:
    """Seconds each stage reports in its own log (original training, offline phase, FDM build), plus accuracies."""
    import re

    d, out = RUNS / f"s{seed}", {}
    pats = {"train": (r"train acc ([\d.]+)%\s+test acc ([\d.]+)%.*?, ([\d.]+) s,", ("original_train_acc", "original_test_acc", "train_s")),
            "offline": (r"offline phase: ([\d.]+) s.*?test acc ([\d.]+)%", ("offline_s", "offline_test_acc")),
            "fdm": (r"training images in ([\d.]+) s", ("fdm_s",))}
    for log, (pat, names) in pats.items():
        f = d / f"{log}.log"
        m = re.search(pat, f.read_text()) if f.exists() else None
        if m:
            out.update({n: float(v) for n, v in zip(names, m.groups())})
    if seed == 0:
        out["train_note"] = "seed 0 trained with 2 threads, which thrashed against other jobs; seeds 1-2 with 1 thread"
    return out


def main() -> None:
    per_seed = {}
    for s in SEEDS:
        rep = RUNS / f"s{s}" / "unlearn-ref" / "report.json"
        if rep.exists():
            per_seed[s] = {**row(json.loads(rep.read_text())), "stages": stage_times(s)}
    stats = {}
    for k in KEYS + ["reduced_ratio"]:
        vals = [per_seed[s][k] for s in per_seed]
        stats[k] = {"mean": statistics.mean(vals), "std": statistics.stdev(vals) if len(vals) > 1 else None}
    ablations = {}
    for name, what in ABLATIONS.items():
        rep = RUNS / "s0" / name / "report.json"
        if rep.exists():
            ablations[name] = {"what": what, "seed": 0, **row(json.loads(rep.read_text()))}
    within = {k: abs(stats[k]["mean"] - DCU_HERE[k]) <= 3 for k in ("retain_acc", "forget_acc", "mia")}
    git = subprocess.run(["git", "rev-parse", "HEAD"], cwd=ROOT, capture_output=True, text=True).stdout.strip()
    uname = subprocess.run(["uname", "-a"], capture_output=True, text=True).stdout.strip()
    nproc = subprocess.run(["nproc"], capture_output=True, text=True).stdout.strip()
    result = {
        "what": "dcu-reference in reference mode vs DC-U's own MLP pipeline (CIFAR-10, 50,000 training images, "
                "MLP 30 epochs, offline phase, FDM K=450, random 10% forgetting)",
        "commands": COMMANDS, "git_hash": git, "git_dirty_note": "working tree had uncommitted edits of this task",
        "machine": {"uname": uname, "nproc": nproc, "python": sys.version.split()[0], "platform": platform.platform(),
                    "threads": "OMP_NUM_THREADS=1 (2 shared cores, other jobs running; 2 threads thrashed)"},
        "seeds": sorted(per_seed), "per_seed": per_seed, "mean_std": stats,
        "dcu_this_machine": DCU_HERE, "dcu_committed_csv": DCU_CSV, "before_this_change": MAIN_BEFORE,
        "within_3_points_of_dcu_this_machine": within, "ablations_seed0": ablations,
        "time_note": "time_s = the method's training time (DC-U's unlearning_time likewise excludes the reduced-set "
                     "assembly); measured on 1 CPU thread of a loaded 2-core machine, so not comparable to DC-U's 80 s",
    }
    (OUT / "results.json").write_text(json.dumps(result, indent=2) + "\n")
    fmt = lambda k: f"{stats[k]['mean']:.1f} ± {stats[k]['std']:.1f}" if stats[k]["std"] is not None else f"{stats[k]['mean']:.1f}"
    lines = ["# dcu-reference (reference mode) vs DC-U's own MLP pipeline", "",
             "CIFAR-10, all 50,000 training images, MLP 30 epochs (Adam 1e-3, batch 256), offline phase "
             "(remembrance = 10 test images/class, ReLU on the logits from here on), FDM K=450 blended in normalised "
             "space, `dcu-reference --option reference_quirks=true`, random 10%. Commands, machine, per-seed and "
             "stage times: `results.json` (made by `make_report.py` from `runs/dcu-mlp/`).", "",
             "| run | RA | FA | TA | MIA | time (s) |", "|---|---|---|---|---|---|"]
    for s in sorted(per_seed):
        r = per_seed[s]
        lines.append(f"| seed {s} | {r['retain_acc']:.1f} | {r['forget_acc']:.1f} | {r['test_acc']:.1f} | {r['mia']:.1f} | {r['time_s']:.0f} |")
    lines.append(f"| **mean ± std ({len(per_seed)} seeds)** | **{fmt('retain_acc')}** | **{fmt('forget_acc')}** | "
                 f"{fmt('test_acc')} | **{fmt('mia')}** | {fmt('time_s')} |")
    lines.append(f"| DC-U's code, this machine | {DCU_HERE['retain_acc']} | {DCU_HERE['forget_acc']} | – | {DCU_HERE['mia']} | {DCU_HERE['time_s']:.0f} |")
    lines.append(f"| DC-U's committed CSV | {DCU_CSV['retain_acc']} | {DCU_CSV['forget_acc']} | – | {DCU_CSV['mia']} | {DCU_CSV['time_s']} |")
    lines.append(f"| before this change (main, seed 0) | {MAIN_BEFORE['retain_acc']} | {MAIN_BEFORE['forget_acc']} | "
                 f"{MAIN_BEFORE['test_acc']} | {MAIN_BEFORE['mia']} | {MAIN_BEFORE['time_s']:.0f} |")
    if ablations:
        lines += ["", "Seed-0 ablations (one reference behaviour switched back, the rest reference):", "",
                  "| ablation | RA | FA | TA | MIA |", "|---|---|---|---|---|"]
        for name, a in ablations.items():
            lines.append(f"| {a['what']} | {a['retain_acc']:.1f} | {a['forget_acc']:.1f} | {a['test_acc']:.1f} | {a['mia']:.1f} |")
    ok = ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in within.items())
    lines += ["", f"Mean within 3 points of DC-U on this machine: {ok}. Times are the method's training time on one "
              "CPU thread of a loaded 2-core machine (two threads thrashed against other jobs), so they are not "
              "comparable with DC-U's 80 s. The differences found and their switches are listed in "
              "`unlearn/methods/dcu_reference.py`'s docstring."]
    (OUT / "README.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
