"""Forget specs: one parser for every command, one object for every stage.

``random:F``            a fraction F in (0,1) of the (capped) training set, uniformly at random
``class:C``             every image of class C (an index or a class name)
``classes:C1,C2[:F]``   a fraction F in (0,1] of each listed class (F omitted = the whole classes)
``indices:FILE``        training-set positions, text (one per line, '#' comments) or .npy
``overfit``             the samples the overfitting metric flags (Otsu threshold); provided by the attacks stage

Correction requests (the samples stay; what is wrong about them is corrected, see :class:`Correction`):

``labels:FILE``                      new labels: text lines ``index,label`` ('#' comments; a label is a class index
                                     or name) or a .npy integer array of shape [k, 2]
``features:EDIT[:fill=V]:FILE``      the same pixels of the images at FILE's positions (an index file as for
                                     ``indices``) replaced: EDIT is ``patch=ROW,COL,HEIGHT,WIDTH`` (that rectangle
                                     in every channel), ``channel=C`` (a whole channel) or ``mask=MASK.npy`` (a
                                     bool array [C,H,W] or [H,W]: True = replaced; or a float array: NaN = kept,
                                     a value in [0,1] = the new pixel value). ``fill`` (default 0: the feature is
                                     removed, as in the reference) is the new value in [0,1] of a patch, a channel
                                     or a bool mask's pixels.

A correction request's affected samples play the role of the forget set (``ForgetSplit.forget``), the rest is its
retain set, and the corrected versions travel with the split (``ForgetSplit.correction``).

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

_KINDS_HELP = (
    "use random:F, class:C, classes:C1,C2[:F], indices:FILE, overfit, labels:FILE or features:EDIT[:fill=V]:FILE"
)
CORRECTION_KINDS = ("labels", "features")  # requests that correct samples instead of removing them
FEATURE_EDITS = ("patch", "channel", "mask")


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
        if kind == "labels":
            if not rest.strip():
                raise ForgetSpecError(f"bad forget spec {shown!r}: expected labels:FILE (lines index,label)")
            return cls(kind, (rest,))
        if kind == "features":
            return cls(kind, _parse_features(rest, shown))
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
    def is_correction(self) -> bool:
        """Whether the request corrects samples (labels:FILE, features:...) instead of removing them."""
        return self.kind in CORRECTION_KINDS

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

    def read_files(self) -> None:
        """Read and check, as files, whatever files the spec names (an index file, a label file, a mask): for the
        façades that validate a request before any work; what needs the dataset is checked by
        :func:`resolve_forget`."""
        if self.kind == "indices":
            self.read_indices()
        elif self.kind == "labels":
            read_label_file(self.args[0])
        elif self.kind == "features":
            read_index_file(self.args[2])
            if self.args[0].startswith("mask="):
                read_mask_file(self.args[0][5:])


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
    image_shape: tuple[int, ...] | None = None  # C, H, W: what a features:... request's edit is checked against


@dataclass(frozen=True)
class Correction:
    """What a correction request changes about its affected samples (``ForgetSplit.forget``, in that order): new
    ``labels`` (int64 [k]) for labels:FILE; for features:..., the pixels ``mask`` (bool [C,H,W]) replaced by
    ``values`` (float [C,H,W] in [0,1]). :meth:`apply` gives the corrected samples."""

    kind: str  # "labels" or "features"
    labels: torch.Tensor | None = None
    mask: torch.Tensor | None = None
    values: torch.Tensor | None = None

    def apply(self, images: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The corrected versions of the affected samples ``images`` (uint8 or float [0,1], [k,C,H,W]) and
        ``labels`` ([k]): float [0,1] images and int64 labels."""
        x = images.float() / 255.0 if images.dtype == torch.uint8 else images.float()
        y = labels
        if self.labels is not None:
            y = self.labels.to(labels.device)
        if self.mask is not None:
            m, v = self.mask.to(x.device), self.values.to(x.device, x.dtype)
            x = torch.where(m, v, x)
        return x, y

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": self.kind}
        if self.mask is not None:
            out["pixels_changed_per_image"] = int(self.mask.sum())
        return out


@dataclass(frozen=True)
class ForgetSplit:
    spec: ForgetSpec  # the request's spec, as parsed once
    forget: torch.Tensor  # sorted int64 positions in the training set
    retain: torch.Tensor  # sorted int64, the exact complement
    correction: Correction | None = None  # a correction request's corrected versions of ``forget``

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
        twice = int(forget[1:][forget[1:] == forget[:-1]][0])
        if parsed.is_correction:
            raise ForgetSpecError(f"forget spec {parsed} lists index {twice} more than once")
        raise ForgetSpecError(f"forget spec {parsed} lists an index more than once")
    if int(forget[0]) < 0 or int(forget[-1]) >= n:
        bad = int(forget[0]) if int(forget[0]) < 0 else int(forget[-1])
        raise ForgetSpecError(f"forget spec {parsed}: index {bad} is out of range for a training set of {n}")
    if len(forget) >= n:
        raise ForgetSpecError(f"forget spec {parsed} selects the whole training set; the retain set would be empty")
    mask = torch.ones(n, dtype=torch.bool)
    mask[forget] = False
    correction = _correction(parsed, ctx, forget) if parsed.is_correction else None
    return ForgetSplit(parsed, forget, torch.nonzero(mask).flatten(), correction)


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


# ------------------------------------------------------------------------------------- correction requests
def _parse_features(rest: str, shown: str) -> tuple[str, str, str]:
    """features:EDIT[:fill=V]:FILE -> (EDIT normalised, fill as a float's repr, FILE as given)."""
    usage = "expected features:EDIT[:fill=V]:FILE with EDIT patch=ROW,COL,HEIGHT,WIDTH, channel=C or mask=MASK.npy"
    edit, sep, tail = rest.partition(":")
    edit = edit.strip().lower() if not edit.strip().lower().startswith("mask=") else "mask=" + edit.strip()[5:]
    if not sep or not tail.strip():
        raise ForgetSpecError(f"bad forget spec {shown!r}: {usage}")
    name, eq, value = edit.partition("=")
    if name not in FEATURE_EDITS or not eq or not value:
        raise ForgetSpecError(f"bad forget spec {shown!r}: unknown feature edit {edit!r}; {usage}")
    if name == "patch":
        try:
            nums = [int(v) for v in value.split(",")]
        except ValueError:
            raise ForgetSpecError(f"bad forget spec {shown!r}: patch={value} is not four integers") from None
        if len(nums) != 4 or min(nums[:2]) < 0 or min(nums[2:]) < 1:
            raise ForgetSpecError(
                f"bad forget spec {shown!r}: patch=ROW,COL,HEIGHT,WIDTH needs ROW, COL >= 0 and HEIGHT, WIDTH >= 1"
            )
        edit = "patch=" + ",".join(map(str, nums))
    elif name == "channel":
        try:
            c = int(value)
        except ValueError:
            raise ForgetSpecError(f"bad forget spec {shown!r}: channel={value} is not an integer") from None
        if c < 0:
            raise ForgetSpecError(f"bad forget spec {shown!r}: channel {c} is negative")
        edit = f"channel={c}"
    fill = 0.0
    if tail.startswith("fill="):
        raw, sep2, tail = tail[5:].partition(":")
        if not sep2 or not tail.strip():
            raise ForgetSpecError(f"bad forget spec {shown!r}: {usage}")
        try:
            fill = float(raw)
        except ValueError:
            raise ForgetSpecError(f"bad forget spec {shown!r}: fill={raw} is not a number") from None
        if not 0.0 <= fill <= 1.0:
            raise ForgetSpecError(f"bad forget spec {shown!r}: fill={raw} is outside [0, 1] (pixels are in [0,1])")
    return edit, f"fill={fill!r}", tail


def _regular_file(path: str, what: str) -> Path:
    p = Path(path)
    if not path or not p.exists():
        raise ForgetSpecError(f"{what} {path!r} does not exist")
    if not p.is_file():
        raise ForgetSpecError(f"{what} {path!r} is not a regular file")
    return p


def read_label_file(path: str) -> tuple[torch.Tensor, list[str]]:
    """labels:FILE's pairs, read and checked as a file: (positions int64 [k], labels as written). A text file has
    one ``index,label`` per line ('#' comments; the label a class index or name); a .npy file an integer [k, 2]
    array. Range, class and repeats are checked against the dataset by :func:`resolve_forget`."""
    p = _regular_file(path, "label file")
    if p.suffix == ".npy":
        try:
            arr = np.load(p, allow_pickle=False)
        except (ValueError, OSError) as err:
            raise ForgetSpecError(f"label file {p} is not a valid .npy array: {err}") from None
        if arr.ndim != 2 or arr.shape[1] != 2 or not np.issubdtype(arr.dtype, np.integer):
            raise ForgetSpecError(f"label file {p} must hold an integer [k, 2] array, got {arr.dtype} {arr.shape}")
        return torch.from_numpy(arr[:, 0].astype(np.int64)), [str(int(v)) for v in arr[:, 1]]
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        why = "not UTF-8 text (a binary file?)" if isinstance(err, UnicodeDecodeError) else (err.strerror or str(err))
        raise ForgetSpecError(f"label file {p} cannot be read: {why}") from None
    idx, labels = [], []
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = [t.strip() for t in line.split(",")]
        if len(parts) != 2 or not parts[1]:
            raise ForgetSpecError(f"label file {p}, line {lineno}: {line!r} is not 'index,label'")
        try:
            i = int(parts[0])
        except ValueError:
            raise ForgetSpecError(f"label file {p}, line {lineno}: index {parts[0]!r} is not an integer") from None
        if not -(2**63) <= i < 2**63:
            raise ForgetSpecError(f"label file {p}, line {lineno}: index {parts[0]} is out of range")
        idx.append(i)
        labels.append(parts[1].lower())
    return torch.tensor(idx, dtype=torch.long), labels


def read_mask_file(path: str) -> torch.Tensor:
    """A features:mask=FILE's array: bool (True = replaced by the fill value) or float (NaN = kept, else the new
    value in [0,1]), shape [C,H,W] or [H,W] (checked against the images by :func:`resolve_forget`)."""
    p = _regular_file(path, "feature mask file")
    if p.suffix != ".npy":
        raise ForgetSpecError(f"feature mask file {p} must be a .npy array (bool, or float with NaN = kept)")
    try:
        arr = np.load(p, allow_pickle=False)
    except (ValueError, OSError) as err:
        raise ForgetSpecError(f"feature mask file {p} is not a valid .npy array: {err}") from None
    if arr.ndim not in (2, 3) or not (arr.dtype == np.bool_ or np.issubdtype(arr.dtype, np.floating)):
        raise ForgetSpecError(
            f"feature mask file {p} must hold a bool or float array of shape [C,H,W] or [H,W], got {arr.dtype} "
            f"{arr.shape}"
        )
    if arr.dtype != np.bool_:
        kept = np.isnan(arr)
        vals = arr[~kept]
        if vals.size and (not np.isfinite(vals).all() or vals.min() < 0 or vals.max() > 1):
            raise ForgetSpecError(f"feature mask file {p}: new pixel values must be in [0, 1] (NaN = kept)")
    return torch.from_numpy(arr.copy())


@SELECTORS.register("labels")
def _select_labels(spec: ForgetSpec, ctx: ForgetContext) -> torch.Tensor:
    idx, _ = read_label_file(spec.args[0])
    return idx


@SELECTORS.register("features")
def _select_features(spec: ForgetSpec, ctx: ForgetContext) -> torch.Tensor:
    return read_index_file(spec.args[2])


def _correction(spec: ForgetSpec, ctx: ForgetContext, forget: torch.Tensor) -> Correction:
    """The corrected versions of ``forget`` (sorted, checked for range and repeats), checked against the dataset:
    a label in its classes, an edit that fits its images."""
    if spec.kind == "labels":
        idx, raw = read_label_file(spec.args[0])
        names = [c.lower() for c in ctx.class_names]
        new = []
        for i, tok in zip(idx.tolist(), raw):
            if tok in names:
                new.append(names.index(tok))
                continue
            try:
                c = int(tok)
            except ValueError:
                raise ForgetSpecError(f"label file {spec.args[0]}: index {i}: unknown class {tok!r}") from None
            if not 0 <= c < ctx.num_classes:
                raise ForgetSpecError(
                    f"label file {spec.args[0]}: index {i}: label {c} is outside the classes 0..{ctx.num_classes - 1}"
                )
            new.append(c)
        order = torch.argsort(idx)
        return Correction("labels", labels=torch.tensor(new, dtype=torch.long)[order])
    edit, fill_tok, _ = spec.args
    fill = float(fill_tok[5:])
    if ctx.image_shape is None:
        raise ForgetSpecError(f"forget spec {spec}: the image shape is not known here (a features request needs it)")
    c, h, w = (int(v) for v in ctx.image_shape)
    name, _, value = edit.partition("=")
    mask = torch.zeros(c, h, w, dtype=torch.bool)
    values = torch.full((c, h, w), fill)
    if name == "patch":
        r0, c0, ph, pw = (int(v) for v in value.split(","))
        if r0 + ph > h or c0 + pw > w:
            raise ForgetSpecError(
                f"forget spec {spec}: patch rows {r0}..{r0 + ph - 1}, columns {c0}..{c0 + pw - 1} do not fit "
                f"images of {h}x{w}"
            )
        mask[:, r0 : r0 + ph, c0 : c0 + pw] = True
    elif name == "channel":
        ch = int(value)
        if ch >= c:
            raise ForgetSpecError(f"forget spec {spec}: channel {ch} is outside the images' channels 0..{c - 1}")
        mask[ch] = True
    else:
        arr = read_mask_file(value)
        shape = tuple(arr.shape)
        if shape not in ((c, h, w), (h, w), (1, h, w)):
            raise ForgetSpecError(
                f"feature mask file {value}: shape {list(shape)} does not fit images of shape {[c, h, w]} "
                f"(give [{c},{h},{w}] or [{h},{w}])"
            )
        arr = arr.reshape((-1, h, w)).expand(c, h, w)
        if arr.dtype == torch.bool:
            mask = arr.clone()
        else:
            mask = ~torch.isnan(arr)
            values = torch.where(mask, arr.float(), values)
    if not bool(mask.any()):
        raise ForgetSpecError(f"forget spec {spec}: the edit changes no pixel")
    return Correction("features", mask=mask, values=values)
