"""The ``condensation`` experiment kind: each condenser at each images-per-class count, built from the preset's
training set with the features of an original ``embedder`` model, then scored by training a fresh ``evaluator``
on the condensed set alone: build seconds and TEST accuracy (DC-U's benchmark reported training-set accuracy under
a "Test Accuracy" label, docs/reference/dcu.md §2.3). Bucket-based condensers get K = ipc buckets per class. Every cell builds
anew with its seed, so build time is measured in every cell."""

from __future__ import annotations

import time
from typing import Any

from condense.build import build_condensed
from condense.evaluate import evaluate_condensed
from condense.methods import CONDENSERS

from ..report import lookup, mean_std
from ..workspace import KINDS, Cell, Experiment, Kind, Workspace


def _cells(exp: Experiment, seeds: int) -> list[Cell]:
    for m in exp.spec["condensers"]:
        CONDENSERS.get(m)
    return [
        Cell(exp.name, {"condenser": m, "ipc": ipc}, seed)
        for ipc in exp.spec["ipc"]
        for m in exp.spec["condensers"]
        for seed in range(seeds)
    ]


def _run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    s, (method, ipc) = exp.spec, (cell.key["condenser"], int(cell.key["ipc"]))
    data, embedder = ws.data(), ws.original(s.get("embedder", "mlp"))
    options = {**ws.preset.get("condense", {}).get(method, {}), **s.get("condense", {}).get(method, {})}
    bucket = CONDENSERS.get(method).bucket_based
    t = time.perf_counter()
    res = build_condensed(
        data,
        method,
        embedder,
        device=ws.device,
        seed=cell.seed,
        clusters=ipc if bucket else None,
        ipc=None if bucket else ipc,
        options=options,
        quiet=True,
    )
    seconds = time.perf_counter() - t
    ev = s.get("evaluate", {})
    acc = evaluate_condensed(
        res.condensed,
        data.test,
        s.get("evaluator", "mlp"),
        device=ws.device,
        seeds=1,
        first_seed=cell.seed,
        epochs=int(ev.get("epochs", 30)),
        dsa=bool(ev.get("dsa", False)),
        bf16=bool(ws.preset.get("bf16", False)),
        quiet=True,
    )
    return {"seconds": seconds, "test_acc": acc["test_accs"][0], "images": len(res.condensed)}


def _rows(exp: Experiment, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    for ipc in exp.spec["ipc"]:
        for m in exp.spec["condensers"]:
            got = [c["result"] for c in cells if c["key"] == {"condenser": m, "ipc": ipc}]
            if not got:
                continue
            row: dict[str, Any] = {
                "experiment": exp.name,
                "model": exp.spec.get("evaluator", "mlp"),
                "forget": "-",
                "ipc": ipc,
                "method": m,
                "seeds": len(got),
            }
            row["test_acc"], row["test_acc_std"] = mean_std([100 * r["test_acc"] for r in got])
            sec, sec_sd = mean_std([r["seconds"] for r in got])
            row["seconds"], row["seconds_std"] = sec, sec_sd
            row["extra"] = f"build {sec:.1f} ± {sec_sd:.1f} s"
            ref = lookup(exp.spec.get("reference", {}), [ipc, m])
            if isinstance(ref, list):  # [accuracy (on the TRAINING set, as the reference measured it), seconds]
                row["extra"] += f"; reference: {ref[0]:.2f}% train-set acc, {ref[1]:.1f} s"
            rows.append(row)
    return rows


KINDS.register("condensation")(Kind(_cells, _run, _rows))
