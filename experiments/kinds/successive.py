"""The ``successive`` experiment kind: a chain of unlearning requests, each applied to the previous request's model
with the cumulative forget set (the toolkit's successive-request semantics; DC-U restarted every cycle from its
offline model and forgot only the original set plus the newest chunk, docs/reference/dcu.md §6.6). One cell = one
method (or variant) and seed over all cycles.

Each request forgets another ``fraction`` of what is left of the training set, or, with ``size``, that many images
(a stream of small erasure requests), drawn uniformly from what is still there; the draws depend on the seed only,
so every method of a seed forgets the same images, and they are written to ``OUT/streams/EXPERIMENT/`` (one index
file per seed and request, committed with the report). ``reference_at`` (default: every cycle) lists the requests
after which retraining without everything forgotten so far is the reference; retraining runs only there, in the
same run, so time ratios are same-run ratios. A variant with ``retain = "reduced"`` trains on the reduced set of the
experiment's condensed file (``unlearn --retain reduced``). Per request: RA, FA over everything forgotten so far,
TA, the population MIA, the reduced set's size (where there is one) and the time.

``originals``: ``"seed-0"`` (default, DC-U's reproduction: every cell starts from seed 0's original and its condensed
file) or ``"per-seed"`` (each seed's cells start from that seed's original, its offline phase and its condensed
file, as the benchmark does): retraining of a seed is then compared with methods started from the same seed's
original, not with seed 0's, whose own noise every method would otherwise inherit
(reports/original-ra-noise-paper)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from dcforget.errors import ConfigError
from dcforget.forget import ForgetSpec
from dcforget.runtime import generator
from unlearn.methods import METHODS
from unlearn.request import unlearn_request

from ..report import add_reference, lookup, mean_std
from ..workspace import KINDS, Cell, Experiment, Kind, Workspace
from .unlearn import (
    METRICS,
    default_request,
    follows_policy,
    method_options,
    original_setting,
    policy_inputs,
    resolve_method,
    variant_retain,
)


def _cells(exp: Experiment, seeds: int) -> list[Cell]:
    for m in exp.spec["methods"]:
        resolve_method(exp, m)  # a registered method or a variant
    plan(exp)
    return [
        Cell(exp.name, {"model": model, "method": m}, seed)
        for model in exp.spec["models"]
        for seed in range(seeds)
        for m in exp.spec["methods"]
    ]


def plan(exp: Experiment) -> tuple[int | None, float, int, list[int]]:
    """(images per request or None, fraction per request, number of requests, the requests retraining runs after)."""
    size = exp.spec.get("size")
    cycles = int(exp.spec.get("cycles", 5))
    at = [int(c) for c in exp.spec.get("reference_at", range(1, cycles + 1))]
    if size is not None and int(size) < 1 or cycles < 1 or any(not 1 <= c <= cycles for c in at):
        raise ConfigError(f"experiment {exp.name}: size must be >= 1, cycles >= 1 and reference_at within 1..{cycles}")
    return (None if size is None else int(size)), float(exp.spec.get("fraction", 0.1)), cycles, at


ORIGINALS = ("seed-0", "per-seed")


def originals_seed(exp: Experiment, seed: int) -> int:
    """The seed of the original a cell of ``seed`` starts from (the ``originals`` setting)."""
    how = exp.spec.get("originals", "seed-0")
    if how not in ORIGINALS:
        raise ConfigError(f"experiment {exp.name}: originals must be one of {', '.join(ORIGINALS)}, not {how!r}")
    return seed if how == "per-seed" else 0


def _run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    arch, label = cell.key["model"], cell.key["method"]
    method = resolve_method(exp, label)[0]
    retain = variant_retain(exp, label)
    data = ws.data()
    n = len(data.train)
    size, fraction, cycles, reference_at = plan(exp)
    start = originals_seed(exp, cell.seed)
    model, condensed, artefacts = ws.original(arch, start), None, None
    if method == "dcu-reference":
        model, artefacts = ws.offline(arch, seed=start)
        condensed = ws.condensed(arch, offline=True, seed=start)
    elif follows_policy(exp, label) or METHODS.get(method).needs_condensed or retain == "reduced":
        condensed = ws.condensed(arch, seed=start)
    here = original_setting(ws, arch, start) if follows_policy(exp, label) else None  # read once, asked per request
    forgotten = torch.zeros(n, dtype=torch.bool)
    g = generator(cell.seed * 7919 + 1)
    out: list[dict[str, Any] | None] = []
    chunks = Path(ws.root).parent / "streams" / exp.name
    chunks.mkdir(parents=True, exist_ok=True)
    for c in range(cycles):
        left = torch.nonzero(~forgotten).flatten()
        take = size if size is not None else max(1, int(round(fraction * len(left))))
        chunk = left[torch.randperm(len(left), generator=g)[:take]]
        path = chunks / f"seed{cell.seed}-request{c + 1}.txt"  # the same chunks for every method of a seed
        path.write_text("\n".join(map(str, sorted(chunk.tolist()))) + "\n")
        previous = torch.nonzero(forgotten).flatten().tolist()
        forgotten[chunk] = True
        if method == "retrain" and c + 1 not in reference_at:
            out.append(None)  # retraining is the reference only after the requests named in reference_at
            continue
        chosen, source, options, line, validation = method, retain, None, None, "whole"
        if here is not None:  # each request as `unlearn --from-condensed` answers it without --method
            chosen, source, options, line, validation, *_ = default_request(
                here, ForgetSpec.parse(f"indices:{path}"), previous
            )
        res = unlearn_request(
            model,
            data,
            f"indices:{path}",
            chosen,
            device=ws.device,
            seed=cell.seed,
            quiet=True,
            options=method_options(exp, ws.preset, label, arch) if options is None else options,
            condensed=condensed,
            previous_forget=previous,
            artefacts=artefacts,
            retain=source,
            validation=validation,
        )
        if method != "retrain":
            model = res.model
        r = res.report
        out.append(
            {
                **({"policy": line, "policy_method": chosen} if line is not None else {}),
                **{k: r[k] for k in METRICS},
                "seconds": r["time"]["total_s"],
                "forget_size": r["forget_size"],
                "request_size": int(len(chunk)),
                "retain_size": r["retain_size"],
                "reduced_size": (r["reduced_set"] or {}).get("reduced_size"),
                "retain_source": r.get("retain_source"),
            }
        )
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
            size = exp.spec.get("size")
            forget = f"+{size} images" if size is not None else f"+{exp.spec.get('fraction', 0.1)}"
            for i in range(len(got[0]["result"]["cycles"])):
                done = [c for c in got if c["result"]["cycles"][i] is not None]
                if not done:  # retraining between its reference points
                    continue
                row: dict[str, Any] = {
                    "experiment": exp.name,
                    "model": model,
                    "forget": forget,
                    "cycle": i + 1,
                    "method": method,
                    "seeds": len(done),
                }
                for k in METRICS:
                    row[k], row[k + "_std"] = mean_std([100 * c["result"]["cycles"][i][k] for c in done])
                ratios = [
                    c["result"]["cycles"][i]["seconds"] / retrain[c["seed"]][i]["seconds"]
                    for c in done
                    if retrain.get(c["seed"]) and retrain[c["seed"]][i] is not None
                ]
                if ratios:
                    row["time_ratio"], row["time_ratio_std"] = mean_std(ratios)
                reduced = [c["result"]["cycles"][i].get("reduced_size") for c in done]
                lines = [x for x in dict.fromkeys(c["result"]["cycles"][i].get("policy") for c in done) if x]
                if all(isinstance(v, int) for v in reduced):
                    row["extra"] = (
                        f"reduced set {mean_std([float(v) for v in reduced])[0]:.0f} of "
                        f"{done[0]['result']['cycles'][i]['retain_size']} retain images"
                        + (
                            "; the method trained on it (retain: reduced)"
                            if done[0]["result"]["cycles"][i].get("retain_source") == "reduced"
                            else ""
                        )
                    )
                if lines:  # which entry (or fallback) each request of a policy row followed
                    row["extra"] = "; ".join([*lines, *([row["extra"]] if row.get("extra") else [])])
                ref = lookup(ref_tree, [i + 1, method])
                if isinstance(ref, list):
                    add_reference(row, ref, lookup(ref_tree, [i + 1, "retrain"]), flag=exp.spec.get("flag", True))
                rows.append(row)
    return rows


def _inputs(cell: Cell, exp: Experiment, preset: dict[str, Any]) -> dict[str, Any] | None:
    """A ``policy = true`` row's policy and tuned files (a new policy recomputes it)."""
    return {"policy": policy_inputs()} if follows_policy(exp, cell.key["method"]) else None


KINDS.register("successive")(Kind(_cells, _run, _rows, inputs=_inputs))
