"""The ``leaderboard`` experiment kind: Deep Unlearn's benchmark (../shared/reference/unlearning-methods.md §1.2-1.3)
on one dataset: models x methods x seeds, one original per seed (a seed varies the original's and the retraining's
initialisation and data order, the forget draw and the method's randomness), every method with its tuned options
(``configs/tuned/<preset>/<dataset>-<model>/<method>.json``, written by `experiments tune` on the validation
split; the experiment's ``tuned_on`` names the dataset whose tuning it reuses) or, where none were tuned, its
registered defaults (the report says which, per row).

Per cell: RA, FA, VA, TA, the population MIA of forget vs test (and vs validation), its indiscernibility, seconds,
the machine that timed it, and the L2 distance of the unlearned weights to the same seed's retrained model. Rows:
mean ± sample std over seeds, time as Deep Unlearn's run-time efficiency (retraining's seconds / the method's, per
seed, only where both were timed on the same machine: a retraining read back from a file another run made
elsewhere gives no ratio), retention deviation (mean over RA, FA, TA of |acc / retraining's acc - 1|), and ranks
as Deep Unlearn's: per seed, the methods are ranked on retention deviation, indiscernibility and RTE (ties share
their mean rank), and a row's rank per metric and its average rank are means over seeds (± sample std of the
per-seed average). L2 is shown, not ranked (secondary in Deep Unlearn). Retraining and the original are
reference rows, never ranked.

Full against reduced retain: ``policy = "PRESET/DATASET-MODEL"`` (a file under ``configs/policy/``) with
``policy_entry = "KIND"`` adds one row per candidate study of that entry's search (`experiments tune --policy`):
``METHOD (full)`` or ``METHOD (reduced)``, run with the retain source and the options its study chose on the
validation split, served the validation split as its own study served it (``halves`` for a method that reads it).
The entry's studies must have been searched on the experiment's dataset, model and kind of forgetting. Each row is
then measured on the test split beside retraining in the same run, so the table shows what the validation search's
choices give on test. ``leave_out = [LABEL, ...]`` drops candidates (the experiment's ``reductions`` says why).

The default as a user gets it: a ``methods`` entry declared ``[variants.LABEL] policy = true`` (the one kind of
variant a leaderboard takes, as in the ``unlearn`` kind) runs what `unlearn --from-condensed FILE` does without
``--method`` on each seed's original -- the policy entry that fits its setting (``configs/policy/``), or the
fallback -- and records the line `unlearn` prints. The row is measured like any other but never ranked (a
duplicate of a ranked method would move the others' ranks); the rows say whether a ranked row beats it on both
RetDev and RTE (``leaderboard_rows``)."""

from __future__ import annotations

import functools
import json
import math
from pathlib import Path
from typing import Any

import torch

from dcforget.config import config_dirs, shown_path
from dcforget.errors import ConfigError
from dcforget.forget import ForgetSpec
from dcforget.provenance import machine
from unlearn.methods import METHODS
from unlearn.policy import PolicyCandidate, PolicyEntry, read_policy
from unlearn.request import check_forget_kind, cumulative_split, kept_class_accuracy, unlearn_request
from unlearn.tuned import find_tuned

from ..workspace import KINDS, Cell, Experiment, Kind, Workspace
from .leaderboard_rows import COLUMNS, rows
from .unlearn import default_request, follows_policy, original_setting, policy_inputs

# retraining and the original untouched ("none"): cell code (they run with the originals' training options, not
# tuned ones), so defined here, in the cells' digest, and handed to the rows
REFERENCES = ("retrain", "none")


def policy_entry(exp: Experiment) -> PolicyEntry | None:
    """The policy entry whose candidates are rows (module docstring), read and checked; None without ``policy``."""
    s = exp.spec
    if "policy" not in s and "policy_entry" not in s:
        return None
    name, kind = s.get("policy"), s.get("policy_entry")
    if not isinstance(name, str) or not isinstance(kind, str):
        raise ConfigError(f'experiment {exp.name}: policy = "PRESET/DATASET-MODEL" goes with policy_entry = "KIND"')
    files = [Path(base) / "policy" / f"{name}.json" for base in config_dirs()]
    found = next((f for f in files if f.is_file()), None)
    if found is None:
        raise ConfigError(f"experiment {exp.name}: no policy file {name}.json under configs/policy/")
    entry = next((e for e in read_policy(found) if e.kind == kind), None)
    if entry is None or not entry.candidates:
        raise ConfigError(f"experiment {exp.name}: {found} has no {kind!r} entry with candidates")
    # the studies' setting must be the experiment's: dataset, model and kind of forgetting (the training-set size
    # and epochs are the preset's; the policy file's name says which preset it was searched under)
    on, where = entry.setting, f"experiment {exp.name}: the {kind!r} entry of {found}"
    forget = ForgetSpec.parse(s.get("forget", "random:0.1"))
    if on is not None and on.dataset and on.dataset != str(s.get("dataset", on.dataset)).split(":")[0]:
        raise ConfigError(f"{where} was searched on {on.dataset}, not {s.get('dataset')}")
    if on is not None and on.model and any(m != on.model for m in s.get("models", [])):
        raise ConfigError(f"{where} was searched on the {on.model} model, not {', '.join(s.get('models', []))}")
    if entry.forget and ForgetSpec.parse(entry.forget).family != forget.family:
        raise ConfigError(f"{where} was searched on {entry.forget} requests, not {forget.family} ones")
    return entry


def _candidate(exp: Experiment, label: str) -> tuple[PolicyEntry, PolicyCandidate] | None:
    entry = policy_entry(exp)
    if entry is None:
        return None
    found = next((c for c in entry.candidates if c.label == label), None)
    return (entry, found) if found is not None else None


def left_out(exp: Experiment, entry: PolicyEntry | None) -> list[str]:
    """The policy candidates the experiment leaves out (``leave_out``, a list of candidate labels; the experiment's
    ``reductions`` says why), checked: each must be one of the entry's candidates."""
    out = exp.spec.get("leave_out", [])
    if not isinstance(out, list) or not all(isinstance(x, str) for x in out):
        raise ConfigError(f"experiment {exp.name}: leave_out must be a list of policy candidate labels")
    if out and entry is None:
        raise ConfigError(f"experiment {exp.name}: leave_out names policy candidates, but the experiment has no policy")
    known = {c.label for c in entry.candidates} if entry else set()
    unknown = [x for x in out if x not in known]
    if unknown:
        raise ConfigError(
            f"experiment {exp.name}: leave_out names {', '.join(unknown)}, not candidates of the policy entry "
            f"(its candidates: {', '.join(sorted(known))})"
        )
    if out and not exp.spec.get("reductions"):
        raise ConfigError(f"experiment {exp.name}: leave_out needs `reductions`, saying why they are left out")
    return out


def default_labels(exp: Experiment) -> list[str]:
    """The ``methods`` entries that run the default as a user gets it (``[variants.LABEL] policy = true``, module
    docstring), checked: a leaderboard takes no other kind of variant, and such a variant stands alone."""
    variants = exp.spec.get("variants", {})
    if not isinstance(variants, dict):
        raise ConfigError(f"experiment {exp.name}: variants must be a table of [variants.LABEL] tables")
    for label, v in variants.items():
        if not isinstance(v, dict) or v != {"policy": True}:
            raise ConfigError(
                f"experiment {exp.name}: variant {label!r}: a leaderboard takes only `policy = true` variants, "
                "standing alone (the row runs what `unlearn --from-condensed FILE` does without --method)"
            )
        if label not in exp.spec.get("methods", []):
            raise ConfigError(f"experiment {exp.name}: variant {label!r} is not one of its methods")
    return [m for m in exp.spec.get("methods", []) if follows_policy(exp, m)]


def labels(exp: Experiment) -> list[str]:
    """The rows' methods, in the order a seed's cells run: the experiment's ``methods`` (references included), then
    the policy entry's candidates but those it leaves out (``leave_out``), then the default as a user gets it (last,
    so that no first-cell cost of a run, such as a lazy import, lands in its time)."""
    entry = policy_entry(exp)
    defaults = default_labels(exp)
    own = [m for m in exp.spec.get("methods", []) if m not in defaults]
    gone = set(left_out(exp, entry))
    candidates = [c.label for c in (entry.candidates if entry else ()) if c.label not in own and c.label not in gone]
    return own + candidates + defaults


def _cells(exp: Experiment, seeds: int) -> list[Cell]:
    s = exp.spec
    if s.get("originals", "per-seed") != "per-seed":  # said in a suite whose seed note shares one original
        raise ConfigError(f'experiment {exp.name}: a leaderboard has one original per seed: originals = "per-seed"')
    methods = [m for m in labels(exp) if m not in REFERENCES]
    forget = s.get("forget", "random:0.1")
    spec = ForgetSpec.parse(forget)
    defaults = default_labels(exp)
    for m in methods:
        if m in defaults:  # the policy picks the method, and the fallback takes every kind of request
            continue
        found = _candidate(exp, m)
        check_forget_kind(found[1].method if found else m, spec)
    return [
        Cell(exp.name, {"model": model, "forget": forget, "method": m}, seed)
        for model in s["models"]
        for seed in range(seeds)
        for m in (*REFERENCES, *methods)
    ]


def method_options(
    exp: Experiment, preset: dict[str, Any], method: str, arch: str
) -> tuple[dict[str, Any], Path | None]:
    """(options, tuned file or None): the tuned options of ``tuned_on``'s dataset for this preset (the workspace's,
    after ``Workspace.for_experiment``), under the preset's and experiment's ``method_options``."""
    if method in REFERENCES:
        train = {**preset.get("original_train", {}), "epochs": int(preset["original_epochs"])}
        known = METHODS.get(method).defaults
        return {k: v for k, v in train.items() if k in known}, None
    if follows_policy(exp, method):
        raise ConfigError(f"experiment {exp.name}: {method!r} follows the policy; its options come with the original")
    found = _candidate(exp, method)
    if found is not None:  # a policy candidate: the options its study chose, nothing over them
        return dict(found[1].options), None
    known = METHODS.get(method).defaults
    tuned = find_tuned(
        method,
        exp.spec.get("tuned_on", preset["dataset"]),
        arch,
        known,
        preset=preset.get("tuned_preset"),  # only files tuned under this benchmark's preset
        forget=ForgetSpec.parse(exp.spec.get("forget", "random:0.1")),
    )
    out = dict(tuned.options) if tuned is not None else {}
    for source in (preset.get("method_options", {}), exp.spec.get("method_options", {})):
        for scope in ("*", method, f"{method}@{arch}"):
            out.update({k: v for k, v in source.get(scope, {}).items() if k in known})
    return out, (tuned.path if tuned is not None else None)


def tuned_validation(tuned: Path | None) -> str:
    """How the tuned file's study served the validation split ("whole", or "halves" for a method that reads it):
    a cell runs the method the way it was tuned, as `unlearn` does."""
    if tuned is None:
        return "whole"
    doc = json.loads(Path(tuned).read_text())
    return (doc.get("setup") or {}).get("validation", "whole")


def l2_distance(a: torch.nn.Module, b: torch.nn.Module) -> float:
    """Euclidean distance between two models' parameters (Deep Unlearn's model L2 distance)."""
    na, nb = [(n, p.shape) for n, p in a.named_parameters()], [(n, p.shape) for n, p in b.named_parameters()]
    if na != nb:
        raise ValueError("L2 distance between models of different layouts")
    return math.sqrt(
        sum(
            float(((p.detach().float() - q.detach().float()) ** 2).sum())
            for p, q in zip(a.parameters(), b.parameters())
        )
    )


def weight_norm(model: torch.nn.Module) -> float:
    """Euclidean norm of a model's parameters (inf or NaN where a weight is not finite)."""
    return math.sqrt(sum(float((p.detach().float() ** 2).sum()) for p in model.parameters()))


def _timing(ws: Workspace) -> dict[str, Any]:
    """What a cell's seconds were measured on and in: the machine (CPU model and flags, threads), the invocation,
    whether bf16 autocast ran (a preset's bf16 = "auto" resolves per machine)."""
    return {
        "machine": machine(ws.device),
        "run_id": ws.run_id,
        "bf16": bool(ws.preset.get("bf16", False)),
        "torch_threads": torch.get_num_threads(),
    }


METRICS = ("retain_acc", "forget_acc", "val_acc", "val_mia", "test_acc", "mia", "indiscernibility")


def _run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    k = cell.key
    arch, forget, method = k["model"], k["forget"], k["method"]
    line = None
    if follows_policy(exp, method):  # what `unlearn --from-condensed FILE` does without --method on this original
        name, retain, options, line, validation, tuned, source = default_request(
            original_setting(ws, arch, cell.seed), ForgetSpec.parse(forget)
        )
        found = None
    else:
        options, tuned = method_options(exp, ws.preset, method, arch)
    retrain_opts = method_options(exp, ws.preset, "retrain", arch)[0]
    retrained, ref = ws.retrained(arch, forget, cell.seed, retrain_opts)
    classes = ws.data().info.num_classes
    if method == "retrain":
        out = {key: ref[key] for key in METRICS}
        seconds = ref["time"]["total_s"]
        if ref.get("run_id") is None or ref.get("run_id") != ws.run_id:
            # retraining's file was made by another invocation: time it again here, so every time ratio of this
            # run divides two times of this run (same seed: the same model, retrained again only to be timed)
            again = unlearn_request(
                ws.original(arch, cell.seed),
                ws.data(),
                forget,
                "retrain",
                device=ws.device,
                seed=cell.seed,
                quiet=ws.quiet,
                options=retrain_opts,
            )
            seconds = again.report["time"]["total_s"]
        split = cumulative_split(
            ws.data(), ForgetSpec.parse(forget), cell.seed, None
        )  # the split retraining trained without
        return {
            **out,
            "seconds": seconds,
            **_timing(ws),
            "l2_to_retrain": 0.0,
            "weight_norm": weight_norm(retrained),
            "num_classes": classes,
            "options": ref["options"],
            "tuned": None,
            "test_acc_other": kept_class_accuracy(retrained, ws.data(), split, ws.device),
        }
    if line is None:
        found = _candidate(exp, method)
        name, retain = (found[1].method, found[1].retain) if found else (method, "full")
        validation = found[1].validation if found else tuned_validation(tuned)
    m = METHODS.get(name)
    start, condensed, artefacts = ws.original(arch, cell.seed), None, None
    if line is not None:  # a request without --method is always served the condensed file
        condensed = ws.condensed(arch, seed=cell.seed)
    elif m.needs_offline:  # DC-U's reference mode: the offline phase of this seed's original, its condensed file
        start, artefacts = ws.offline(arch, seed=cell.seed)
        condensed = ws.condensed(arch, offline=True, seed=cell.seed)
    elif m.needs_condensed or retain == "reduced":
        condensed = ws.condensed(arch, seed=cell.seed)
    res = unlearn_request(
        start,
        ws.data(),
        forget,
        name,
        device=ws.device,
        seed=cell.seed,
        quiet=ws.quiet,
        options=options,
        condensed=condensed,
        artefacts=artefacts,
        validation=validation,
        retain=retain,
    )
    r = res.report
    out = {key: r[key] for key in METRICS}
    return {
        **out,
        "seconds": r["time"]["total_s"],
        **_timing(ws),
        "l2_to_retrain": l2_distance(res.model, retrained),
        "weight_norm": weight_norm(res.model),
        "num_classes": classes,
        "test_acc_other": kept_class_accuracy(res.model, ws.data(), res.split, ws.device),
        "options": r["options"],
        "tuned": shown_path(tuned) if tuned is not None else None,
        "policy": f"{exp.spec['policy']}#{found[0].kind}" if found else None,
        **({"policy_line": line, "policy_method": name, "policy_source": source} if line is not None else {}),
        "retain_source": retain if m.reads_retain else None,
        "reduced_ratio": (r.get("reduced_set") or {}).get("ratio_to_retain"),
        "method_extra": r.get("method_extra", {}),
    }


def _inputs(cell: Cell, exp: Experiment, preset: dict[str, Any]) -> dict[str, Any]:
    """What a cell reads besides its settings and code: the options it runs with, tuned files included, so a
    re-tuned method's cells are recomputed by the next run instead of read back."""
    k = cell.key
    if follows_policy(exp, k["method"]):  # the policy and tuned files it may follow
        return {"policy": policy_inputs(), "retrain": method_options(exp, preset, "retrain", k["model"])[0]}
    options, tuned = method_options(exp, preset, k["method"], k["model"])
    found = _candidate(exp, k["method"])
    return {
        "options": options,
        "validation": found[1].validation if found else tuned_validation(tuned),
        **({"retain": found[1].retain} if found else {}),
        "retrain": method_options(exp, preset, "retrain", k["model"])[0],
    }


KINDS.register("leaderboard")(Kind(_cells, _run, functools.partial(rows, references=REFERENCES), COLUMNS, _inputs))
