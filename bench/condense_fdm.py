"""FDM condensation: our batched per-bucket optimisation against a faithful sequential per-bucket loop.

    .venv/bin/python bench/condense_fdm.py --checkpoint runs/cifar10-cnn/original.pt --data-dir data \
        [--clusters 450] [--steps 100] [--baseline-buckets 200] [--device cuda]

Both sides get the same K-means buckets, the same targets (each bucket's mean embedding under the frozen
model) and run the same Adam steps (lr 1e-3) from the same start (weights 1/n); the baseline is written here
independently of condense.methods.fdm, the way the reference does it: one bucket at a time, batch of one.
The baseline runs on a seeded random sample of --baseline-buckets buckets (0: all) and its full time is
extrapolated from the per-bucket mean (per-bucket work does not depend on the other buckets); the script says
so when it extrapolates. "Same result" is the largest pixel difference between the two on the sampled buckets.
Peak memory: the process's peak resident set (CPU) or torch's peak allocation (CUDA).
"""

from __future__ import annotations

import argparse
import resource
import time

import torch

from condense.buckets import kmeans_buckets
from condense.methods import CONDENSERS, CondenseJob
from condense.methods.fdm import bucket_targets
from dcforget.checkpoint import load_checkpoint, read_checkpoint_meta
from dcforget.datasets import load_data
from dcforget.runtime import resolve_device, synchronize
from dcforget.train import as_unit, embed


def sequential_fdm(model, images, members: torch.Tensor, target: torch.Tensor, steps: int, lr: float) -> torch.Tensor:
    """The reference's loop body for one bucket."""
    x = as_unit(images[members])
    w = torch.full((len(members),), 1.0 / len(members), device=x.device, requires_grad=True)
    opt = torch.optim.Adam([w], lr=lr)
    for _ in range(steps if len(members) > 1 else 0):  # a one-image bucket is its own optimum (as ours)
        s = (w[:, None, None, None] * x).sum(0, keepdim=True)
        loss = ((target[None] - model.features(s)) ** 2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return (w[:, None, None, None] * x).sum(0)


def peak_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--checkpoint", required=True)
    ap.add_argument("--data-dir", default=None)
    ap.add_argument("--clusters", type=int, default=450)
    ap.add_argument("--steps", type=int, default=100)
    ap.add_argument("--chunk", type=int, default=512)
    ap.add_argument("--baseline-buckets", type=int, default=200)
    ap.add_argument("--device", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bf16", action="store_true", help="bf16 autocast for ours (the baseline stays fp32)")
    args = ap.parse_args()
    dev = resolve_device(args.device)
    meta, _ = read_checkpoint_meta(args.checkpoint)
    data = load_data(meta.get("dataset_spec") or meta["dataset"], args.data_dir, meta.get("per_class"),
                     seed=meta.get("data_seed", 0)).to(dev)
    model = load_checkpoint(args.checkpoint, fingerprint=data.fingerprint()).model.to(dev).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else f"cpu, {torch.get_num_threads()} threads"
    print(f"device: {name}; {data.info.name}, {len(data.train)} training images, model {model.arch}, "
          f"K={args.clusters} buckets per class, {args.steps} Adam steps")
    t = time.perf_counter()
    feats = embed(model, data.train.images, device=dev)
    buckets = kmeans_buckets(feats, data.train.labels, data.info.num_classes, args.clusters, seed=args.seed, quiet=True)
    synchronize(dev)
    print(f"embeddings + k-means: {time.perf_counter() - t:.1f} s; {len(buckets)} buckets, sizes "
          f"{int(buckets.sizes.min())}..{int(buckets.sizes.max())} (median {float(buckets.sizes.float().median()):.0f})")
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)
    job = CondenseJob(images=data.train.images, labels=data.train.labels, info=data.info, device=dev, seed=args.seed,
                      options={**CONDENSERS.get("fdm").defaults, "steps": args.steps, "chunk": args.chunk, "bf16": args.bf16}, model=model,
                      features=feats, buckets=buckets, quiet=True)
    t = time.perf_counter()
    ours = CONDENSERS.get("fdm").run(job).images
    synchronize(dev)
    t_ours = time.perf_counter() - t
    mem = peak_mb(dev)
    targets = bucket_targets(feats, buckets)
    n = len(buckets)
    sample = torch.randperm(n, generator=torch.Generator().manual_seed(args.seed))
    sample = sample[: args.baseline_buckets] if args.baseline_buckets else sample
    t = time.perf_counter()
    seq = []
    for j in sample.tolist():
        members = buckets.indices[buckets.indptr[j]:buckets.indptr[j + 1]].to(dev)
        seq.append(sequential_fdm(model, data.train.images, members, targets[j], args.steps, 1e-3))
    synchronize(dev)
    t_seq_sample = time.perf_counter() - t
    seq_t = torch.stack(seq)
    diff = (seq_t - ours[sample]).abs()
    with torch.no_grad():
        loss = lambda imgs: ((model.features(imgs) - targets[sample]) ** 2).sum(1)
        l_ours, l_seq = loss(ours[sample]), loss(seq_t)
        start = torch.zeros_like(ours[sample])
        for r, j in enumerate(sample.tolist()):
            start[r] = as_unit(data.train.images[buckets.indices[buckets.indptr[j]:buckets.indptr[j + 1]].to(dev)]).mean(0)
        l_start = loss(start)
    t_seq = t_seq_sample / len(sample) * n
    how = "measured" if len(sample) == n else f"extrapolated from {len(sample)} sampled buckets ({t_seq_sample:.1f} s)"
    print(f"ours (batched, all {n} buckets):  {t_ours:8.1f} s   peak memory {mem:,.0f} MB")
    print(f"sequential per-bucket loop:      {t_seq:8.1f} s   ({how})")
    print(f"speed-up: {t_seq / t_ours:.1f}x")
    print(f"same result on {len(sample)} buckets: |pixel difference| mean {float(diff.mean()):.2e}, max {float(diff.max()):.2e}; "
          f"FDM loss (sum) ours {float(l_ours.sum()):.4g} vs sequential {float(l_seq.sum()):.4g} "
          f"(start, the plain bucket mean: {float(l_start.sum()):.4g})")


if __name__ == "__main__":
    main()
