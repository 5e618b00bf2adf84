"""The ``unlearn`` experiment kind: models x forget specs x optional axes (remembrance size, K, condenser, the
condensed model's classifier) x methods, one unlearning request per cell.

A ``methods`` entry is a registered method or a *variant*: a row label defined in the experiment's
``[variants.LABEL]`` table as ``method = "NAME"`` plus ``options = {...}`` (e.g. the default with another reset, or
``dcu-reference`` in the reference's mode and corrected), so two settings of one method are two rows. A variant may
also say where its artefacts come from: ``remembrance = "test"`` (the offline phase's remembrance source),
``offline = {...}`` and ``condense = {...}`` (options of the offline phase and of the condenser over the preset's;
``"@MODEL" = {...}`` inside either applies to one model only). Such artefacts are files of their own.

A variant ``policy = true`` (alone) is *the default as a user gets it*: the row runs what `unlearn
--from-condensed FILE` does without ``--method`` on the cell's original checkpoint -- the policy entry for the
request's kind and the checkpoint's setting (``unlearn.policy.choose_policy``, read from the checkpoint file's own
metadata), or the fallback (the registered default method with a tuned file fitting the setting, if any) -- with
the condensed file always served, and records the line `unlearn` prints (the row's note). Every policy and tuned
file joins such a cell's digest, so a new policy recomputes it.

A ``forget`` entry ``indices:PATH`` with a relative PATH names an index file under the configs folder (e.g.
``indices:experiments/dcu/forget-500.txt``), found wherever the experiment files are (a clone or an installed
copy), not relative to the working directory; the file's bytes join the cell's digest, so editing it recomputes
the cells that read it."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace
from pathlib import Path
from typing import Any, NamedTuple

import torch

from dcforget.config import config_dirs
from dcforget.errors import ConfigError
from dcforget.forget import ForgetSpec
from unlearn.methods import DEFAULT_METHOD, METHODS
from unlearn.request import kept_class_accuracy, unlearn_request

from ..report import add_reference, lookup, mean_std
from ..workspace import KINDS, Cell, Experiment, Kind, Workspace

METRICS = ("retain_acc", "forget_acc", "test_acc", "mia")


VARIANT_KEYS = {"method", "options", "remembrance", "offline", "condense", "retain", "policy"}


def follows_policy(exp: Experiment, label: str) -> bool:
    """Whether the ``methods`` entry ``label`` is a ``policy = true`` variant (module docstring)."""
    variant = exp.spec.get("variants", {}).get(label)
    return isinstance(variant, dict) and "policy" in variant


def resolve_method(exp: Experiment, label: str) -> tuple[str, dict[str, Any]]:
    """(registered method, the variant's own options) of a ``methods`` entry; for a ``policy = true`` variant the
    fallback method (the run resolves the policy: :func:`default_request`)."""
    variant = exp.spec.get("variants", {}).get(label)
    if variant is None:
        METHODS.get(label)
        return label, {}
    if isinstance(variant, dict) and "policy" in variant:
        if variant["policy"] is not True or set(variant) != {"policy"}:
            raise ConfigError(
                f"experiment {exp.name}: variant {label!r}: policy = true stands alone (the row runs what `unlearn "
                "--from-condensed FILE` does without --method)"
            )
        return DEFAULT_METHOD, {}
    if not isinstance(variant, dict) or not isinstance(variant.get("method"), str):
        raise ConfigError(f'experiment {exp.name}: variant {label!r} needs method = "NAME"')
    stray = sorted(set(variant) - VARIANT_KEYS)
    if stray:
        raise ConfigError(
            f"experiment {exp.name}: variant {label!r} has unknown key(s) {', '.join(stray)}; known: "
            f"{', '.join(sorted(VARIANT_KEYS))}"
        )
    method, options = variant["method"], variant.get("options", {})
    _check_variant_artefacts(exp, label, method, variant)
    if variant.get("retain", "full") not in ("full", "reduced") or (
        variant.get("retain") == "reduced" and not METHODS.get(method).reads_retain
    ):
        raise ConfigError(
            f"experiment {exp.name}: variant {label!r}: retain must be full or reduced, and reduced only "
            f"for a method that reads a retain set ({method!r} reads_retain: "
            f"{METHODS.get(method).reads_retain})"
        )
    known = METHODS.get(method).defaults
    unknown = sorted(set(options) - set(known))
    if unknown:
        raise ConfigError(
            f"experiment {exp.name}: variant {label!r} sets unknown option(s) {', '.join(unknown)} of {method!r}"
        )
    return method, dict(options)


def variant_retain(exp: Experiment, label: str) -> str:
    """The retain set a ``methods`` entry trains on: a variant's ``retain = "reduced"`` (the condensed file's
    reduced set, ``UnlearnContext.retain``), else the full retain set."""
    return exp.spec.get("variants", {}).get(label, {}).get("retain", "full")


def original_file(ws: Workspace, arch: str, seed: int = 0) -> Path:
    """The checkpoint file ``Workspace.original`` trains (or reads back) for ``arch`` and ``seed`` (its names:
    ``original.pt``, ``original-sN.pt``; kept out of the workspace's code, whose digest keys every cell)."""
    return ws.root / ws.variant(arch) / ("original.pt" if seed == 0 else f"original-s{seed}.pt")


def original_setting(ws: Workspace, arch: str, seed: int = 0):
    """The setting (``unlearn.tuned.Setting``) ``arch``'s original of ``seed`` records in its checkpoint file, as
    `unlearn` reads it; made (or read back) first."""
    from dcforget.checkpoint import read_checkpoint_meta
    from unlearn.tuned import checkpoint_setting

    ws.original(arch, seed)
    return checkpoint_setting(read_checkpoint_meta(original_file(ws, arch, seed))[0])


class DefaultRequest(NamedTuple):
    """What a request that names no method runs (:func:`default_request`)."""

    method: str
    retain: str  # the retain source
    options: dict[str, Any]
    line: str  # the line `unlearn` prints
    validation: str  # how the method is served the validation split: its tuned file's study's mode, else "whole"
    tuned: Path | None  # the fallback's tuned file, if one fits (an entry's options are tuned ones: None)
    source: str  # where it comes from, in a few words (unlearn.policy.PolicyChoice.source)


def default_request(here, spec: ForgetSpec, forgotten: list[int] | tuple[int, ...] = ()) -> DefaultRequest:
    """What a request that names no method runs on a checkpoint of setting ``here`` (:func:`original_setting`)
    having forgotten ``forgotten``: the policy entry that fits it, or the fallback with the tuned file that fits it
    (``unlearn.policy.default_options``), served the validation split as `unlearn` serves it (a tuned file's study
    mode; ``whole`` for an entry or no file)."""
    from unlearn.policy import choose_policy, default_options

    here = replace(here, forget_kind=spec.family)
    choice = choose_policy(spec, here, list(forgotten))
    options, tuned = default_options(choice, here, spec)
    validation = tuned.tuned.summary.get("validation", "whole") if tuned.tuned is not None else "whole"
    file = tuned.tuned.path if tuned.tuned is not None else None
    return DefaultRequest(choice.method, choice.retain, options, choice.line(here), validation, file, choice.source)


def policy_inputs() -> str:
    """A digest of every policy and tuned file under the configs folders: what a ``policy = true`` row may follow."""
    h = hashlib.sha256()
    for base in config_dirs():
        for f in sorted([*Path(base).glob("policy/*/*.json"), *Path(base).glob("tuned/*/*/*.json")]):
            h.update(f.relative_to(base).as_posix().encode() + b"\0" + f.read_bytes() + b"\0")
    return h.hexdigest()


def method_options(exp: Experiment, preset: dict[str, Any], method: str, arch: str) -> dict[str, Any]:
    """Preset, then experiment; within each "*" (keys the method has), then "method", then "method@model"; a
    variant's own options last, then the variant's label scopes ("LABEL", "LABEL@model")."""
    base, own = resolve_method(exp, method)
    known = METHODS.get(base).defaults
    scopes = ("*", base, f"{base}@{arch}") + ((method, f"{method}@{arch}") if method != base else ())
    out = {}
    for source in (preset.get("method_options", {}), exp.spec.get("method_options", {})):
        for scope in scopes[:3]:
            out.update({k: v for k, v in source.get(scope, {}).items() if k in known})
    out.update(own)
    for source in (preset.get("method_options", {}), exp.spec.get("method_options", {})):
        for scope in scopes[3:]:
            out.update({k: v for k, v in source.get(scope, {}).items() if k in known})
    return out


def _check_variant_artefacts(exp: Experiment, label: str, method: str, variant: dict[str, Any]) -> None:
    """A variant's artefact keys must take effect: ``remembrance`` and ``offline`` only for methods that start from
    DC-U's offline phase, ``condense`` only for methods that read a condensed file; option names and "@MODEL"
    scopes must exist (checked before any cell runs, not when the artefact is first built)."""
    from condense.methods import CONDENSERS
    from dcforget.models import MODELS
    from unlearn.offline import OFFLINE_DEFAULTS

    where = f"experiment {exp.name}: variant {label!r}"
    offline_method = METHODS.get(method).needs_offline
    if "remembrance" in variant:
        if not offline_method:
            raise ConfigError(
                f"{where}: remembrance applies to {', '.join(n for n in METHODS.names() if METHODS.get(n).needs_offline)} only"
            )
        if variant["remembrance"] not in ("heldout", "test"):
            raise ConfigError(f'{where}: remembrance must be "heldout" or "test"')
    stages = {
        "offline": (offline_method, set(OFFLINE_DEFAULTS)),
        "condense": (
            offline_method or METHODS.get(method).needs_condensed,
            {k for n in CONDENSERS.names() for k in CONDENSERS.get(n).defaults},
        ),
    }
    for stage, (applies, known) in stages.items():
        table = variant.get(stage)
        if table is None:
            continue
        if not applies:
            raise ConfigError(f"{where}: {method!r} makes no {stage} artefact, so its {stage} table would be ignored")
        if not isinstance(table, dict):
            raise ConfigError(f"{where}: {stage} must be a table of options")
        for key, value in table.items():
            scoped = key.startswith("@")
            if scoped:
                MODELS.get(key[1:])  # an unknown model name is an error, not a silently unused scope
                if not isinstance(value, dict):
                    raise ConfigError(f"{where}: {stage}.{key} must be a table of options")
            unknown = sorted(set(value if scoped else [key]) - known)
            if unknown:
                raise ConfigError(f"{where}: unknown {stage} option(s) {', '.join(unknown)}")


def variant_artefact_options(variant: dict[str, Any], stage: str, arch: str) -> dict[str, Any] | None:
    """A variant's own options for an artefact stage ("offline" or "condense"): ``stage = {...}`` for every model,
    with ``"@MODEL" = {...}`` entries for one model only (e.g. the reference MLP's ``logit_relu``)."""
    table = variant.get(stage) or {}
    if not isinstance(table, dict):
        raise ConfigError(f"a variant's {stage} must be a table of options")
    out = {k: v for k, v in table.items() if not k.startswith("@")}
    out.update(table.get(f"@{arch}") or {})
    return out or None


AXES = (
    "ipc",
    "clusters",
    "condenser",
    "classifier",
)  # optional grid axes of an "unlearn" experiment, beyond model/forget/method


def _unlearn_cells(exp: Experiment, seeds: int) -> list[Cell]:
    s = exp.spec
    for m in s["methods"]:
        resolve_method(exp, m)
    axes = s.get("axes", {})
    unknown = sorted(set(axes) - set(AXES))
    if unknown:
        raise ConfigError(f"experiment {exp.name}: unknown axes {', '.join(unknown)}; known: {', '.join(AXES)}")
    combos: list[dict[str, Any]] = [{}]
    for name in AXES:
        if name in axes:
            combos = [{**c, name: v} for c in combos for v in axes[name]]
    cells: dict[str, Cell] = {}  # an axis a method does not use is "-" for it: retraining runs once, not per K
    for model in s["models"]:
        for forget in s["forget"]:
            for combo in combos:
                for seed in range(seeds):
                    for m in s["methods"]:
                        used = {a: (v if _uses(resolve_method(exp, m)[0], a) else "-") for a, v in combo.items()}
                        cell = Cell(exp.name, {"model": model, "forget": forget, **used, "method": m}, seed)
                        cells.setdefault(cell.id, cell)
    return list(cells.values())


def forget_spec(text: str) -> ForgetSpec:
    """An experiment's forget entry, parsed, as the request takes it: a relative ``indices:PATH`` resolved against
    the configs folder (the first that has the file; an absolute path is kept)."""
    spec = ForgetSpec.parse(text)
    if spec.path is None:
        return spec
    path = Path(spec.path)
    if path.is_absolute():
        return spec
    for base in config_dirs():
        if (base / path).is_file():
            return replace(spec, args=(str(base / path),))
    raise ConfigError(
        f"forget index file {path} is not under any configs folder ({', '.join(map(str, config_dirs()))})"
    )


def _unlearn_inputs(cell: Cell, exp: Experiment, preset: dict[str, Any]) -> dict[str, Any] | None:
    """The bytes of an ``indices:`` forget file (the spec's text alone would not notice an edited file), and for a
    ``policy = true`` row the policy and tuned files it may follow."""
    out: dict[str, Any] = {}
    path = forget_spec(cell.key["forget"]).path
    if path is not None:
        out["indices"] = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    if follows_policy(exp, cell.key["method"]):
        out["policy"] = policy_inputs()
    return out or None


def _uses(method: str, axis: str) -> bool:
    if axis == "ipc":
        return METHODS.get(method).needs_offline
    if axis == "classifier":
        return method == "condensed-model"
    return METHODS.get(method).needs_condensed  # clusters, condenser


def _unlearn_run(cell: Cell, exp: Experiment, ws: Workspace) -> dict[str, Any]:
    k = cell.key
    arch, spec, label = k["model"], k["forget"], k["method"]
    method = resolve_method(exp, label)[0]
    m = METHODS.get(method)
    start, condensed, artefacts = ws.original(arch), None, None
    axis = lambda a, default=None: default if k.get(a, "-") == "-" else k[a]
    cs_args = {"clusters": axis("clusters"), "condenser": axis("condenser", "fdm")}
    options = method_options(exp, ws.preset, label, arch)
    if axis("classifier"):
        options["classifier"] = axis("classifier")
    variant = exp.spec.get("variants", {}).get(label, {})
    cs_args["extra"] = variant_artefact_options(variant, "condense", arch)
    retain, line, validation = variant_retain(exp, label), None, "whole"
    if follows_policy(exp, label):  # what `unlearn --from-condensed FILE` does without --method
        method, retain, options, line, validation, *_ = default_request(original_setting(ws, arch), forget_spec(spec))
        condensed = ws.condensed(arch, **cs_args)
    elif METHODS.get(method).needs_offline:
        source = variant.get("remembrance")  # e.g. "test": the reference's
        off_extra = variant_artefact_options(variant, "offline", arch)
        start, artefacts = ws.offline(arch, axis("ipc"), source, off_extra)
        condensed = ws.condensed(arch, offline=True, ipc=axis("ipc"), source=source, offline_extra=off_extra, **cs_args)
    elif m.needs_condensed or retain == "reduced":
        condensed = ws.condensed(arch, **cs_args)
    data = ws.data()
    res = unlearn_request(
        start,
        data,
        forget_spec(spec),
        method,
        device=ws.device,
        seed=cell.seed,
        quiet=ws.quiet,
        options=options,
        condensed=condensed,
        artefacts=artefacts,
        retain=retain,
        validation=validation,
    )
    r = res.report
    out = {key: r[key] for key in METRICS}
    out["retain_source"] = r.get("retain_source")
    if line is not None:
        out.update(policy=line, policy_method=method)
    out.update(
        seconds=r["time"]["total_s"],
        assembly_s=r["time"]["assembly_s"],
        forget_size=r["forget_size"],
        reduced_ratio=(r["reduced_set"] or {}).get("ratio_to_retain"),
        options=r["options"],
        val_acc=r.get("val_acc"),
        val_mia=r.get("val_mia"),
        method_extra=r.get("method_extra", {}),
    )  # e.g. the epochs and reset the method actually used
    out["roc"] = roc_points(res.model, data, res.split.forget, ws.device)
    inv = exp.spec.get("invert")
    if inv and arch in inv.get("models", []) and cell.seed in inv.get("seeds", [0]):
        out["inversion"] = invert_and_score(
            res.model,
            data,
            res.split.forget,
            ws,
            f"{exp.name}-{cell.id}",
            steps=int(inv.get("steps", 200)),
            seed=cell.seed,
        )
    other = kept_class_accuracy(res.model, data, res.split, ws.device)  # whole-class requests: TA on the rest
    if other is not None:
        out["test_acc_other"] = other
    return out


VAL_GAP_METRICS = ("retain_acc", "forget_acc", "val_acc", "val_mia")


def val_gap(result: dict[str, Any], retrain: dict[str, Any]) -> float | None:
    """Distance to retraining of the same seed on what selection may read (Deep Unlearn's objectives without
    the test split): the Euclidean norm of the differences in RA, FA, VA and the validation MIA, in points."""
    if any(result.get(k) is None or retrain.get(k) is None for k in VAL_GAP_METRICS):
        return None
    return sum((100 * (result[k] - retrain[k])) ** 2 for k in VAL_GAP_METRICS) ** 0.5


ROC_FPR = [0.0] + [round(10 ** (e / 10), 6) for e in range(-30, 1)]  # 0, 1e-3 .. 1, log-spaced


def roc_points(model, data, forget: torch.Tensor, device) -> dict[str, list[float]]:
    """The loss-free MIA ROC of forget (members) vs test on logit-scaled confidence, at fixed FPRs (so cells stay
    small and curves average over seeds)."""
    from attacks.epsilon import confidences
    from attacks.roc import tpr_at_fpr

    idx = forget.to(data.train.labels.device)
    cf = confidences(model, data.train.images[idx], data.train.labels[idx], device)
    ct = confidences(model, data.test.images, data.test.labels, device)
    return {"fpr": ROC_FPR, "tpr": [tpr_at_fpr(cf, ct, f) for f in ROC_FPR]}


def invert_and_score(model, data, forget: torch.Tensor, ws: Workspace, name: str, *, steps: int, seed: int) -> dict:
    """Class-representative inversion of ``model`` (2 per class), its grid saved beside the report, scored by SSIM
    to the nearest forget image of the class."""
    from attacks.inversion import invert_classes, score_reconstructions
    from dcforget.images import save_grid

    rec, tg = invert_classes(model, data.info.num_classes, data.info.image_shape, per_class=2, steps=steps, seed=seed)
    png = ws.root.parent / "figures" / "inversion" / f"{name}.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    save_grid([rec[tg == c] for c in range(data.info.num_classes)], png, columns=2, scale=3, force=True)
    idx = forget.to(data.train.labels.device)
    score = score_reconstructions(rec, tg, data.train.images[idx], data.train.labels[idx])
    return {"png": str(png.relative_to(ws.root.parent)), "ssim": score["ssim"]}


def _unlearn_rows(exp: Experiment, cells: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per cell key (every axis but the seed): mean/std over seeds, time as a ratio to retraining of the same
    key and seed, and the reference's numbers (looked up by ``reference_keys``, default model then method;
    [RA, FA, MIA, seconds]) with a flag where ours differ beyond noise."""
    ref_tree = exp.spec.get("reference", {})
    ref_keys = exp.spec.get("reference_keys", ["model", "method"])
    notes = exp.spec.get("notes", {})
    keys = list({json.dumps(c["key"]): c["key"] for c in cells}.values())
    rows = []
    for key in keys:
        got = [c for c in cells if c["key"] == key]
        base = {**{a: ("-" if a in AXES else v) for a, v in key.items()}, "method": "retrain"}
        retrain = {c["seed"]: c["result"] for c in cells if c["key"] == base}
        row: dict[str, Any] = {"experiment": exp.name, **key, "seeds": len(got)}
        # whole-class requests: TA on the classes kept (the forgotten class's test images would count as errors)
        ta_key = "test_acc_other" if all("test_acc_other" in c["result"] for c in got) else "test_acc"
        for k, name in (
            ("retain_acc", "retain_acc"),
            ("forget_acc", "forget_acc"),
            (ta_key, "test_acc"),
            ("mia", "mia"),
        ):
            row[name], row[name + "_std"] = mean_std([100 * c["result"][k] for c in got])
        for k in ("val_acc", "val_mia"):  # what choices may read (cells from before the validation split lack them)
            if all(c["result"].get(k) is not None for c in got):
                row[k], row[k + "_std"] = mean_std([100 * c["result"][k] for c in got])
        gaps = [val_gap(c["result"], retrain[c["seed"]]) for c in got if c["seed"] in retrain]
        if gaps and all(g is not None for g in gaps):
            row["val_gap"], row["val_gap_std"] = mean_std(gaps)
        sources = {c["result"].get("retain_source") for c in got} - {None}
        if sources:  # which retain set the method trained on (full, or the reduced set of the condensed file)
            row["retain_source"] = "/".join(sorted(sources))
        inv = [c["result"]["inversion"] for c in got if "inversion" in c["result"]]
        lines = list(dict.fromkeys(c["result"]["policy"] for c in got if c["result"].get("policy")))
        notes_ = (
            lines
            + ([f"retain: {row['retain_source']}"] if row.get("retain_source") == "reduced" else [])
            + (["inversion: " + ", ".join(f"[SSIM {i['ssim']:.3f}]({i['png']})" for i in inv)] if inv else [])
        )
        if notes_:
            row["extra"] = "; ".join(notes_)
        rocs = [c["result"]["roc"]["tpr"] for c in got if "roc" in c["result"]]
        if rocs:
            row["roc_fpr"] = got[0]["result"]["roc"]["fpr"]
            row["roc_tpr"] = [sum(v) / len(v) for v in zip(*rocs)]
        ratios = [c["result"]["seconds"] / retrain[c["seed"]]["seconds"] for c in got if c["seed"] in retrain]
        if ratios:
            row["time_ratio"], row["time_ratio_std"] = mean_std(ratios)
        ref = lookup(ref_tree, [key.get(k) for k in ref_keys])
        ref_r = lookup(ref_tree, [base.get(k) for k in ref_keys])
        if isinstance(ref, list):
            add_reference(row, ref, ref_r, flag=exp.spec.get("flag", True))
        if key["method"] in notes:
            row["note"] = notes[key["method"]]
        rows.append(row)
    return rows


KINDS.register("unlearn")(Kind(_unlearn_cells, _unlearn_run, _unlearn_rows, inputs=_unlearn_inputs))
