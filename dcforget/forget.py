"""Forget specs: one parser for every command, one object for every stage.

``random:F``            a fraction F in (0,1) of the (capped) training set, uniformly at random
``class:C``             every image of class C (an index or a class name)
``classes:C1,C2[:F]``   a fraction F in (0,1] of each listed class (F omitted = the whole classes)
``indices:FILE``        training-set positions, text (one per line, '#' comments) or .npy
``overfit``             the samples the overfitting metric flags (Otsu threshold); provided by the attacks stage

A spec is parsed once, where it enters (a command's ``--forget``, ``UnlearnRequest.prepare``, an experiment's
config), by :meth:`ForgetSpec.parse`, into an immutable :class:`ForgetSpec`; every later stage reads its properties
(``kind``, ``family``, ``whole_classes``, ``classes``, ``fraction``, ``path``) and never parses the text again.
Syntax (kind, fraction range, argument count) is checked by the parser; what needs the dataset (class in range or
a known name, a class listed twice, index in range, an index listed twice, an empty or whole forget set) by
:meth:`ForgetSpec.class_indices` and :func:`resolve_forget`, the one place each.

Resolution is deterministic for a seed. The retain set is always the exact complement of the forget set.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from .errors import ForgetSpecError
from .overfit import otsu_threshold, overfitting_scores
from .registry import Registry

_KINDS_HELP = "use random:F, class:C, classes:C1,C2[:F], indices:FILE or overfit"


@dataclass(frozen=True)
class ForgetSpec:
    """A parsed forget spec. ``kind``: the spec's own kind (random, class, classes, indices, overfit, or a registered
    one); ``args``: its arguments, normalised (class tokens stripped and lower-cased, a fraction as the float's
    repr, a path as given). Build one with :meth:`parse`; ``str()`` is the canonical text, and
    ``ForgetSpec.parse(str(s)) == s``."""

    kind: str
    args: tuple[str, ...] = ()

    # ----------------------------------------------------------------------------------------------- parse
    @classmethod
    def parse(cls, text: str) -> "ForgetSpec":
        """The one parser: syntax errors (unknown kind, wrong arguments, a fraction out of range) raise
        ForgetSpecError here; what needs the dataset is checked against it later (:meth:`class_indices`,
        :func:`resolve_forget`)."""
        text = "" if text is None else text
        if not isinstance(text, str):
            raise ForgetSpecError(f"a forget spec is text ({_KINDS_HELP}), not {type(text).__name__}")
        text = text.strip()
        kind, _, rest = text.partition(":")
        kind = kind.lower()
        if kind not in SELECTORS:
            raise ForgetSpecError(f"bad forget spec {text!r}: unknown kind {kind!r}; {_KINDS_HELP}")
        shown = f"{kind}:{rest}"  # how the messages below name the spec
        if kind == "random":
            parts = rest.split(":") if rest else []
            if len(parts) != 1:
                raise ForgetSpecError(f"bad forget spec {shown!r}: expected random:F with F in (0,1)")
            return cls(kind, (repr(_fraction(parts[0], shown, allow_one=False)),))
        if kind == "class":
            parts = rest.split(":") if rest else []
            if len(parts) != 1 or not parts[0].strip():
                raise ForgetSpecError(f"bad forget spec {shown!r}: expected class:C")
            return cls(kind, (parts[0].strip().lower(),))
        if kind == "classes":
            head, sep, tail = rest.rpartition(":")
            head = head if sep else rest
            if not head.strip():
                raise ForgetSpecError(f"bad forget spec {shown!r}: expected classes:C1,C2,...[:F]")
            tokens = ",".join(c.strip().lower() for c in head.split(","))
            if not sep:
                return cls(kind, (tokens,))
            return cls(kind, (tokens, repr(_fraction(tail, shown, allow_one=True))))
        if kind == "indices":
            return cls(kind, (rest,))  # a path may contain ':'; kept as given
        if kind == "overfit":
            if any(
                a.strip() for a in rest.split(":")
            ):  # overfit:0.1 would otherwise be taken as plain overfit, the argument dropped
                raise ForgetSpecError(
                    f"bad forget spec {shown!r}: overfit takes no argument (the overfitting metric and Otsu's "
                    "threshold choose the samples)"
                )
            return cls(kind)
        return cls(kind, tuple(rest.split(":")) if rest else ())  # a registered kind: its selector checks

    def __str__(self) -> str:
        return ":".join((self.kind, *self.args))

    # ------------------------------------------------------------------------------------------ properties
    @property
    def family(self) -> str:
        """The kind of request, as tuned files and policies are keyed: "class" for class:C and classes:... (whole
        classes or a fraction of some), else the kind ("random", "indices", "overfit")."""
        return "class" if self.kind in ("class", "classes") else self.kind

    @property
    def whole_classes(self) -> bool:
        """Whether the spec removes whole classes (class:C, or classes:C1,C2 without a fraction)."""
        return self.kind == "class" or (self.kind == "classes" and len(self.args) == 1)

    @property
    def classes(self) -> tuple[str, ...]:
        """The classes named (indices or names, as written; resolve with :meth:`class_indices`); () for a spec
        that names none."""
        return tuple(self.args[0].split(",")) if self.kind in ("class", "classes") else ()

    @property
    def fraction(self) -> float | None:
        """random:F's F, classes:...:F's F; None where the spec has none (whole classes, indices, overfit)."""
        if self.kind == "random" or (self.kind == "classes" and len(self.args) == 2):
            return float(self.args[-1])
        return None

    @property
    def path(self) -> str | None:
        """indices:FILE's file; None for the other kinds."""
        return self.args[0] if self.kind == "indices" else None

    # ------------------------------------------------------------------------------- against the dataset
    def class_indices(self, num_classes: int, class_names: Sequence[str] | None = None) -> list[int | None]:
        """The named classes as indices, checked against a dataset of ``num_classes`` (names against
        ``class_names``): a number out of range, an unknown name, a class listed twice raise ForgetSpecError. Where
        ``class_names`` is None (not known yet, e.g. from a checkpoint's metadata) a name is not resolved: None."""
        names = [c.lower() for c in class_names] if class_names is not None else None
        out: list[int | None] = []
        for raw in self.classes:
            if names is not None and raw in names:
                out.append(names.index(raw))
                continue
            try:
                c = int(raw)
            except ValueError:
                if names is None:
                    out.append(None)
                    continue
                raise ForgetSpecError(f"bad forget spec {str(self)!r}: unknown class {raw!r}") from None
            if not 0 <= c < num_classes:
                raise ForgetSpecError(f"bad forget spec {str(self)!r}: class {c} is outside 0..{num_classes - 1}")
            out.append(c)
        known = [c for c in out if c is not None]
        if len(set(known)) != len(known):
            raise ForgetSpecError(f"bad forget spec {str(self)!r}: a class is listed twice")
        return out

    def read_indices(self) -> torch.Tensor:
        """indices:FILE's positions, read and checked as a file (range and repeats: :func:`resolve_forget`)."""
        if self.kind != "indices":
            raise ForgetSpecError(f"forget spec {self} names no index file")
        return read_index_file(self.path or "")


def as_forget_spec(spec: "str | ForgetSpec") -> ForgetSpec:
    """``spec`` itself where it is already parsed; parsed (:meth:`ForgetSpec.parse`) where it is text: for the
    library functions that are an edge (a caller holding the text from a config or a command line)."""
    return spec if isinstance(spec, ForgetSpec) else ForgetSpec.parse(spec)


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
    spec: ForgetSpec  # the request's spec, as parsed once
    forget: torch.Tensor  # sorted int64 positions in the training set
    retain: torch.Tensor  # sorted int64, the exact complement

    def summary(self) -> dict[str, Any]:
        return {"spec": str(self.spec), "forget": int(len(self.forget)), "retain": int(len(self.retain))}


Selector = Callable[[ForgetSpec, ForgetContext], torch.Tensor]
SELECTORS: Registry[Selector] = Registry("forget spec kind")


def resolve_forget(spec: ForgetSpec, ctx: ForgetContext) -> ForgetSplit:
    """Turn a parsed spec into sorted forget/retain index tensors over ``ctx.labels``; the checks of the selected
    indices against the training set (none selected, an index twice, out of range, all of them) are made here."""
    if not isinstance(spec, ForgetSpec):  # text is parsed where it enters, once: ForgetSpec.parse
        raise TypeError(f"resolve_forget takes a ForgetSpec (ForgetSpec.parse(text)), not {type(spec).__name__}")
    parsed = spec
    n = int(ctx.labels.shape[0])
    forget = SELECTORS.get(parsed.kind)(parsed, ctx)
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
    return ForgetSplit(parsed, forget, torch.nonzero(mask).flatten())


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
def _select_random(spec: ForgetSpec, ctx: ForgetContext) -> torch.Tensor:
    n = len(ctx.labels)
    k = int(round(spec.fraction * n))
    if k < 1:
        raise ForgetSpecError(f"forget spec {str(spec)!r} selects no sample of {n}")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(ctx.seed))
    return perm[:k]


@SELECTORS.register("class")
def _select_class(spec: ForgetSpec, ctx: ForgetContext) -> torch.Tensor:
    (c,) = spec.class_indices(ctx.num_classes, ctx.class_names)
    return torch.nonzero(ctx.labels.cpu() == c).flatten()


@SELECTORS.register("classes")
def _select_classes(spec: ForgetSpec, ctx: ForgetContext) -> torch.Tensor:
    classes = spec.class_indices(ctx.num_classes, ctx.class_names)
    f = spec.fraction if spec.fraction is not None else 1.0
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
def _select_indices(spec: ForgetSpec, ctx: ForgetContext) -> torch.Tensor:
    return spec.read_indices()


@SELECTORS.register("overfit")
def _select_overfit(spec: ForgetSpec, ctx: ForgetContext) -> torch.Tensor:
    """The samples DC-U's overfitting metric calls memorised: O(x) <= Otsu's threshold. Needs
    ``ctx.extra['model']`` and ``ctx.extra['images']``."""
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
