"""Why does `dcu-reference` in reference mode collapse on the CNN at the cpu preset (random 10%)? Each row switches
one reference behaviour back, the rest stays DC-U's mode; same artefacts (original, offline phase with test-split
remembrance, normalised-blend FDM file) as experiment 1's reference-mode row, read from reports/dcu-cpu/artefacts.

    .venv/bin/python reports/dcu-cpu-ablation/run.py [--seeds 0]

Writes reports/dcu-cpu-ablation/results.json (command, git hash, machine, seeds, per-row RA/FA/VA/TA/MIA)."""
import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from dcforget.io import atomic_path  # noqa: E402
from dcforget.provenance import run_meta  # noqa: E402
from dcforget.runtime import resolve_device, resolve_bf16  # noqa: E402
from experiments.runner import Experiment, Workspace, load_suite  # noqa: E402
from experiments.kinds.unlearn_grid import method_options, variant_artefact_options  # noqa: E402
from unlearn.request import unlearn_request  # noqa: E402

ROWS = {
    "reference mode": {},
    # reference mode with one quirk off: the quirks turned on one by one (reference_quirks=true beside an explicit
    # QUIRK=false is refused since 4f6423b; results.json's rows of these two, from e0a1148, equal reference mode)
    "bn_train_mode=false (frozen batch norm in eval mode)": {"reference_quirks": False, "settings": "auto",
                                                             "shared_adam": True, "syn_batch_mean": True},
    "shared_adam=false (a fresh Adam per stage)": {"reference_quirks": False, "settings": "auto",
                                                   "bn_train_mode": True, "syn_batch_mean": True},
    "lr_overture=1e-3 (Beginning stage; CNN setting 3e-3)": {"lr_overture": 1e-3},
    "lr_intermediate=1e-4 (Intermediate stage; CNN setting 3e-3)": {"lr_intermediate": 1e-4},
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", default="0")
    ap.add_argument("--data-dir", default="data")
    args = ap.parse_args()
    dev = resolve_device("cpu")
    p, exps = load_suite("dcu", "cpu", ["random-forgetting"])
    p, _ = resolve_bf16(p, dev)
    exp = Experiment(exps[0].name, resolve_bf16(exps[0].spec, dev)[0])
    ws = Workspace(p, ROOT / "reports" / "dcu-cpu" / "artefacts", dev, args.data_dir, print).for_experiment(exp)
    variant = exp.spec["variants"]["dcu-reference"]
    off_extra = variant_artefact_options(variant, "offline", "cnn")
    start, artefacts = ws.offline("cnn", None, variant["remembrance"], off_extra)
    condensed = ws.condensed("cnn", offline=True, source=variant["remembrance"], offline_extra=off_extra,
                             extra=variant_artefact_options(variant, "condense", "cnn"))
    base = method_options(exp, p, "dcu-reference", "cnn")
    rows = []
    for seed in [int(s) for s in args.seeds.split(",")]:
        for label, change in ROWS.items():
            res = unlearn_request(start, ws.data(), "random:0.1", "dcu-reference", device=dev, seed=seed, quiet=True,
                                  options={**base, **change}, condensed=condensed, artefacts=artefacts)
            r = res.report
            row = {"row": label, "seed": seed, "options": r["options"],
                   **{k: r.get(k) for k in ("retain_acc", "forget_acc", "val_acc", "test_acc", "mia")},
                   "reduced_set": (r["reduced_set"] or {}).get("reduced_size"), "seconds": r["time"]["total_s"]}
            rows.append(row)
            print(f"{label:55s} s{seed} RA {100 * row['retain_acc']:.1f} FA {100 * row['forget_acc']:.1f} "
                  f"VA {100 * row['val_acc']:.1f} TA {100 * row['test_acc']:.1f} MIA {100 * row['mia']:.1f}", flush=True)
    out = Path(__file__).with_name("results.json")
    with atomic_path(out, force=True) as tmp:
        tmp.write_text(json.dumps({"meta": run_meta(dev, seeds=args.seeds), "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
