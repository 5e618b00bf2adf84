"""Unlearning benchmark: each method's RA / FA / TA / MIA and request time next to retraining's, over seeds.

    .venv/bin/python bench/unlearn_bench.py --preset cpu --data-dir data [--seeds 3] [--methods condensed,finetune]
    .venv/bin/python bench/unlearn_bench.py --preset paper --data-dir data --device cuda

Presets (CIFAR-10, DC-U's CNN):
  cpu    1,000 training images per class, original 30 epochs (bf16 where the hardware has it, float32 otherwise:
         emulated bf16 is 4-12x slower, reports/bench/throughput-cpu.json), FDM K=100 per class (about 10 images per
         bucket, as DC-U's 450 of 4,500); sized for a 2-core machine
  paper  DC-U's settings: 4,500 per class, K=450, 30-epoch original, fp32
Offline work (original model, condensation) is done once, cached in a folder of --work named by a digest of the
settings it is made from (so a changed preset or data split never reuses it), and reported separately.
--out writes {"meta": command, git hash, machine, seeds, settings; "rows": one report per request}.
dcu-reference starts from DC-U's offline phase (remembrance set: 10 held-out training images per class; cpu preset:
2 iterations of 20 Final + 5 Intermediate epochs instead of 10 x (20 + 20)) and its own FDM file condensed with
the offline model's features, both cached too; its time, like the reference's, counts the online request only.
For every seed and forget spec (random:0.1 and class:2), retraining runs first; every other method is
reported with |FA - FA_R|, |TA - TA_R|, |MIA - MIA_R| and its time as a fraction of retraining's.
For class forgetting TA is measured on the other classes (TA_other), as the bar asks.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
from pathlib import Path

import torch

from dcforget.datasets import load_data
from dcforget.datasets import DEFAULT_VAL_FRACTION
from dcforget.io import atomic_path
from dcforget.provenance import run_meta
from dcforget.runtime import bf16_native, resolve_device
from dcforget.train import TrainConfig, evaluate
from unlearn.artefacts import condensed_file, dcu_offline, original_model
from unlearn.methods import METHODS
from unlearn.request import unlearn_request

PRESETS = {
    "cpu": {"per_class": 1000, "clusters": 100, "bf16": "auto", "epochs": 30,
            "offline": {"iterations": 2, "intermediate_epochs": 5, "final_epochs": 20}},
    "paper": {"per_class": 4500, "clusters": 450, "bf16": False, "epochs": 30, "offline": {}},
}


def resolve(p: dict, dev: torch.device) -> dict:
    """The preset with ``bf16 = "auto"`` decided for this device."""
    return {**p, "bf16": bf16_native(dev) if p["bf16"] == "auto" else bool(p["bf16"])}


def work_dir(args, p) -> Path:
    """--work/<digest of what the offline artefacts are made from>."""
    made_from = {"dataset": args.dataset, "val_fraction": DEFAULT_VAL_FRACTION, **p}
    return Path(args.work) / hashlib.sha256(json.dumps(made_from, sort_keys=True).encode()).hexdigest()[:8]


def offline(args, p, dev):
    """The original CNN and its FDM file, cached in work_dir."""
    work = work_dir(args, p)
    data = load_data(args.dataset, args.data_dir, p["per_class"], seed=0).to(dev)
    log = lambda msg: print(f"offline: {msg}", flush=True)
    model = original_model(work / "original.pt", data, "cnn", TrainConfig(epochs=p["epochs"], bf16=p["bf16"]),
                           device=dev, log=log)
    cs = condensed_file(work / f"fdm-{p['clusters']}.h5", data, model, "fdm", clusters=p["clusters"], device=dev, log=log)
    return data, model, cs


def offline_dcu(args, p, data, model, dev):
    """DC-U's offline phase and a condensed file from the offline model (cached): (model, condensed, artefacts)."""
    work = work_dir(args, p)
    log = lambda msg: print(f"offline: {msg}", flush=True)
    off, tensors = dcu_offline(work / "offline.pt", data, model, {**p["offline"], "bf16": p["bf16"]},
                               data_dir=args.data_dir, device=dev, log=log)
    cs = condensed_file(work / f"fdm-offline-{p['clusters']}.h5", data, off, "fdm", clusters=p["clusters"], device=dev,
                        log=log)
    return off, cs, tensors


def other_class_acc(model, data, cls, dev):
    keep = data.test.labels != cls
    return evaluate(model, data.test.images[keep], data.test.labels[keep], device=dev).accuracy


def summarize(rows: list[dict], methods: list[str], specs: list[str]) -> None:
    print("\nmean +- std over seeds. |d|: per-seed difference to retraining of the same seed, averaged; |d mean|: "
          "difference of the means. The retrain row's |d| compares retraining with itself across seeds (every pair "
          "of seeds): the noise floor of a per-seed comparison.")
    print("| forget | method | RA | FA | TA | MIA | |d FA| | |d TA| | |d MIA| | |d mean| FA / TA / MIA | time / retrain |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for spec in specs:
        refs = {r["seed"]: r for r in rows if r["forget_spec"] == spec and r["method"] == "retrain"}
        ta_key = "test_acc_other" if spec.startswith("class:") else "test_acc"
        for m in methods:
            rs = [r for r in rows if r["forget_spec"] == spec and r["method"] == m]
            ms = lambda vals: (f"{statistics.fmean(vals):.2f} ± {statistics.stdev(vals):.2f}" if len(vals) > 1
                               else f"{vals[0]:.2f}")  # one seed: no spread
            col = lambda k: ms([100 * r[k] for r in rs])
            mean = lambda rr, k: statistics.fmean([100 * r[k] for r in rr])
            if m == "retrain":  # retraining against retraining with another seed
                pairs = [(a, b) for a in rs for b in rs if a["seed"] < b["seed"]]
                diff = lambda k: ms([100 * abs(a[k] - b[k]) for a, b in pairs]) if pairs else "-"
            else:
                diff = lambda k: ms([100 * abs(r[k] - refs[r["seed"]][k]) for r in rs])
            dmean = " / ".join(f"{abs(mean(rs, k) - mean(list(refs.values()), k)):.2f}"
                               for k in ("forget_acc", ta_key, "mia"))
            print(f"| {spec} | {m} | {col('retain_acc')} | {col('forget_acc')} | {col(ta_key)} | {col('mia')} | "
                  f"{diff('forget_acc')} | {diff(ta_key)} | {diff('mia')} | {dmean} | {ms([r['ratio_time'] for r in rs])} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--preset", choices=sorted(PRESETS), default="cpu")
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--work", default="runs/bench-unlearn")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--methods", default="condensed")
    ap.add_argument("--forget", default="random:0.1,class:2")
    ap.add_argument("--device", default=None)
    ap.add_argument("--dataset", default="cifar10", help="another dataset spec, e.g. for a smoke run")
    ap.add_argument("--per-class", type=int, default=None, help="override the preset's cap")
    ap.add_argument("--clusters", type=int, default=None, help="override the preset's K")
    ap.add_argument("--epochs", type=int, default=None, help="override the original's epochs")
    ap.add_argument("--out", default=None, help="write every report as JSON here")
    ap.add_argument("--summarize", default=None, help="only print the table of a JSON file an earlier --out wrote")
    args = ap.parse_args()
    if args.summarize:
        saved = json.loads(Path(args.summarize).read_text())
        rows = saved["rows"] if isinstance(saved, dict) else saved  # files from before the meta block: a bare list
        methods = list(dict.fromkeys(r["method"] for r in rows))
        return summarize(rows, methods, list(dict.fromkeys(r["forget_spec"] for r in rows)))
    p = dict(PRESETS[args.preset])
    p.update({k: v for k, v in {"per_class": args.per_class, "clusters": args.clusters, "epochs": args.epochs}.items()
              if v is not None})
    dev = resolve_device(args.device)
    p = resolve(p, dev)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; preset {args.preset}: {p}", flush=True)
    data, model, cs = offline(args, p, dev)
    methods = ["retrain"] + [m for m in args.methods.split(",") if m and m != "retrain"]
    dcu = offline_dcu(args, p, data, model, dev) if "dcu-reference" in methods else None
    rows = []
    for spec in args.forget.split(","):
        for seed in range(args.seeds):
            ref = None
            for m in methods:
                opts = {"bf16": p["bf16"]} if "bf16" in METHODS.get(m).defaults else {}
                start, cond, artefacts = (model, cs, None) if m != "dcu-reference" else dcu
                r = unlearn_request(start, data, spec, m, device=dev, seed=seed, options=opts, quiet=True,
                                    condensed=cond if METHODS.get(m).needs_condensed else None, artefacts=artefacts)
                rep = r.report
                if spec.startswith("class:"):
                    rep["test_acc_other"] = other_class_acc(r.model, data, int(spec.split(":")[1]), dev)
                ref = rep if m == "retrain" else ref
                rep["ratio_time"] = rep["time"]["total_s"] / ref["time"]["total_s"]
                rows.append(rep)
                print(f"{spec:11s} seed {seed} {m:12s} RA {100 * rep['retain_acc']:6.2f} FA {100 * rep['forget_acc']:6.2f} "
                      f"TA {100 * rep['test_acc']:6.2f} MIA {100 * rep['mia']:6.2f} time {rep['time']['total_s']:7.1f} s "
                      f"({rep['ratio_time']:.2f}x retrain)", flush=True)
    summarize(rows, methods, args.forget.split(","))
    if args.out:
        meta = run_meta(dev, seeds=list(range(args.seeds)), preset=args.preset, settings=p, forget=args.forget,
                        seed_varies="the forget set's draw and each method's randomness; the original and its FDM "
                                    "file are made once (seed 0) and shared")
        with atomic_path(args.out, force=True) as tmp:
            tmp.write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=str))


if __name__ == "__main__":
    main()
