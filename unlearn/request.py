"""One unlearning request, start to finish: resolve the (cumulative) forget set, assemble the reduced set when a
condensed file is given, run the method, evaluate, and build the report.

Timing follows the evaluation protocol: the request's time is everything after the forget set is known
(reduced-set assembly included), split into ``assembly`` and ``training``; loading files is not counted.
"""

from __future__ import annotations

import datetime as _dt
import time
from dataclasses import dataclass
from typing import Any

import torch

from dcforget import __version__
from dcforget.condensed import CondensedSet
from dcforget.datasets import Data
from dcforget.errors import ConfigError, ForgetSpecError
from dcforget.forget import ForgetContext, ForgetSplit, resolve_forget
from dcforget.metrics import population_mia
from dcforget.models import Classifier
from dcforget.runtime import synchronize
from dcforget.train import evaluate

from .audit import ReducedSetLeakError, audit_served, require_clean
from .methods import METHODS, UnlearnContext
from .reduced import assemble_reduced


@dataclass
class UnlearnResult:
    model: Classifier
    split: ForgetSplit
    report: dict[str, Any]


def cumulative_split(data: Data, spec: str, seed: int, previous: list[int] | None,
                     model: Classifier | None = None) -> ForgetSplit:
    """This request's forget set united with what earlier requests already forgot. ``model`` serves
    model-based specs (``overfit``)."""
    ctx = ForgetContext(data.train.labels.cpu(), data.info.num_classes, seed, data.info.class_names,
                        extra={"model": model, "images": data.train.images} if model is not None else {})
    split = resolve_forget(spec, ctx)
    if not previous:
        return split
    prev = torch.as_tensor(previous, dtype=torch.long)
    n = len(data.train)
    mask = torch.zeros(n, dtype=torch.bool)
    mask[prev] = True
    mask[split.forget] = True
    if bool(mask.all()):
        raise ForgetSpecError("together with earlier requests this forgets the whole training set")
    return ForgetSplit(spec, torch.nonzero(mask).flatten(), torch.nonzero(~mask).flatten())


def evaluate_split(model: Classifier, data: Data, split: ForgetSplit, device: torch.device, seed: int = 0) -> dict:
    """RA / FA / VA / TA (eval mode, no augmentation) and the population MIA, forget set against the test split
    (``mia``, reported) and against the validation split (``val_mia``: what choices may read; test figures are
    never optimised). VA and ``val_mia`` are None when the data has no validation split."""
    dev_idx = lambda t: t.to(data.train.labels.device)
    r = evaluate(model, data.train.images[dev_idx(split.retain)], data.train.labels[dev_idx(split.retain)], device=device)
    f = evaluate(model, data.train.images[dev_idx(split.forget)], data.train.labels[dev_idx(split.forget)], device=device)
    t = evaluate(model, data.test.images, data.test.labels, device=device)
    mia = population_mia(f.losses, t.losses, seed=seed)
    val: dict = {"val_acc": None, "val_mia": None, "val_indiscernibility": None}
    if data.val is not None and len(data.val) >= 2:
        v = evaluate(model, data.val.images, data.val.labels, device=device)
        vm = population_mia(f.losses, v.losses, seed=seed)
        val = {"val_acc": v.accuracy, "val_mia": vm.accuracy, "val_indiscernibility": vm.indiscernibility}
    return {"retain_acc": r.accuracy, "forget_acc": f.accuracy, **val, "test_acc": t.accuracy, "mia": mia.accuracy,
            "mia_splits": mia.split_accuracies, "indiscernibility": mia.indiscernibility}


def unlearn_request(original: Classifier, data: Data, spec: str, method: str, *, device: torch.device, seed: int = 0,
                    options: dict[str, Any] | None = None, condensed: CondensedSet | None = None,
                    previous_forget: list[int] | None = None, quiet: bool = False,
                    config: dict[str, Any] | None = None, artefacts: dict[str, torch.Tensor] | None = None
                    ) -> UnlearnResult:
    m = METHODS.get(method)
    if m.needs_condensed and condensed is None:
        raise ConfigError(f"method {method!r} works from a condensed set: give --from-condensed FILE")
    opts = {**m.defaults, **(options or {})}
    unknown = sorted(set(options or {}) - set(m.defaults))
    if unknown:
        raise ConfigError(f"unknown option(s) for method {method!r}: {', '.join(unknown)}; known: {', '.join(sorted(m.defaults))}")
    split = cumulative_split(data, spec, seed, previous_forget, model=original.to(device).eval())
    synchronize(device)
    t0 = time.perf_counter()
    reduced = independent = None
    if condensed is not None:
        reduced = assemble_reduced(condensed, split.forget, len(data.train), data.fingerprint(), labels=data.train.labels)
        if not reduced.audit["passed"]:  # cannot happen unless assembly is broken; never train on a leak
            raise ReducedSetLeakError(f"reduced-set audit failed: {reduced.audit['checks']}")
        # unlearn.audit shares no code with the assembly; reduced_tensors() re-runs it on exactly what it serves
        independent = require_clean(audit_served(split, condensed, data.train.labels, reduced.real_indices,
                                                 reduced.condensed_rows))
    t1 = time.perf_counter()
    ctx = UnlearnContext(original.to(device).eval(), data, split, device, seed, opts, quiet, condensed, reduced,
                         artefacts=dict(artefacts or {}))
    model = m.run(ctx).eval()
    synchronize(device)
    t2 = time.perf_counter()
    bad = [name for name, t in model.state_dict().items() if t.is_floating_point() and not bool(torch.isfinite(t).all())]
    if bad:  # e.g. gradient ascent run too long: never hand back (or save) a broken model
        raise ConfigError(f"method {method!r} diverged: {bad[0]} has non-finite values; lower its lr or epochs "
                          "(or raise alpha)")
    report = {
        "method": method, "forget_spec": spec, "seed": seed,
        "forget_size": len(split.forget), "retain_size": len(split.retain),
        "cumulative": bool(previous_forget), "previously_forgotten": len(previous_forget or []),
        **evaluate_split(model, data, split, device, seed),
        "time": {"assembly_s": t1 - t0, "training_s": t2 - t1, "total_s": t2 - t0},
        "reduced_set": reduced.audit if reduced else None,
        "independent_audit": None if independent is None else {
            **(ctx.served_audits[-1] if ctx.served_audits else independent),
            "scope": "served" if ctx.served_audits else "assembled", "served_calls": len(ctx.served_audits)},
        "options": opts, "method_extra": ctx.extra, "config": config or {},
        **data.split_meta(),
        "device": str(device), "toolkit_version": __version__, "torch_version": str(torch.__version__),
        "created_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }
    return UnlearnResult(model, split, report)
