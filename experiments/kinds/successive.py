"""The ``successive`` experiment kind: a chain of unlearning requests, each forgetting another ``fraction`` of what
is left of the retain set, each applied to the previous request's model with the cumulative forget set (the
toolkit's successive-request semantics; DC-U restarted every cycle from its offline model and forgot only the
original set plus the newest chunk, docs/reference/dcu.md §6.6). One cell = one method and seed over all cycles."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dcforget.runtime import generator

from unlearn.methods import METHODS
from unlearn.request import unlearn_request
from ..report import add_reference, lookup, mean_std
from ..workspace import KINDS, Cell, Experiment, Kind, Workspace
from .unlearn_grid import METRICS, method_options


def _cells(exp: Experiment, seeds: int) -> list[Cell]:
    for m in exp.spec["methods"]:
        METHODS.get(m)
    return [Cell(exp.name, {"model": model, "method": m}, seed)
            for model in exp.spec["models"] for seed in range(seeds) for m in exp.spec["methods"]]


def _run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    arch, method = cell.key["model"], cell.key["method"]
    data = ws.data()
    n = len(data.train)
    fraction, cycles = float(exp.spec.get("fraction", 0.1)), int(exp.spec.get("cycles", 5))
    model, condensed, artefacts = ws.original(arch), None, None
    if method == "dcu-reference":
        model, artefacts = ws.offline(arch)
        condensed = ws.condensed(arch, offline=True)
    elif METHODS.get(method).needs_condensed:
        condensed = ws.condensed(arch)
    forgotten = torch.zeros(n, dtype=torch.bool)
    g = generator(cell.seed * 7919 + 1)
    out = []
    chunks = Path(ws.root) / "successive"
    chunks.mkdir(parents=True, exist_ok=True)
    for c in range(cycles):
        left = torch.nonzero(~forgotten).flatten()
        chunk = left[torch.randperm(len(left), generator=g)[: max(1, int(round(fraction * len(left))))]]
        path = chunks / f"seed{cell.seed}-cycle{c + 1}.txt"  # the same chunks for every method of a seed
        path.write_text("\n".join(map(str, sorted(chunk.tolist()))))
        res = unlearn_request(model, data, f"indices:{path}", method, device=ws.device, seed=cell.seed, quiet=True,
                              options=method_options(exp, ws.preset, method, arch), condensed=condensed,
                              previous_forget=torch.nonzero(forgotten).flatten().tolist(), artefacts=artefacts)
        forgotten[res.split.forget] = True
        model = res.model
        r = res.report
        out.append({**{k: r[k] for k in METRICS}, "seconds": r["time"]["total_s"], "forget_size": r["forget_size"]})
    return {"cycles": out}


def _rows(exp: Experiment, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    rows = []
    ref_tree = exp.spec.get("reference", {})
    for model in exp.spec["models"]:
        retrain = {c["seed"]: c["result"]["cycles"] for c in cells if c["key"] == {"model": model, "method": "retrain"}}
        for method in exp.spec["methods"]:
            got = [c for c in cells if c["key"] == {"model": model, "method": method}]
            if not got:
                continue
            for i in range(len(got[0]["result"]["cycles"])):
                row: dict[str, Any] = {"experiment": exp.name, "model": model, "forget": f"+{exp.spec.get('fraction', 0.1)}",
                                       "cycle": i + 1, "method": method, "seeds": len(got)}
                for k in METRICS:
                    row[k], row[k + "_std"] = mean_std([100 * c["result"]["cycles"][i][k] for c in got])
                ratios = [c["result"]["cycles"][i]["seconds"] / retrain[c["seed"]][i]["seconds"] for c in got
                          if c["seed"] in retrain]
                if ratios:
                    row["time_ratio"], row["time_ratio_std"] = mean_std(ratios)
                ref = lookup(ref_tree, [i + 1, method])
                if isinstance(ref, list):
                    add_reference(row, ref, lookup(ref_tree, [i + 1, "retrain"]), flag=exp.spec.get("flag", True))
                rows.append(row)
    return rows


KINDS.register("successive")(Kind(_cells, _run, _rows))
