"""Many-model engine benchmark (issue #14): models per hour for the U-LiRA cpu preset's model, trained in a batch
(dcforget.batched.fit_many, torch.func) vs one at a time (dcforget.train.train_on), where the batched time goes
(torch.profiler), and the Ray executor's scheduling overhead per job.

    .venv/bin/python reports/many-models-cpu/run.py --data-dir data --out reports/many-models-cpu/results.json

Setup: the `attacks ulira --preset cpu` model and data: DC-U's MLP (3072-512-128-10), CIFAR-10 capped at 200
images per class (2,000; seed 0), each model on a random half (1,000 images), Adam 1e-3, batch 256, 30 epochs.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from dcforget.batched import fit_many  # noqa: E402
from dcforget.datasets import load_data  # noqa: E402
from dcforget.io import atomic_path  # noqa: E402
from dcforget.jobs import LocalExecutor, RayExecutor, run_jobs  # noqa: E402
from dcforget.provenance import run_meta  # noqa: E402
from dcforget.train import TrainConfig, train_on  # noqa: E402


def noop(spec, context):
    return {"i": spec["i"]}


def halves(n: int, m: int, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.stack([torch.randperm(n, generator=g)[: n // 2] for _ in range(m)])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--data-dir", default="data")
    ap.add_argument("--out", required=True)
    ap.add_argument("--one-by-one", type=int, default=4, help="models trained one at a time")
    ap.add_argument("--batch", type=int, nargs="+", default=[8, 16, 32], help="batch sizes (models) to time")
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--ray-jobs", type=int, default=64)
    args = ap.parse_args()
    dev = torch.device("cpu")
    data = load_data("cifar10", args.data_dir, 200, seed=0, val_fraction=0.0)
    cfg = TrainConfig(epochs=args.epochs, batch_size=256, optimizer="adam", lr=1e-3)
    n = len(data.train)
    rows = []
    subsets = halves(n, max(args.batch + [args.one_by_one]), seed=0)
    t0 = time.perf_counter()
    for m in range(args.one_by_one):
        train_on(data, "mlp", cfg, seed=m, device=dev, index=subsets[m], quiet=True)
    seq = time.perf_counter() - t0
    rows.append({"mode": "one at a time", "models": args.one_by_one, "seconds": seq,
                 "models_per_hour": 3600 * args.one_by_one / seq})
    for b in args.batch:
        t0 = time.perf_counter()
        fit_many("mlp", data, subsets[:b], list(range(b)), cfg, device=dev)
        sec = time.perf_counter() - t0
        rows.append({"mode": "batched", "models": b, "seconds": sec, "models_per_hour": 3600 * b / sec,
                     "ratio_vs_one_at_a_time": (3600 * b / sec) / rows[0]["models_per_hour"]})
    # where the batched time goes: one epoch of the largest batch, profiled
    from torch.profiler import ProfilerActivity, profile

    one_epoch = TrainConfig(epochs=1, batch_size=256, optimizer="adam", lr=1e-3)
    b = max(args.batch)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fit_many("mlp", data, subsets[:b], list(range(b)), one_epoch, device=dev)
    table = prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=12)
    total = sum(e.self_cpu_time_total for e in prof.key_averages())
    top = [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total, "calls": e.count}
           for e in sorted(prof.key_averages(), key=lambda e: -e.self_cpu_time_total)[:10]]
    # the same for one model alone
    with profile(activities=[ProfilerActivity.CPU]) as prof1:
        train_on(data, "mlp", one_epoch, seed=0, device=dev, index=subsets[0], quiet=True)
    total1 = sum(e.self_cpu_time_total for e in prof1.key_averages())
    top1 = [{"op": e.key, "self_cpu_share": e.self_cpu_time_total / total1, "calls": e.count}
            for e in sorted(prof1.key_averages(), key=lambda e: -e.self_cpu_time_total)[:10]]
    # Ray: scheduling seconds per job, trivial jobs, against the same jobs in process
    specs = [{"i": i} for i in range(args.ray_jobs)]
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        run_jobs(noop, specs, Path(tmp) / "local", executor=LocalExecutor())
        local_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ray_ex = RayExecutor(num_cpus=2)
        start_s = time.perf_counter() - t0
        run_jobs(noop, [{"i": -1}], Path(tmp) / "warm", executor=ray_ex)  # workers started
        t0 = time.perf_counter()
        run_jobs(noop, specs, Path(tmp) / "ray", executor=ray_ex)
        ray_s = time.perf_counter() - t0
        ray_ex.close()
    ray = {"jobs": args.ray_jobs, "local_in_process_s": local_s, "ray_s": ray_s, "ray_start_s": start_s,
           "overhead_per_job_s": (ray_s - local_s) / args.ray_jobs,
           "note": "trivial jobs (return at once) on a local Ray cluster of 2 CPUs, after one warm-up job; both "
                   "through run_jobs, so the store's writes are in both"}
    out = {"meta": run_meta(dev, seeds="models 0..M-1 (init and data order); halves drawn with seed 0"),
           "setup": {"model": "mlp", "dataset": "cifar10", "per_class": 200, "train_images_per_model": n // 2,
                     "train": cfg.to_dict()},
           "rows": rows, "profile_batched": {"models": b, "epochs": 1, "top_self_cpu": top, "table": table},
           "profile_one": {"epochs": 1, "top_self_cpu": top1}, "ray": ray}
    with atomic_path(args.out, force=True) as tmp:
        tmp.write_text(json.dumps(out, indent=1))
    for r in rows:
        print(r)
    print(json.dumps(ray, indent=1))


if __name__ == "__main__":
    main()
