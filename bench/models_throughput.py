"""Training and inference throughput (images/s) of every registered model on the current device, fp32 and
bf16 autocast, CIFAR-shaped inputs (3x32x32, 10 classes).

    .venv/bin/python bench/models_throughput.py [--device cuda] [--batch-size 128] [--steps 2] [--models cnn,convnet]
        [--out reports/bench/throughput-cpu.json]

Training steps are what ``dcforget.train.fit``'s inner loop does per batch (forward, backward, Adam
update); inference runs in eval mode under no_grad. Each figure is the median of --repeats timings after
a warm-up, with device synchronisation.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
import torch.nn.functional as F

from dcforget.models import MODELS, create_model
from dcforget.io import atomic_path
from dcforget.provenance import run_meta
from dcforget.runtime import bf16_native, resolve_device, synchronize


def timed(fn, device, repeats: int) -> float:
    fn()  # warm-up
    synchronize(device)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        synchronize(device)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--device", default=None)
    ap.add_argument("--batch-size", type=int, default=128)
    ap.add_argument("--steps", type=int, default=2, help="training/inference steps per timing")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--models", default=",".join(MODELS.names()))
    ap.add_argument("--out", default=None, help="write the figures as JSON (with command, git hash, machine)")
    args = ap.parse_args()
    device = resolve_device(args.device)
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else f"cpu ({torch.get_num_threads()} threads)"
    print(f"device: {name}; batch {args.batch_size}; torch {torch.__version__}")
    print(f"{'model':10s} {'params':>10s} {'train fp32':>11s} {'train bf16':>11s} {'infer fp32':>11s} {'infer bf16':>11s}  (images/s)")
    bs = args.batch_size
    x = torch.rand(bs, 3, 32, 32, device=device)
    y = torch.randint(0, 10, (bs,), device=device)
    results = {}
    for arch in args.models.split(","):
        torch.manual_seed(0)
        model = create_model(arch, image_shape=(3, 32, 32), num_classes=10).to(device)
        opt = torch.optim.Adam(model.parameters(), lr=1e-3)
        row = []
        for mode in ("train", "infer"):
            for bf16 in (False, True):
                def step():
                    for _ in range(args.steps):
                        if mode == "train":
                            model.train()
                            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                                loss = F.cross_entropy(model(x).float(), y)
                            opt.zero_grad(set_to_none=True)
                            loss.backward()
                            opt.step()
                        else:
                            model.eval()
                            with torch.no_grad(), torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
                                model(x)
                row.append(args.steps * bs / timed(step, device, args.repeats))
        params = sum(p.numel() for p in model.parameters())
        print(f"{arch:10s} {params:10,d} " + " ".join(f"{v:11.0f}" for v in row), flush=True)
        results[arch] = {"params": params, "train_fp32": row[0], "train_bf16": row[1], "infer_fp32": row[2],
                         "infer_bf16": row[3], "train_bf16_over_fp32": row[1] / row[0],
                         "infer_bf16_over_fp32": row[3] / row[2]}
    if args.out:
        meta = run_meta(device, seeds=[0], batch_size=bs, steps=args.steps, repeats=args.repeats,
                        bf16_native=bf16_native(device), unit="images per second (median of the repeats)")
        with atomic_path(args.out, force=True) as tmp:
            tmp.write_text(json.dumps({"meta": meta, "models": results}, indent=1))


if __name__ == "__main__":
    main()
