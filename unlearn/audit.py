"""An audit of what an unlearning method is about to train on, sharing nothing with the reduced set's assembly.

``unlearn.reduced`` assembles the reduced retain set and reports facts recomputed from its own masks and helpers,
so a bug there (a wrong bucket owner, a touched bucket marked clean) would be repeated by its own audit. This
module re-decodes the condensed set's CSR with its own numpy code and checks the exact lists a method is served
(``UnlearnContext.reduced_tensors`` calls it on the training positions and condensed rows it gathers, before it
returns any image), against the request's own ForgetSplit and the training labels:

* the split is an exact partition of the training set;
* no served real image is a forget sample, and every served real image is a retain sample;
* no served condensed image has a forget sample in its bucket, is a copy of a forget sample (provenance source),
  or has a forget sample in its influence scope: ``bucket`` = its bucket (checked above), ``class`` = any
  training image of its class (its own label and its members' labels), ``global`` = any training image at all;
  an influence it does not know fails;
* every retain sample is represented (served as itself, or a member of a served condensed image's bucket).

A failed audit raises :class:`ReducedSetLeakError`: the request never trains on a leak.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from dcforget.condensed_store import CondensedSet
from dcforget.errors import ForgetSpecError
from dcforget.forget import ForgetSplit

LEAK_CHECKS = (
    "served_real_not_forgotten",
    "served_real_in_retain",
    "served_buckets_hold_no_forget_sample",
    "served_sources_not_forgotten",
    "served_influence_scope_untouched",
)


class ReducedSetLeakError(ForgetSpecError):
    """The rows an unlearning method would train on include, or were influenced by, a forget sample (or the
    condensed set / split they come from cannot be decoded)."""


def _ints(values: Any) -> np.ndarray:
    if isinstance(values, torch.Tensor):
        values = values.detach().cpu().numpy()
    return np.asarray(values).astype(np.int64, copy=False).reshape(-1)


def _within(a: np.ndarray, lo: int, hi: int) -> bool:
    return a.size == 0 or (int(a.min()) >= lo and int(a.max()) < hi)


def _examples(a: np.ndarray, k: int = 5) -> list[int]:
    return [int(v) for v in a[:k]]


def audit_served(
    split: ForgetSplit, cs: CondensedSet, train_labels: torch.Tensor, real: torch.Tensor, rows: torch.Tensor
) -> dict[str, Any]:
    """Check the served training positions ``real`` and condensed rows ``rows`` (see the module docstring).
    Returns {passed, checks, leaks (a few offending indices per failed check), sizes...}; never raises."""
    labels = _ints(train_labels)
    n = labels.size
    forget, retain, real, rows = _ints(split.forget), _ints(split.retain), _ints(real), _ints(rows)
    ptr, members = _ints(cs.bucket_indptr), _ints(cs.bucket_indices)
    source, row_label = _ints(cs.source_indices), _ints(cs.labels)
    m = row_label.size
    influence = str(cs.influence)
    out: dict[str, Any] = {
        "influence": influence,
        "served_real": int(real.size),
        "served_condensed": int(rows.size),
        "forget_size": int(forget.size),
        "retain_size": int(retain.size),
        "leaks": {},
    }

    def fail(check: str, why: str) -> dict[str, Any]:  # the inputs cannot be decoded: nothing can be vouched for
        checks = {c: False for c in ("inputs_decodable", *LEAK_CHECKS, "every_retain_sample_represented")}
        return {**out, "checks": checks, "passed": False, "leaks": {check: why}}

    if not (_within(forget, 0, n) and _within(retain, 0, n)):
        return fail("split", "forget/retain positions outside the training set")
    in_forget = np.zeros(n, dtype=bool)
    in_forget[forget] = True
    in_retain = np.zeros(n, dtype=bool)
    in_retain[retain] = True
    if (
        np.unique(forget).size != forget.size
        or np.unique(retain).size != retain.size
        or bool((in_forget & in_retain).any())
        or not bool((in_forget | in_retain).all())
    ):
        return fail("split", "forget and retain are not an exact partition of the training set")
    if int(cs.train_size) != n:
        return fail("condensed", f"condensed set is of {cs.train_size} training images, the request's has {n}")
    if (
        ptr.size != m + 1
        or (m + 1 > 0 and (ptr[0] != 0 or ptr[-1] != members.size))
        or bool((np.diff(ptr) < 0).any())
        or source.size != m
        or not _within(members, 0, n)
        or not _within(source, -1, n)
    ):
        return fail("condensed", "condensed CSR / provenance is inconsistent")
    if (
        not (_within(real, 0, n) and _within(rows, 0, m))
        or np.unique(real).size != real.size
        or np.unique(rows).size != rows.size
    ):
        return fail("served", "served positions/rows out of range or repeated")

    # CSR decoded here: entry e belongs to condensed row bucket_of[e]
    bucket_of = np.repeat(np.arange(m, dtype=np.int64), np.diff(ptr))
    served = np.zeros(m, dtype=bool)
    served[rows] = True
    served_entry = served[bucket_of]
    forget_per_row = np.bincount(bucket_of, weights=in_forget[members].astype(np.float64), minlength=m)
    checks: dict[str, bool] = {"inputs_decodable": True}
    leaks: dict[str, list[int]] = {}

    def check(name: str, offenders: np.ndarray) -> None:
        checks[name] = offenders.size == 0
        if offenders.size:
            leaks[name] = _examples(offenders)

    check("served_real_not_forgotten", real[in_forget[real]])
    check("served_real_in_retain", real[~in_retain[real]])
    check("served_buckets_hold_no_forget_sample", rows[forget_per_row[rows] > 0])
    src = source[rows]
    check("served_sources_not_forgotten", rows[(src >= 0) & in_forget[np.maximum(src, 0)]])
    if influence == "bucket":  # scope = the bucket, checked above
        check("served_influence_scope_untouched", rows[:0])
    elif influence == "class":  # scope = every training image of the row's class (its label and its members')
        c = int(max(labels.max(initial=-1), row_label.max(initial=-1))) + 1
        forgotten_class = np.zeros(c, dtype=bool)
        forgotten_class[labels[forget]] = True
        bad = forgotten_class[row_label].copy()
        bad[bucket_of[forgotten_class[labels[members]]]] = True
        check("served_influence_scope_untouched", rows[bad[rows]])
    elif influence == "global":  # scope = everything
        check("served_influence_scope_untouched", rows if forget.size else rows[:0])
    else:  # an influence this audit does not know: no condensed row can be vouched for
        check("served_influence_scope_untouched", rows)
    represented = np.zeros(n, dtype=bool)
    represented[real] = True
    represented[members[served_entry]] = True
    check("every_retain_sample_represented", retain[~represented[retain]])
    return {**out, "checks": checks, "leaks": leaks, "passed": all(checks.values())}


def require_clean(audit: dict[str, Any]) -> dict[str, Any]:
    """The audit, or :class:`ReducedSetLeakError` naming what failed."""
    if not audit["passed"]:
        failed = [k for k, v in audit["checks"].items() if not v]
        raise ReducedSetLeakError(
            f"independent audit of the reduced retain set failed ({', '.join(failed)}; "
            f"offending indices: {audit['leaks']}); refusing to train on it"
        )
    return audit
