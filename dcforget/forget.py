"""Forget specs: one parser for every command.

``random:F``            a fraction F in (0,1) of the (capped) training set, uniformly at random
``class:C``             every image of class C (an index or a class name)
``classes:C1,C2[:F]``   a fraction F in (0,1] of each listed class (F omitted = the whole classes)
``indices:FILE``        training-set positions, text (one per line, '#' comments) or .npy
``overfit``             the samples the overfitting metric flags (Otsu threshold); provided by the attacks stage

Resolution is deterministic for a seed. The retain set is always the exact complement of the forget set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from .errors import ForgetSpecError
from .overfit import otsu_threshold, overfitting_scores
from .registry import Registry


@dataclass(frozen=True)
class ForgetSpec:
    kind: str
    args: tuple[str, ...]
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass
class ForgetContext:
    """What a selector may look at. ``extra`` carries what model-based selectors (``overfit``) need."""

    labels: torch.Tensor  # int64 [N], the (capped) training labels
    num_classes: int
    seed: int = 0
    class_names: tuple[str, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class ForgetSplit:
    spec: str
    forget: torch.Tensor  # sorted int64 positions in the training set
    retain: torch.Tensor  # sorted int64, the exact complement

    def summary(self) -> dict[str, Any]:
        return {"spec": self.spec, "forget": int(len(self.forget)), "retain": int(len(self.retain))}


Selector = Callable[[tuple[str, ...], ForgetContext], torch.Tensor]
SELECTORS: Registry[Selector] = Registry("forget spec kind")


def parse_forget_spec(text: str) -> ForgetSpec:
    text = (text or "").strip()
    kind, _, rest = text.partition(":")
    kind = kind.lower()
    if kind not in SELECTORS:
        raise ForgetSpecError(
            f"bad forget spec {text!r}: unknown kind {kind!r}; use random:F, class:C, classes:C1,C2[:F], "
            "indices:FILE or overfit"
        )
    args: tuple[str, ...]
    if kind == "indices":
        args = (rest,)  # a path may contain ':'
    elif kind == "classes":
        head, sep, tail = rest.rpartition(":")
        args = (head, tail) if sep else (rest,)
    else:
        args = tuple(rest.split(":")) if rest else ()
    return ForgetSpec(kind, args, text)


def resolve_forget(spec: str | ForgetSpec, ctx: ForgetContext) -> ForgetSplit:
    """Turn a spec into sorted forget/retain index tensors over ``ctx.labels``."""
    parsed = parse_forget_spec(spec) if isinstance(spec, str) else spec
    n = int(ctx.labels.shape[0])
    forget = SELECTORS.get(parsed.kind)(parsed.args, ctx)
    forget = torch.as_tensor(forget, dtype=torch.long).cpu()
    if forget.numel() == 0:
        raise ForgetSpecError(f"forget spec {parsed} selects no sample")
    forget = torch.sort(forget).values
    if bool((forget[1:] == forget[:-1]).any()):
        raise ForgetSpecError(f"forget spec {parsed} lists an index more than once")
    if int(forget[0]) < 0 or int(forget[-1]) >= n:
        bad = int(forget[0]) if int(forget[0]) < 0 else int(forget[-1])
        raise ForgetSpecError(f"forget spec {parsed}: index {bad} is out of range for a training set of {n}")
    if len(forget) >= n:
        raise ForgetSpecError(f"forget spec {parsed} selects the whole training set; the retain set would be empty")
    mask = torch.ones(n, dtype=torch.bool)
    mask[forget] = False
    return ForgetSplit(parsed.text, forget, torch.nonzero(mask).flatten())


# --------------------------------------------------------------------------------------------- selectors
def _fraction(raw: str, spec: str, allow_one: bool) -> float:
    try:
        f = float(raw)
    except ValueError:
        raise ForgetSpecError(f"bad forget spec {spec!r}: {raw!r} is not a fraction") from None
    ok = 0.0 < f <= 1.0 if allow_one else 0.0 < f < 1.0
    if not ok:
        bounds = "(0, 1]" if allow_one else "(0, 1)"
        raise ForgetSpecError(f"bad forget spec {spec!r}: fraction {raw} is outside {bounds}")
    return f


def _class_index(raw: str, ctx: ForgetContext, spec: str) -> int:
    raw = raw.strip()
    names = [c.lower() for c in ctx.class_names]
    if raw.lower() in names:
        return names.index(raw.lower())
    try:
        c = int(raw)
    except ValueError:
        raise ForgetSpecError(f"bad forget spec {spec!r}: unknown class {raw!r}") from None
    if not 0 <= c < ctx.num_classes:
        raise ForgetSpecError(f"bad forget spec {spec!r}: class {c} is outside 0..{ctx.num_classes - 1}")
    return c


def _random_rows(count_per_group: torch.Tensor, members: torch.Tensor, group: torch.Tensor, seed: int) -> torch.Tensor:
    """From each group g take ``count_per_group[g]`` members at random (seeded), vectorised."""
    keys = torch.rand(len(members), generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    order = torch.argsort(group.double() * 2.0 + keys)
    g_sorted = group[order]
    counts = torch.bincount(g_sorted, minlength=len(count_per_group))
    starts = torch.cumsum(counts, 0) - counts
    rank = torch.arange(len(members)) - starts[g_sorted]
    return members[order[rank < count_per_group[g_sorted]]]


@SELECTORS.register("random")
def _select_random(args: tuple[str, ...], ctx: ForgetContext) -> torch.Tensor:
    spec = "random:" + ":".join(args)
    if len(args) != 1:
        raise ForgetSpecError(f"bad forget spec {spec!r}: expected random:F with F in (0,1)")
    f = _fraction(args[0], spec, allow_one=False)
    n = len(ctx.labels)
    k = int(round(f * n))
    if k < 1:
        raise ForgetSpecError(f"forget spec {spec!r} selects no sample of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(ctx.seed))
    return perm[:k]


@SELECTORS.register("class")
def _select_class(args: tuple[str, ...], ctx: ForgetContext) -> torch.Tensor:
    spec = "class:" + ":".join(args)
    if len(args) != 1 or not args[0].strip():
        raise ForgetSpecError(f"bad forget spec {spec!r}: expected class:C")
    c = _class_index(args[0], ctx, spec)
    return torch.nonzero(ctx.labels.cpu() == c).flatten()


@SELECTORS.register("classes")
def _select_classes(args: tuple[str, ...], ctx: ForgetContext) -> torch.Tensor:
    spec = "classes:" + ":".join(args)
    if not args or not args[0].strip():
        raise ForgetSpecError(f"bad forget spec {spec!r}: expected classes:C1,C2,...[:F]")
    classes = [_class_index(c, ctx, spec) for c in args[0].split(",")]
    if len(set(classes)) != len(classes):
        raise ForgetSpecError(f"bad forget spec {spec!r}: a class is listed twice")
    f = _fraction(args[1], spec, allow_one=True) if len(args) > 1 else 1.0
    labels = ctx.labels.cpu()
    chosen = torch.zeros(ctx.num_classes, dtype=torch.bool)
    chosen[classes] = True
    members = torch.nonzero(chosen[labels]).flatten()
    counts = torch.bincount(labels, minlength=ctx.num_classes)
    take = torch.round(counts.double() * f).long()
    return _random_rows(take, members, labels[members], ctx.seed)


def read_index_file(path: str) -> torch.Tensor:
    p = Path(path)
    if path and p.is_dir():
        raise ForgetSpecError(
            f"forget index file {path!r} is a directory; give a text file (one index per line) or a .npy array"
        )
    if not path or not p.exists():
        raise ForgetSpecError(f"forget index file {path!r} does not exist")
    if not p.is_file():  # a device (/dev/zero never ends), a pipe or a socket
        raise ForgetSpecError(
            f"forget index file {path!r} is not a regular file (a device, pipe or socket); give a "
            "text file (one index per line) or a .npy array"
        )
    if p.suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ForgetSpecError(f"forget index file {p} is not a valid .npy array: {err}") from None
        if arr.ndim != 1 or not np.issubdtype(arr.dtype, np.integer):
            raise ForgetSpecError(f"forget index file {p} must hold a 1-D integer array, got {arr.dtype} {arr.shape}")
        return torch.from_numpy(arr.astype(np.int64))
    values = []
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = "not UTF-8 text (a binary file?)" if isinstance(err, UnicodeDecodeError) else (err.strerror or str(err))
        raise ForgetSpecError(f"forget index file {p} cannot be read: {why}") from None
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            values.append(int(line))
        except ValueError:
            raise ForgetSpecError(f"forget index file {p}, line {lineno}: {line!r} is not an integer") from None
        if not -(2**63) <= values[-1] < 2**63:
            raise ForgetSpecError(f"forget index file {p}, line {lineno}: index {line} is out of range")
    return torch.tensor(values, dtype=torch.long)


@SELECTORS.register("indices")
def _select_indices(args: tuple[str, ...], ctx: ForgetContext) -> torch.Tensor:
    return read_index_file(args[0] if args else "")


@SELECTORS.register("overfit")
def _select_overfit(args: tuple[str, ...], ctx: ForgetContext) -> torch.Tensor:
    """The samples DC-U's overfitting metric calls memorised: O(x) <= Otsu's threshold. Needs
    ``ctx.extra['model']`` and ``ctx.extra['images']``."""
    if any(a.strip() for a in args):  # overfit:0.1 would otherwise be taken as plain overfit, the argument dropped
        raise ForgetSpecError(
            f"bad forget spec {'overfit:' + ':'.join(args)!r}: overfit takes no argument (the "
            "overfitting metric and Otsu's threshold choose the samples)"
        )
    model, images = ctx.extra.get("model"), ctx.extra.get("images")
    if model is None or images is None:
        raise ForgetSpecError(
            "the 'overfit' forget spec needs the model and its training images "
            "(commands that take --checkpoint provide them)"
        )
    scores = overfitting_scores(model, images, ctx.labels)
    try:
        t = otsu_threshold(scores)
    except ValueError:
        raise ForgetSpecError("the 'overfit' forget spec found no spread in the overfitting metric") from None
    return torch.nonzero(scores <= t).flatten()
