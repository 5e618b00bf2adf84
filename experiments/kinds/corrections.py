"""The ``corrections`` experiment kind: label poisoning fixed in closed form (Warnecke et al., NDSS 2023).

Per seed: a fraction ``flip`` of the training labels is flipped, each to another class drawn at random (the
poisoned data); an original ``model`` is trained on it (the preset's recipe, ``original_epochs``); the correction
request ``labels:FILE`` (the flipped positions with their true labels) is answered by

- ``first-order`` (θ − τG) for each τ of ``tau`` and ``second-order`` (θ − (H + dI)⁻¹G, CG) for each d of
  ``damping``, the setting with the best VALIDATION accuracy kept (the validation split is clean, held out of
  training; test figures are reported, never chosen on);
- their iterative variants (the reference's poisoning runs: ``steps`` steps, each on the training samples the
  current model mispredicts against their corrected labels; ``unlearn.influence.iterative_update``) for each τ of
  ``iterative_tau`` and each d of ``iterative_damping`` (CG of ``iterative_cg_iterations`` iterations on a Hessian of
  ``hessian_samples`` random training samples), chosen the same way; a row is absent when its grid is empty;
- ``retrain-corrected``: retraining from scratch on the corrected labels, same recipe and seed (the clean retrain).

Reported per method: TA, VA, accuracy on the flipped samples against their true labels ("fixed"), the time of the
request (the kept setting's run) and its ratio to the clean retrain's time measured in the same cell, and the whole
selection grid's time. "gap closed" = (TA − TA_poisoned) / (TA_clean − TA_poisoned), meaningful only where the
poisoning opened a gap larger than the seeds' spread.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from dcforget.datasets import Split
from dcforget.errors import DivergedError
from dcforget.runtime import seeded, synchronize
from dcforget.train import TrainConfig, build_model, evaluate, fit
from unlearn.request import unlearn_request

from ..figures import PLOTS
from ..report import mean_std
from ..workspace import KINDS, Cell, Experiment, Kind, Workspace


def _cells(exp: Experiment, seeds: int) -> list[Cell]:
    return [Cell(exp.name, {"flip": float(f)}, s) for f in exp.spec.get("flip", [0.01]) for s in range(seeds)]


def flip_labels(
    labels: torch.Tensor, fraction: float, num_classes: int, seed: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """(positions, poisoned labels): ``fraction`` of the positions, each label moved to another class, at random."""
    gen = torch.Generator().manual_seed(10_000 + seed)
    n = len(labels)
    idx = torch.sort(torch.randperm(n, generator=gen)[: max(1, round(fraction * n))]).values
    shift = torch.randint(1, num_classes, (len(idx),), generator=gen)
    poisoned = labels.clone()
    poisoned[idx] = (labels[idx] + shift) % num_classes
    return idx, poisoned


def _request(model, data, spec, method, ws, seed, options) -> dict[str, Any]:
    try:
        res = unlearn_request(model, data, spec, method, device=ws.device, seed=seed, options=options, quiet=True)
    except DivergedError as err:  # a solver that diverged at this setting: the grid point is out
        return {"options": options, "diverged": str(err)}
    r = res.report
    return {
        "options": options,
        "test_acc": r["test_acc"],
        "valid_acc": r["val_acc"],
        "fixed_acc": r["correction"]["corrected_acc"],
        "poison_acc": r["forget_acc"],
        "seconds": r["time"]["total_s"],
        "extra": {
            k: v for k, v in r["method_extra"].items() if k in ("solve", "update_norm", "gradient_norm", "iterative")
        },
    }


def _run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    s, seed, flip = exp.spec, cell.seed, float(cell.key["flip"])
    data = ws.data()
    arch = s.get("model", "cnn")
    epochs = int(s.get("epochs", ws.preset["original_epochs"]))
    bf16 = bool(ws.preset.get("bf16", False))
    labels = data.train.labels.cpu()
    idx, poisoned = flip_labels(labels, flip, data.info.num_classes, seed)
    pdata = replace(data, train=Split(data.train.images, poisoned.to(data.train.labels.device)), _fingerprint=None)
    cfg = TrainConfig(epochs=epochs, bf16=bf16)
    with seeded(seed):
        model = build_model(arch, pdata, seed).to(ws.device)
    synchronize(ws.device)
    t = time.perf_counter()
    fit(model, pdata.train.images, pdata.train.labels, cfg, device=ws.device, seed=seed, quiet=True)
    synchronize(ws.device)
    original_s = time.perf_counter() - t
    model.eval()
    fix = Path(ws.root) / "requests" / exp.name / f"flip{flip}-s{seed}.txt"
    fix.parent.mkdir(parents=True, exist_ok=True)
    fix.write_text("".join(f"{int(i)},{int(labels[i])}\n" for i in idx))
    spec = f"labels:{fix}"
    dev_idx = idx.to(data.train.labels.device)
    poisoned_row = {
        "test_acc": evaluate(model, data.test.images, data.test.labels, device=ws.device).accuracy,
        "valid_acc": evaluate(model, data.val.images, data.val.labels, device=ws.device).accuracy,
        "fixed_acc": evaluate(model, data.train.images[dev_idx], labels[idx], device=ws.device).accuracy,
        "seconds": original_s,
    }
    out: dict[str, Any] = {"flipped": len(idx), "train": len(labels), "poisoned": poisoned_row}
    retrain = _request(model, pdata, spec, "retrain-corrected", ws, seed, {"epochs": epochs, "bf16": bf16})
    out["retrain-corrected"] = retrain
    base = {"params": s.get("params", "head")}
    steps = {"iterative": True, "steps": int(s.get("steps", 10))}
    grids = {  # row name: (method, the settings chosen among on validation)
        "first-order": ("first-order", [{**base, "tau": float(v)} for v in s.get("tau", [1e-3])]),
        "first-order, iterative": (
            "first-order",
            [{**base, **steps, "tau": float(v)} for v in s.get("iterative_tau", [])],
        ),
        "second-order": (
            "second-order",
            [
                {**base, "damping": float(v), "iterations": int(s.get("cg_iterations", 30))}
                for v in s.get("damping", [10.0])
            ],
        ),
        "second-order, iterative": (
            "second-order",
            [
                {
                    **base,
                    **steps,
                    "damping": float(v),
                    "iterations": int(s.get("iterative_cg_iterations", 10)),
                    "hessian_samples": int(s.get("hessian_samples", 1024)),
                }
                for v in s.get("iterative_damping", [])
            ],
        ),
    }
    for row, (method, settings) in grids.items():
        if not settings:
            continue
        runs = [_request(model, pdata, spec, method, ws, seed, o) for o in settings]
        ok = [r for r in runs if "diverged" not in r]
        best = max(ok, key=lambda r: r["valid_acc"]) if ok else {"diverged": "every setting of the grid diverged"}
        out[row] = {
            **best,
            "grid": [
                {"options": r["options"], "valid_acc": r.get("valid_acc"), "diverged": r.get("diverged")} for r in runs
            ],
            "grid_seconds": sum(r.get("seconds", 0.0) for r in runs),
        }
    return out


METHODS = (
    "poisoned",
    "first-order",
    "first-order, iterative",
    "second-order",
    "second-order, iterative",
    "retrain-corrected",
)


def _rows(exp: Experiment, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for flip in dict.fromkeys(c["key"]["flip"] for c in cells):
        got = [c["result"] for c in cells if c["key"]["flip"] == flip]
        for m in METHODS:
            runs = [(g[m], g) for g in got if m in g and "diverged" not in g[m]]
            if not runs:
                continue
            row: dict[str, Any] = {
                "model": f"{exp.spec.get('model', 'cnn')}, {100 * flip:g}% flipped ({got[0]['flipped']} of {got[0]['train']})",
                "forget": f"{100 * flip:g}% flipped ({got[0]['flipped']} of {got[0]['train']})",
                "method": m,
                "seeds": len(runs),
            }
            for k in ("test_acc", "valid_acc", "fixed_acc"):
                row[k], row[k + "_std"] = mean_std([100 * r[k] for r, _ in runs])
            row["seconds"], row["seconds_std"] = mean_std([r["seconds"] for r, _ in runs])
            if m != "poisoned":
                row["time_ratio"], row["time_ratio_std"] = mean_std(
                    [r["seconds"] / g["retrain-corrected"]["seconds"] for r, g in runs]
                )
                gaps = [
                    (r["test_acc"] - g["poisoned"]["test_acc"])
                    / (g["retrain-corrected"]["test_acc"] - g["poisoned"]["test_acc"])
                    for r, g in runs
                    if abs(g["retrain-corrected"]["test_acc"] - g["poisoned"]["test_acc"]) > 1e-9
                ]
                if gaps:
                    row["gap_closed"], row["gap_closed_std"] = mean_std([100 * v for v in gaps])
            if "grid" in runs[0][0]:
                row["grid_seconds"], row["grid_seconds_std"] = mean_std([r["grid_seconds"] for r, _ in runs])
                chosen = [
                    ", ".join(f"{k}={v:g}" for k, v in r["options"].items() if k in ("tau", "damping")) for r, _ in runs
                ]
                diverged = sum(1 for r, _ in runs for p in r["grid"] if p.get("diverged"))
                row["extra"] = f"chosen on validation per seed: {'; '.join(chosen)}" + (
                    f"; {diverged} grid settings diverged (CG met negative curvature)" if diverged else ""
                )
            elif m == "poisoned":
                row["extra"] = "trained on the poisoned labels; seconds = its training"
            else:
                row["extra"] = "fresh model, corrected labels, same recipe and seed"
            rows.append(row)
    return rows


COLUMNS = (
    ("test_acc", "TA", ".2f"),
    ("valid_acc", "VA", ".2f"),
    ("fixed_acc", "flipped samples: true label", ".1f"),
    ("gap_closed", "gap closed %", ".0f"),
    ("seconds", "seconds", ".1f"),
    ("time_ratio", "time / clean retrain", ".3f"),
    ("grid_seconds", "selection grid s", ".1f"),
)


def _plot(rows: list[dict[str, Any]], path: Path, title: str) -> bool:
    """TA and the flipped samples' accuracy (true labels) per method, mean ± std over seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not rows:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.6))
    names = [r["method"] for r in rows]
    for ax, (k, label) in zip(axes, (("test_acc", "test accuracy %"), ("fixed_acc", "flipped samples, true label %"))):
        ax.bar(names, [r[k] for r in rows], yerr=[r.get(k + "_std") or 0 for r in rows], capsize=4, color="#4c72b0")
        lo = min(r[k] - (r.get(k + "_std") or 0) for r in rows)
        ax.set_ylim(max(0.0, lo - 3), min(100.0, max(r[k] + (r.get(k + "_std") or 0) for r in rows) + 2))
        ax.set_ylabel(label)
        ax.set_xticks(range(len(names)), [n.replace(", ", "\n") for n in names], fontsize=8)
    fig.suptitle(f"{title}\n{rows[0]['forget']}", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return True


PLOTS["corrections"] = _plot
KINDS.register("corrections")(Kind(_cells, _run, _rows, COLUMNS))
