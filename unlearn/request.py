"""One unlearning request, start to finish: resolve the (cumulative) forget set, assemble the reduced set when a
condensed file is given, run the method, evaluate, and build the report.

``UnlearnRequest`` is the façade a user (or the CLI) fills in with files and names: ``prepare()`` validates
everything once, together (method and its options, checkpoint, condensed file, dataset, training set, what the
method needs), before any work, and ``run()`` answers it. ``unlearn_request`` is the engine under it, for callers
that already hold a model and data in memory (the experiments, U-LiRA's shadows).

Timing follows the evaluation protocol: the request's time is everything after the forget set is known
(reduced-set assembly included), split into ``assembly`` and ``training``; loading files is not counted.
"""

from __future__ import annotations

import datetime as _dt
import os
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import torch

from dcforget import __version__
from dcforget.checkpoint import Checkpoint, CheckpointMeta, open_checkpoint, read_checkpoint_meta
from dcforget.condensed_store import CondensedSet, read_condensed
from dcforget.config import check_options, parse_options, shown_path
from dcforget.datasets import Data
from dcforget.errors import ConfigError, DivergedError, ForgetSpecError
from dcforget.forget import (
    CORRECTION_KINDS,
    ForgetContext,
    ForgetSpec,
    ForgetSplit,
    as_forget_spec,
    resolve_forget,
)
from dcforget.metrics import population_mia
from dcforget.models import Classifier
from dcforget.pairing import check_pairing
from dcforget.runtime import resolve_device, synchronize
from dcforget.train import evaluate

from .audit import ReducedSetLeakError, audit_served, require_clean
from .methods import METHODS, Method, UnlearnContext, zero_shot_view
from .policy import PolicyChoice, choose_policy, default_options
from .reduced import assemble_reduced
from .tuned import Tuned, TunedChoice, checkpoint_setting, choose_tuned, forced_tuned


@dataclass
class UnlearnResult:
    model: Classifier
    split: ForgetSplit
    report: dict[str, Any]


def cumulative_split(
    data: Data, spec: ForgetSpec, seed: int, previous: list[int] | None, model: Classifier | None = None
) -> ForgetSplit:
    """This request's forget set united with what earlier requests already forgot. ``model`` serves
    model-based specs (``overfit``)."""
    ctx = ForgetContext(
        data.train.labels.cpu(),
        data.info.num_classes,
        seed,
        data.info.class_names,
        extra={"model": model, "images": data.train.images} if model is not None else {},
        image_shape=tuple(data.info.image_shape),
    )
    split = resolve_forget(spec, ctx)
    if not previous:
        return split
    if spec.is_correction:
        raise ForgetSpecError(
            f"a correction request ({spec}) on a model that has already forgotten samples is not supported: "
            "correct the original, then forget"
        )
    prev = torch.as_tensor(previous, dtype=torch.long)
    n = len(data.train)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[prev] = True
    mask[split.forget] = True
    if bool(mask.all()):
        raise ForgetSpecError("together with earlier requests this forgets the whole training set")
    return ForgetSplit(spec, torch.nonzero(mask).flatten(), torch.nonzero(~mask).flatten())


VALIDATION_MODES = ("whole", "halves")


def evaluate_split(
    model: Classifier, data: Data, split: ForgetSplit, device: torch.device, seed: int = 0, halves: bool = False
) -> dict:
    """RA / FA / VA / TA (eval mode, no augmentation) and the population MIA, forget set against the test split
    (``mia``, reported) and against the validation split (``val_mia``: what choices may read; test figures are
    never optimised). VA and ``val_mia`` are None when the data has no validation split. With ``halves``, also
    ``selection_val_acc`` and ``selection_val_mia``: the same two figures on the selection half of the validation
    split only (dcforget.datasets.validation_halves), which is what a choice about a method that reads the method
    half may read."""
    dev_idx = lambda t: t.to(data.train.labels.device)
    r = evaluate(
        model, data.train.images[dev_idx(split.retain)], data.train.labels[dev_idx(split.retain)], device=device
    )
    f = evaluate(
        model, data.train.images[dev_idx(split.forget)], data.train.labels[dev_idx(split.forget)], device=device
    )
    t = evaluate(model, data.test.images, data.test.labels, device=device)
    members = len(split.forget) >= 2  # a one-image request: the population MIA is not defined (None)
    mia = population_mia(f.losses, t.losses, seed=seed) if members else None
    val: dict = {"val_acc": None, "val_mia": None, "val_indiscernibility": None}
    if data.val is not None and len(data.val) >= 2:
        v = evaluate(model, data.val.images, data.val.labels, device=device)
        vm = population_mia(f.losses, v.losses, seed=seed) if members else None
        val = {
            "val_acc": v.accuracy,
            "val_mia": vm.accuracy if vm else None,
            "val_indiscernibility": vm.indiscernibility if vm else None,
        }
        if halves:
            sel = data.val_halves()[1]
            sel_labels = data.val.labels.cpu()[sel]
            sm = population_mia(f.losses, v.losses[sel], seed=seed) if len(sel) >= 2 and members else None
            val.update(
                {
                    "selection_val_acc": float((v.predictions[sel] == sel_labels).float().mean()) if len(sel) else None,
                    "selection_val_mia": sm.accuracy if sm is not None else None,
                    "selection_val_indiscernibility": sm.indiscernibility if sm is not None else None,
                }
            )
    elif halves:
        val.update({"selection_val_acc": None, "selection_val_mia": None, "selection_val_indiscernibility": None})
    return {
        "retain_acc": r.accuracy,
        "forget_acc": f.accuracy,
        **val,
        "test_acc": t.accuracy,
        "mia": mia.accuracy if mia else None,
        "mia_splits": mia.split_accuracies if mia else None,
        "indiscernibility": mia.indiscernibility if mia else None,
    }


def kept_class_accuracy(model: Classifier, data: Data, split: ForgetSplit, device: torch.device) -> float | None:
    """Test accuracy on the classes a request keeps, where it removes whole classes (classes with no retain sample
    left: ``class:C``, ``classes:C1,C2``, by index or name, or an index file covering a class); None where it removes
    none (per-sample forgetting)."""
    labels = data.train.labels.cpu()
    gone = torch.unique(labels[split.forget.cpu()])
    gone = gone[~torch.isin(gone, torch.unique(labels[split.retain.cpu()]))]
    if len(gone) == 0:
        return None
    keep = ~torch.isin(data.test.labels, gone.to(data.test.labels.device))
    return evaluate(model, data.test.images[keep], data.test.labels[keep], device=device).accuracy


RETAIN_SOURCES = ("full", "reduced")


def check_retain_source(method: str, retain: str, has_condensed: bool) -> None:
    """ConfigError where ``retain`` is not a retain source, or is "reduced" without a condensed file or for a method
    that reads no retain set."""
    if retain not in RETAIN_SOURCES:
        raise ConfigError(f"retain must be one of {', '.join(RETAIN_SOURCES)}, not {retain!r}")
    if retain == "reduced":
        if not METHODS.get(method).reads_retain:
            raise ConfigError(
                f"method {method!r} reads no retain set through the request (zero-shot, or it builds "
                "its own from a condensed file or the offline phase): --retain reduced does not apply"
            )
        if not has_condensed:
            raise ConfigError("--retain reduced serves the reduced set of a condensed file: give --from-condensed FILE")


def check_forget_kind(method: str, spec: ForgetSpec) -> None:
    """ForgetSpecError where ``method`` is defined for whole classes only and ``spec`` asks for something else, or
    where a correction request (labels:, features:) goes to a method that removes samples, or a removal request to
    a method that corrects them."""
    m = METHODS.get(method)
    correcting = [n for n in METHODS.names() if METHODS.get(n).corrects]
    if spec.is_correction and not m.corrects:
        raise ForgetSpecError(
            f"method {method!r} removes samples; {str(spec)!r} is a correction request (the samples stay, "
            f"corrected): use one of {', '.join(correcting)}"
        )
    if m.corrects and not spec.is_correction:
        raise ForgetSpecError(
            f"method {method!r} corrects samples (labels:FILE or features:EDIT:FILE), it does not remove them: "
            f"{str(spec)!r} is a removal request"
        )
    if m.class_only and not spec.whole_classes:
        raise ForgetSpecError(
            f"method {method!r} forgets whole classes only (class:C or classes:C1,C2), not {str(spec)!r}"
        )


def check_request(
    method: str,
    spec: ForgetSpec,
    *,
    options: Mapping[str, Any] | None,
    has_condensed: bool,
    retain: str = "full",
    validation: str = "whole",
) -> Method:
    """The one validation of what a request asks, before any work; :meth:`UnlearnRequest.prepare` and
    :func:`unlearn_request` both call it. The method is known; ``validation`` is a mode; ``options`` (typed values,
    the user's, not yet merged with the defaults) are the method's and pass its own check; a condensed file is given
    where the method works from one; the retain source applies; the forget spec's kind is one the method forgets.
    Returns the method's registry entry."""
    m = METHODS.get(method)
    if validation not in VALIDATION_MODES:
        raise ConfigError(f"validation must be one of {', '.join(VALIDATION_MODES)}, not {validation!r}")
    unknown = sorted(set(options or {}) - set(m.defaults))
    if unknown:
        raise ConfigError(
            f"unknown option(s) for method {method!r}: {', '.join(unknown)}; known: {', '.join(sorted(m.defaults))}"
        )
    if m.validate is not None:
        m.validate(dict(options or {}))
    if m.needs_condensed and not has_condensed:
        raise ConfigError(f"method {method!r} works from a condensed set: give --from-condensed FILE")
    check_retain_source(method, retain, has_condensed)
    check_forget_kind(method, spec)
    return m


def unlearn_request(
    original: Classifier,
    data: Data,
    spec: str | ForgetSpec,
    method: str,
    *,
    device: torch.device,
    seed: int = 0,
    options: dict[str, Any] | None = None,
    condensed: CondensedSet | None = None,
    previous_forget: list[int] | None = None,
    quiet: bool = False,
    config: dict[str, Any] | None = None,
    artefacts: dict[str, torch.Tensor] | None = None,
    validation: str = "whole",
    retain: str = "full",
) -> UnlearnResult:
    """``retain``: what the method's retain set is (``UnlearnContext.retain``): ``"full"`` (default) or
    ``"reduced"`` -- the audited reduced set of ``condensed``, resampled by weight; only for a method that reads the
    retain set (``Method.reads_retain``). ``validation``: ``"whole"`` (default) -- the method may read the whole validation split and the report's
    validation figures are on it; ``"halves"`` -- a method that reads the validation split (``reads_validation``)
    is served only its method half, and the report adds the validation figures on the selection half
    (``selection_val_acc``, ``selection_val_mia``), the ones a choice about it may read. The report's
    ``validation`` block says what the method read and which images each figure is on. ``spec``: the request's
    forget spec, parsed (``UnlearnRequest.prepare`` parsed it) or text (parsed here, once: this is the edge for
    callers holding a model and data in memory)."""
    spec = as_forget_spec(spec)
    m = check_request(
        method, spec, options=options, has_condensed=condensed is not None, retain=retain, validation=validation
    )
    opts = {**m.defaults, **(options or {})}
    split = cumulative_split(data, spec, seed, previous_forget, model=original.to(device).eval())
    synchronize(device)
    t0 = time.perf_counter()
    reduced = independent = None
    if condensed is not None:
        reduced = assemble_reduced(
            condensed, split.forget, len(data.train), data.fingerprint(), labels=data.train.labels
        )
        if not reduced.audit["passed"]:  # cannot happen unless assembly is broken; never train on a leak
            raise ReducedSetLeakError(f"reduced-set audit failed: {reduced.audit['checks']}")
        # unlearn.audit shares no code with the assembly; reduced_tensors() re-runs it on exactly what it serves
        independent = require_clean(
            audit_served(split, condensed, data.train.labels, reduced.real_indices, reduced.condensed_rows)
        )
    t1 = time.perf_counter()
    halves = validation == "halves" and data.val is not None
    reads_val = m.reads_validation_with(opts) and data.val is not None
    # a method that reads validation, in halves mode, holds the method half only: the selection half is never its
    served = data.val_half("method") if halves and reads_val else data
    if m.zero_shot:  # enforced, not promised: the method's context holds the forget set and nothing else
        seen, seen_split = zero_shot_view(served, split, m.auxiliary)
        ctx = UnlearnContext(original.to(device).eval(), seen, seen_split, device, seed, opts, quiet, zero_shot=True)
    else:
        ctx = UnlearnContext(
            original.to(device).eval(),
            served,
            split,
            device,
            seed,
            opts,
            quiet,
            condensed,
            reduced,
            artefacts=dict(artefacts or {}),
            retain_source=retain,
            previous=torch.as_tensor(sorted(set(previous_forget)), dtype=torch.long) if previous_forget else None,
        )
    held = ctx.data
    data_seen = {
        "zero_shot": m.zero_shot,
        "forget": len(ctx.split.forget),
        "retain": len(ctx.split.retain),
        "validation": len(held.val) if held.val is not None else 0,
        "test": len(held.test),
    }
    model = m.run(ctx).eval()
    synchronize(device)
    t2 = time.perf_counter()
    bad = [
        name for name, t in model.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())
    ]
    if bad:  # e.g. gradient ascent run too long: never hand back (or save) a broken model
        raise DivergedError(
            f"method {method!r} diverged: {bad[0]} has non-finite values; lower its lr or epochs (or raise alpha)"
        )
    correction = None
    if split.correction is not None:  # how the model does on the affected samples as corrected
        idx = split.forget.to(data.train.labels.device)
        x_old, y_old = data.train.images[idx], data.train.labels[idx]
        x_new, y_new = split.correction.apply(x_old, y_old)
        correction = {
            **split.correction.summary(),
            "affected": len(split.forget),
            "labels_changed": int((y_new != y_old).sum()),
            "corrected_acc": evaluate(model, x_new, y_new, device=device).accuracy,
            "note": "forget_acc is on the affected samples as they were (old labels/images); corrected_acc on them "
            "as corrected; retain_acc on the unaffected samples",
        }
    report = {
        "method": method,
        "forget_spec": str(spec),
        "seed": seed,
        "forget_size": len(split.forget),
        "retain_size": len(split.retain),
        "cumulative": bool(previous_forget),
        "correction": correction,
        "previously_forgotten": len(previous_forget or []),
        **evaluate_split(model, data, split, device, seed, halves=halves),
        "validation": validation_block(data, validation, served if reads_val else None, halves),
        "time": {"assembly_s": t1 - t0, "training_s": t2 - t1, "total_s": t2 - t0},
        "retain_source": retain if m.reads_retain else None,
        "retain_served": ctx.extra.pop("retain_served", None),
        "reduced_set": reduced.audit if reduced else None,
        "independent_audit": None
        if independent is None
        else {
            **(ctx.served_audits[-1] if ctx.served_audits else independent),
            "scope": "served" if ctx.served_audits else "assembled",
            "served_calls": len(ctx.served_audits),
        },
        "options": opts,
        "method_extra": ctx.extra,
        "data_seen": data_seen,
        "config": config or {},
        **data.split_meta(),
        "device": str(device),
        "toolkit_version": __version__,
        "torch_version": str(torch.__version__),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return UnlearnResult(model, split, report)


def validation_block(data: Data, mode: str, served: Data | None, halves: bool) -> dict[str, Any]:
    """What the report says about the validation split: the mode, what the method read of it, and which images each
    validation figure is on."""
    n = len(data.val) if data.val is not None else 0
    if served is None:
        read = "nothing (the method does not read the validation split)" if n else "nothing (no validation split)"
    elif served.val_part == "method":
        read = f"the method half ({len(served.val)} of {n} images)"
    else:
        read = f"the whole validation split ({n} images)"
    figures = {"val_acc": f"whole validation split ({n} images)", "val_mia": f"forget vs whole validation split ({n})"}
    if halves:
        k = len(data.val_halves()[1])
        figures.update(
            {
                "selection_val_acc": f"selection half ({k} images; never served to the method)",
                "selection_val_mia": f"forget vs selection half ({k})",
            }
        )
    return {"mode": mode, "method_read": read, "figures": figures if n else {}}


@dataclass(frozen=True)
class UnlearnRequest:
    """An unlearning request as a user states it. ``options``: typed values (a config table) or ``KEY=VALUE``
    strings (``option_pairs``, parsed strictly); ``method`` None = the default method when a condensed file is
    given."""

    checkpoint: str | os.PathLike
    forget: str | ForgetSpec  # text is parsed by prepare(), once
    method: str | None = None
    condensed_file: str | os.PathLike | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    option_pairs: tuple[str, ...] = ()
    epochs: int | None = None
    seed: int = 0
    device: str | torch.device | None = None
    data_dir: str | os.PathLike | None = None
    download: bool = True
    tuned: bool = True  # use tuned options (`experiments tune`) tuned on the checkpoint's setting, if any
    options_from: str | os.PathLike | None = None  # a tuned file to use whatever its setting (--options-from)
    retain: str | None = (
        None  # "full", or "reduced" (the condensed file's audited reduced set); None: the policy's or full
    )

    def prepare(self) -> "PreparedRequest":
        """Validate the whole request before any work: the method and its options; the checkpoint; the condensed
        file against the checkpoint (dataset, training set, classes, image shape: ``dcforget.pairing``, one error
        type per kind of mismatch); what the method needs (a condensed file, an offline checkpoint); then load the
        data the checkpoint was trained on and check the checkpoint against it."""
        if not isinstance(self.forget, ForgetSpec) and (not isinstance(self.forget, str) or not self.forget.strip()):
            raise ForgetSpecError(
                "an unlearning request needs a forget spec (random:F, class:C, classes:..., indices:FILE, overfit)"
            )
        spec = as_forget_spec(self.forget)  # the request's one parse: kind and syntax now
        spec.read_files()  # an index, label or mask file is read now too
        if self.options_from is not None and not self.tuned:
            raise ConfigError("--options-from and --untuned contradict each other: give one of them")
        if self.method is None and self.condensed_file is None:
            raise ConfigError(
                "give a condensed file (--from-condensed FILE, for the default method) or a method (--method NAME)"
            )
        policy = read = None
        if self.method is None and spec.kind in CORRECTION_KINDS:  # the policy answers removal requests only
            raise ConfigError(
                f"a {spec.kind} correction request needs --method (first-order, second-order or retrain-corrected)"
            )
        if self.method is None:  # the default: the policy entry for this kind of request and setting, or the fallback
            read = read_checkpoint_meta(self.checkpoint, with_tensors=True)
            policy = choose_policy(
                spec,
                checkpoint_setting(read[0], spec),
                read[0].forgotten,
                tuned=self.tuned,
                offline="remembrance_images" in read[2],
            )
        method = self.method or policy.method
        retain = self.retain or (policy.retain if policy is not None else "full")
        m = METHODS.get(method)
        where = f" of method {method!r}"
        pairs = parse_options(self.option_pairs, m.defaults, where)
        opts = {**check_options(dict(self.options), m.defaults, where), **pairs}
        if self.epochs is not None:
            if "epochs" not in m.defaults:
                raise ConfigError(f"method {method!r} has no epochs")
            if "epochs" in pairs and pairs["epochs"] != int(self.epochs):  # two flags for one setting: no silent winner
                raise ConfigError(
                    f"--epochs {self.epochs} and --option epochs={pairs['epochs']} conflict; give one of them"
                )
            opts["epochs"] = int(self.epochs)
        check_request(method, spec, options=opts, has_condensed=self.condensed_file is not None, retain=retain)
        meta, _, tensors = read or read_checkpoint_meta(self.checkpoint, with_tensors=True)
        corrected = [r for r in meta.requests if str(r).split(":", 1)[0].lower() in CORRECTION_KINDS]
        if corrected:  # its training set is no longer the dataset's: neither G nor a retain set would be right
            raise ConfigError(
                f"checkpoint {self.checkpoint} answered a correction request ({corrected[0]}); it takes no further "
                "request (start from the original)"
            )
        here = checkpoint_setting(meta, spec)
        served = None  # tuned options, under the user's own (--untuned: the method's registered defaults)
        if self.options_from is not None:  # forced: checked, used whatever its setting
            choice = forced_tuned(self.options_from, method, m.defaults, here)
        elif not self.tuned:
            choice = TunedChoice(None, None, off=True)
        elif policy is not None:  # the entry's options, or the fallback's file tuned on this setting
            served, choice = default_options(policy, here, spec)
        else:  # only a file tuned on this checkpoint's setting
            choice = choose_tuned(method, here, m.defaults, spec)
        tuned, note = choice.tuned, choice.note
        served = served if served is not None else (dict(tuned.options) if tuned is not None else {})
        if served:
            opts = {**served, **opts}
            if m.validate is not None:
                m.validate(opts)
        spec.class_indices(meta.num_classes)  # class numbers against the checkpoint's classes (names: at resolution)
        if m.needs_offline and "remembrance_images" not in tensors:
            raise ConfigError(
                f"method {method!r} starts from DC-U's offline phase: give a checkpoint made by "
                "`unlearn offline` (it carries the remembrance set)"
            )
        condensed = None
        if self.condensed_file is not None:
            condensed = read_condensed(self.condensed_file)
            check_pairing(
                condensed,
                where=f"condensed file {self.condensed_file}",
                dataset=meta.dataset,
                fingerprint=meta.train_fingerprint,
                num_classes=meta.num_classes,
                image_shape=meta.image_shape,
            )
        device = resolve_device(self.device)
        ck, data = open_checkpoint(self.checkpoint, self.data_dir, self.download)
        if condensed is not None:  # the condensed file against the training set actually loaded, too
            check_pairing(condensed, where=f"condensed file {self.condensed_file}", fingerprint=data.fingerprint())
        return PreparedRequest(
            self,
            method,
            opts,
            ck,
            data.to(device),
            condensed,
            device,
            tuned,
            note,
            choice,
            here,
            spec=spec,
            retain=retain,
            policy=policy,
        )


@dataclass
class PreparedRequest:
    """A validated request with its files loaded; ``run()`` answers it."""

    request: UnlearnRequest
    method: str
    options: dict[str, Any]
    checkpoint: Checkpoint
    data: Data
    condensed: CondensedSet | None
    device: torch.device
    tuned: Tuned | None = None  # where the options came from, when a tuned file supplied them
    tuned_note: str | None = None  # why a tuned file for this method, dataset and model was not used
    tuned_choice: TunedChoice | None = None  # which tuned file was used, or why none was
    setting: Any = None  # the checkpoint's setting (unlearn.tuned.Setting) the choice was made for
    spec: ForgetSpec | None = None  # the request's forget spec, parsed once by prepare()
    retain: str = "full"  # the retain source the method is served (the user's, else the policy entry's)
    policy: PolicyChoice | None = None  # the request named no method: the policy entry it follows, or the fallback

    @property
    def meta(self) -> CheckpointMeta:
        return self.checkpoint.meta

    def run(self, *, quiet: bool = False, config: dict[str, Any] | None = None) -> UnlearnResult:
        """Unlearn; the report names the input files. Successive requests: the checkpoint's earlier forget sets are
        forgotten again (cumulative)."""
        r = self.request
        res = unlearn_request(
            self.checkpoint.model,
            self.data,
            self.spec if self.spec is not None else r.forget,
            self.method,
            device=self.device,
            seed=r.seed,
            options=self.options,
            condensed=self.condensed,
            previous_forget=list(self.meta.forgotten),
            quiet=quiet,
            config=config,
            artefacts=self.checkpoint.tensors,
            # options tuned with the method reading the method half: run it as it was tuned
            validation=self.tuned.summary.get("validation", "whole") if self.tuned else "whole",
            retain=self.retain,
        )
        res.report.update(
            checkpoint=str(r.checkpoint),
            condensed_file=str(r.condensed_file) if r.condensed_file is not None else None,
            tuned=None
            if self.tuned is None
            else {"file": shown_path(self.tuned.path), "preset": self.tuned.preset, **self.tuned.summary},
        )
        if self.policy is not None:  # the request named no method: the policy entry it followed, or the fallback
            res.report["policy"] = self.policy.record(self.setting)
        if self.tuned_choice is not None:  # which tuned file was used or why none was, against what setting
            res.report["tuned_choice"] = {
                **self.tuned_choice.record(),
                "checkpoint_setting": self.setting.to_dict() if self.setting else None,
            }
        return res

    def output_meta(self, res: UnlearnResult) -> dict[str, Any]:
        """The unlearned model's checkpoint metadata: the original's provenance, and every request so far."""
        keep = {
            k: v
            for k, v in self.meta.to_dict().items()
            if k not in ("model", "toolkit_version", "torch_version", "created_utc", "metrics", "history")
        }
        return {
            **keep,
            "unlearned_from": str(self.request.checkpoint),
            "unlearn_method": self.method,
            # a correction request forgets nothing: the affected samples stay (corrected)
            "forgotten": list(self.meta.forgotten) if res.split.correction is not None else res.split.forget.tolist(),
            "requests": [*self.meta.requests, str(self.spec if self.spec is not None else self.request.forget)],
        }
