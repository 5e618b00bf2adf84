"""The ``throughput`` experiment kind: speed figures of this machine, each a ratio to a baseline timed in the same
cell .

- ``part = "models"``: training and inference images/s of each of ``models`` on CIFAR-shaped inputs (3x32x32, 10
  classes, batch ``batch_size``), float32 and bf16 autocast. A training step is what ``dcforget.train.fit`` does
  per batch (forward, backward, Adam); inference is eval mode under no_grad. Each figure is the median of
  ``repeats`` timings of ``steps`` steps after a warm-up, with device synchronisation.
- ``part = "fdm"``: FDM condensation batched over buckets (``condense.methods.fdm``) against the reference's
  sequential loop (one bucket at a time, batch of one; written here, independently of the condenser), on the
  preset's data with the original of ``model``: same K-means buckets, same targets, same Adam steps from the same
  start. The loop runs on ``baseline_buckets`` sampled buckets and its full time is extrapolated from the
  per-bucket mean (per-bucket work does not depend on the other buckets). "Same result": the largest pixel
  difference between the two on the sampled buckets."""

from __future__ import annotations

import statistics
import time
from typing import Any

import torch
import torch.nn.functional as F

from condense.buckets import kmeans_buckets
from condense.methods import CONDENSERS, CondenseJob
from condense.methods.fdm import bucket_targets
from dcforget.errors import ConfigError
from dcforget.models import MODELS, create_model
from dcforget.runtime import bf16_native, synchronize
from dcforget.train import as_unit, embed

from ..report import mean_std
from ..workspace import KINDS, Cell, Experiment, Kind, Workspace


def _cells(exp: Experiment, seeds: int) -> list[Cell]:
    part = exp.spec.get("part", "models")
    if part == "models":
        for m in exp.spec.get("models", []):
            MODELS.get(m)
        return [Cell(exp.name, {"model": m}, 0) for m in exp.spec.get("models", [])]
    if part == "fdm":
        return [
            Cell(exp.name, {"model": exp.spec.get("model", "cnn")}, s)
            for s in range(min(seeds, int(exp.spec.get("seeds", seeds))))
        ]
    raise ConfigError(f"experiment {exp.name}: part must be 'models' or 'fdm', got {part!r}")


def timed(fn, device: torch.device, repeats: int) -> float:
    fn()  # warm-up
    synchronize(device)
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        synchronize(device)
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def _models(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    s, dev = exp.spec, ws.device
    bs, steps, repeats = int(s.get("batch_size", 128)), int(s.get("steps", 2)), int(s.get("repeats", 3))
    torch.manual_seed(0)
    x, y = torch.rand(bs, 3, 32, 32, device=dev), torch.randint(0, 10, (bs,), device=dev)
    model = create_model(cell.key["model"], image_shape=(3, 32, 32), num_classes=10).to(dev)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    out: dict[str, Any] = {"params": sum(p.numel() for p in model.parameters()), "bf16_native": bf16_native(dev)}
    for mode in ("train", "infer"):
        for bf16 in (False, True):

            def step():
                for _ in range(steps):
                    if mode == "train":
                        model.train()
                        with torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                            loss = F.cross_entropy(model(x).float(), y)
                        opt.zero_grad(set_to_none=True)
                        loss.backward()
                        opt.step()
                    else:
                        model.eval()
                        with torch.no_grad(), torch.autocast(dev.type, dtype=torch.bfloat16, enabled=bf16):
                            model(x)

            out[f"{mode}_{'bf16' if bf16 else 'fp32'}"] = steps * bs / timed(step, dev, repeats)
        out[f"{mode}_bf16_over_fp32"] = out[f"{mode}_bf16"] / out[f"{mode}_fp32"]
    return out


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


def _fdm(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    s, dev, data = exp.spec, ws.device, ws.data()
    model = ws.original(cell.key["model"]).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    k, steps = int(s.get("clusters", ws.preset["clusters"])), int(s.get("steps", 100))
    feats = embed(model, data.train.images, device=dev)
    buckets = kmeans_buckets(feats, data.train.labels, data.info.num_classes, k, seed=cell.seed, quiet=True)
    job = CondenseJob(
        images=data.train.images,
        labels=data.train.labels,
        info=data.info,
        device=dev,
        seed=cell.seed,
        options={**CONDENSERS.get("fdm").defaults, "steps": steps, "bf16": False, "blend": "unconstrained"},
        model=model,
        features=feats,
        buckets=buckets,
        quiet=True,
    )
    t = time.perf_counter()
    ours = CONDENSERS.get("fdm").run(job).images
    synchronize(dev)
    t_ours = time.perf_counter() - t
    targets = bucket_targets(feats, buckets)
    n = len(buckets)
    sample = torch.randperm(n, generator=torch.Generator().manual_seed(cell.seed))[
        : int(s.get("baseline_buckets", 200)) or None
    ]  # 0: all
    t = time.perf_counter()
    seq = torch.stack(
        [
            sequential_fdm(
                model,
                data.train.images,
                buckets.indices[buckets.indptr[j] : buckets.indptr[j + 1]].to(dev),
                targets[j],
                steps,
                1e-3,
            )
            for j in sample.tolist()
        ]
    )
    synchronize(dev)
    t_seq = (time.perf_counter() - t) / len(sample) * n
    return {
        "buckets": n,
        "ours_s": t_ours,
        "loop_s": t_seq,
        "speedup": t_seq / t_ours,
        "sampled_buckets": len(sample),
        "max_pixel_diff": float((seq - ours[sample]).abs().max()),
    }


def _run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    return (_fdm if exp.spec.get("part", "models") == "fdm" else _models)(cell, exp, ws)


def _rows(exp: Experiment, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for key in dict.fromkeys(c["key"]["model"] for c in cells):
        got = [c["result"] for c in cells if c["key"]["model"] == key]
        row: dict[str, Any] = {"model": key, "method": exp.spec.get("part", "models"), "seeds": len(got)}
        for k, v in got[0].items():
            if isinstance(v, (int, float)) and not isinstance(v, bool):
                row[k], row[k + "_std"] = mean_std([float(g[k]) for g in got])
        rows.append(row)
    return rows


COLUMNS = (
    ("params", "parameters", ",.0f"),
    ("train_fp32", "train fp32 img/s", ".0f"),
    ("train_bf16", "train bf16 img/s", ".0f"),
    ("infer_fp32", "infer fp32 img/s", ".0f"),
    ("infer_bf16", "infer bf16 img/s", ".0f"),
    ("train_bf16_over_fp32", "train bf16/fp32", ".2f"),
    ("buckets", "buckets", ".0f"),
    ("ours_s", "batched s", ".1f"),
    ("loop_s", "loop s (extrapolated)", ".1f"),
    ("speedup", "speed-up", ".1f"),
    ("max_pixel_diff", "max pixel diff", ".1e"),
)

KINDS.register("throughput")(Kind(_cells, _run, _rows, COLUMNS))
