"""Unlearning benchmark: each method's RA / FA / TA / MIA and request time next to retraining's, over seeds.

    .venv/bin/python bench/unlearn_bench.py --preset cpu --data-dir data [--seeds 3] [--methods condensed,finetune]
    .venv/bin/python bench/unlearn_bench.py --preset paper --data-dir data --device cuda

Presets (CIFAR-10, DC-U's CNN):
  cpu    1,000 training images per class, original 30 epochs (bf16), FDM K=100 per class (about 10 images per
         bucket, as DC-U's 450 of 4,500); sized for a 2-core machine
  paper  DC-U's settings: 4,500 per class, K=450, 30-epoch original, fp32
Offline work (original model, condensation) is done once, cached in --work, and reported separately.
For every seed and forget spec (random:0.1 and class:2), retraining runs first; every other method is
reported with |FA - FA_R|, |TA - TA_R|, |MIA - MIA_R| and its time as a fraction of retraining's.
For class forgetting TA is measured on the other classes (TA_other), as the bar asks.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from condense.build import build_condensed
from dcforget.checkpoint import load_checkpoint, save_checkpoint
from dcforget.condensed import read_condensed, write_condensed
from dcforget.datasets import load_data
from dcforget.runtime import resolve_device
from dcforget.train import TrainConfig, evaluate
from dcforget.training import checkpoint_meta, train_on
from unlearn.methods import METHODS
from unlearn.request import unlearn_request

PRESETS = {
    "cpu": {"per_class": 1000, "clusters": 100, "bf16": True, "epochs": 30},
    "paper": {"per_class": 4500, "clusters": 450, "bf16": False, "epochs": 30},
}


def offline(args, p, dev):
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    data = load_data(args.dataset, args.data_dir, p["per_class"], seed=0).to(dev)
    ck_path, cs_path = work / "original.pt", work / f"fdm-{p['clusters']}.h5"
    cfg = TrainConfig(epochs=p["epochs"], bf16=p["bf16"])
    if not ck_path.exists():
        t = time.perf_counter()
        tr = train_on(data, "cnn", cfg, seed=0, device=dev, quiet=True)
        save_checkpoint(ck_path, tr.model, checkpoint_meta(data, cfg, 0, tr))
        print(f"offline: original cnn trained in {time.perf_counter() - t:.0f} s, test acc {100 * tr.test_eval.accuracy:.2f}%", flush=True)
    model = load_checkpoint(ck_path, fingerprint=data.fingerprint()).model
    if not cs_path.exists():
        t = time.perf_counter()
        res = build_condensed(data, "fdm", model, device=dev, clusters=p["clusters"], quiet=True)
        write_condensed(cs_path, res.condensed)
        print(f"offline: fdm K={p['clusters']} condensed in {time.perf_counter() - t:.0f} s", flush=True)
    return data, model, read_condensed(cs_path)


def other_class_acc(model, data, cls, dev):
    keep = data.test.labels != cls
    return evaluate(model, data.test.images[keep], data.test.labels[keep], device=dev).accuracy


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
    args = ap.parse_args()
    p = dict(PRESETS[args.preset])
    p.update({k: v for k, v in {"per_class": args.per_class, "clusters": args.clusters, "epochs": args.epochs}.items()
              if v is not None})
    dev = resolve_device(args.device)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; preset {args.preset}: {p}", flush=True)
    data, model, cs = offline(args, p, dev)
    methods = ["retrain"] + [m for m in args.methods.split(",") if m and m != "retrain"]
    rows = []
    for spec in args.forget.split(","):
        for seed in range(args.seeds):
            ref = None
            for m in methods:
                opts = {"bf16": p["bf16"]} if "bf16" in METHODS.get(m).defaults else {}
                r = unlearn_request(model, data, spec, m, device=dev, seed=seed, options=opts, quiet=True,
                                    condensed=cs if m != "retrain" else None)
                rep = r.report
                if spec.startswith("class:"):
                    rep["test_acc_other"] = other_class_acc(r.model, data, int(spec.split(":")[1]), dev)
                ref = rep if m == "retrain" else ref
                rep["ratio_time"] = rep["time"]["total_s"] / ref["time"]["total_s"]
                rows.append(rep)
                print(f"{spec:11s} seed {seed} {m:12s} RA {100 * rep['retain_acc']:6.2f} FA {100 * rep['forget_acc']:6.2f} "
                      f"TA {100 * rep['test_acc']:6.2f} MIA {100 * rep['mia']:6.2f} time {rep['time']['total_s']:7.1f} s "
                      f"({rep['ratio_time']:.2f}x retrain)", flush=True)
    print("\nmean +- std over seeds (differences to retraining per seed, then averaged)")
    print("| forget | method | RA | FA | TA | MIA | |dFA| | |dTA| | |dMIA| | time / retrain |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for spec in args.forget.split(","):
        refs = {r["seed"]: r for r in rows if r["forget_spec"] == spec and r["method"] == "retrain"}
        ta_key = "test_acc_other" if spec.startswith("class:") else "test_acc"
        for m in methods:
            rs = [r for r in rows if r["forget_spec"] == spec and r["method"] == m]
            ms = lambda vals: f"{statistics.fmean(vals):.2f} ± {statistics.pstdev(vals):.2f}"
            col = lambda k: ms([100 * r[k] for r in rs])
            diff = lambda k: ms([100 * abs(r[k] - refs[r["seed"]][k]) for r in rs])
            print(f"| {spec} | {m} | {col('retain_acc')} | {col('forget_acc')} | {col(ta_key)} | {col('mia')} | "
                  f"{diff('forget_acc')} | {diff(ta_key)} | {diff('mia')} | {ms([r['ratio_time'] for r in rs])} |")
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=1, default=str))


if __name__ == "__main__":
    main()
