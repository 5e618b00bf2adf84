"""What an unlearning method receives, and the method registry."""

from __future__ import annotations

import copy
import hashlib
import json
from dataclasses import dataclass, field, replace
from typing import Any, Callable

import torch

from dcforget.condensed_store import CondensedSet
from dcforget.datasets import Data
from dcforget.errors import DcForgetError
from dcforget.forget import ForgetSplit
from dcforget.models import Classifier
from dcforget.registry import Registry
from dcforget.runtime import seeded
from dcforget.space import Space, method_space
from dcforget.train import TrainConfig, as_unit

from ..audit import audit_served, require_clean
from ..reduced import ReducedSet


class ZeroShotAccessError(DcForgetError):
    """A method registered as zero-shot asked for retain data."""


def zero_shot_view(data: Data, split: ForgetSplit, auxiliary: bool = False) -> tuple[Data, ForgetSplit]:
    """What a zero-shot method is given: a training set that IS the forget set (in the split's order, so its
    positions are 0..n-1) and an empty test split; the validation split (held out from training: images the model
    never saw) only for a method that declares ``auxiliary``; retain data is not there to be read."""
    idx = split.forget.to(data.train.labels.device)
    empty = data.test.subset(torch.zeros(0, dtype=torch.long))
    keep = auxiliary and data.val is not None
    view = replace(
        data,
        train=data.train.subset(idx),
        test=empty,
        val=data.val if keep else None,
        val_source_indices=data.val_source_indices if keep else None,
        source_indices=data.source_indices[split.forget.cpu()],
        _fingerprint=None,
    )
    n = len(split.forget)
    return view, ForgetSplit(split.spec, torch.arange(n), torch.zeros(0, dtype=torch.long))


@dataclass
class UnlearnContext:
    original: Classifier  # the model before this request (never modified; methods work on copies)
    data: Data  # the (capped) training set the original was trained on, and the test split, on the device
    split: ForgetSplit  # cumulative forget set and its exact complement
    device: torch.device
    seed: int
    options: dict[str, Any]
    quiet: bool = False
    condensed: CondensedSet | None = None
    reduced: ReducedSet | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # what a method reports back (e.g. epochs run)
    artefacts: dict[str, torch.Tensor] = field(default_factory=dict)  # tensors stored in the checkpoint
    served_audits: list[dict[str, Any]] = field(default_factory=list)  # unlearn.audit of each reduced_tensors call
    zero_shot: bool = False  # the method declared zero-shot: ``data`` holds the forget set only (see zero_shot_view)
    retain_source: str = "full"  # what ``retain()`` serves: the full retain set, or "reduced" (see ``retain``)
    previous: torch.Tensor | None = None  # positions earlier requests already forgot (part of split.forget)

    def new_forget_count(self) -> int:
        """How many images THIS request adds to what earlier requests forgot (a successive request's split holds
        the cumulative forget set)."""
        return len(self.split.forget) - (0 if self.previous is None else len(self.previous))

    def _no_retain(self, what: str) -> None:
        if self.zero_shot:
            raise ZeroShotAccessError(
                f"a zero-shot method may not use {what}: it sees the forget set (and the model) only"
            )

    def copy_original(self) -> Classifier:
        return copy.deepcopy(self.original).to(self.device)

    def fresh_model(self, seed: int | None = None) -> Classifier:
        """A new model of the original's architecture, initialised from ``seed`` (default: the request's)."""
        from dcforget.models import model_from_config

        with seeded(self.seed if seed is None else seed):
            return model_from_config(self.original.config).to(self.device)

    def derived_seed(self, purpose: str) -> int:
        """A seed for one use within the request (``purpose`` names it), drawn from the request's seed but not equal
        to it: the request's seed is often the original's, so ``fresh_model()`` under it rebuilds the original's own
        initial weights, which a re-initialisation must not reuse."""
        digest = hashlib.sha256(f"{self.seed}:{purpose}".encode()).digest()
        return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF

    def retain(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The retain set the method trains on: every method reads it here, so the request chooses what it is.

        ``retain_source="full"``: the retain images themselves (uint8). ``"reduced"``: the audited reduced set
        (clean condensed images + the real retain images of touched buckets, :meth:`reduced_tensors`), as float
        [0,1] images. A condensed image stands for the retain members of its bucket, so the set is *resampled by
        weight*: as many draws as the reduced set has images, with replacement, each image drawn with probability
        proportional to its weight (a real image 1, a condensed one its bucket's retain members), from a seed
        derived from the request's. A mean loss over the draw is then an unbiased estimate of the weighted mean
        over the reduced set, i.e. of the retain set's mean loss with each bucket's members replaced by their
        condensed image; methods need no code of their own for it. The draw is the same on every call."""
        self._no_retain("the retain set")
        if self.retain_source == "full":
            idx = self.split.retain.to(self.data.train.labels.device)
            self.extra.setdefault("retain_served", {"source": "full", "images": int(len(idx))})
            return self.data.train.images[idx], self.data.train.labels[idx]
        x, y, w = self.reduced_tensors()  # audited (unlearn.audit) on exactly these rows
        gen = torch.Generator().manual_seed(self.derived_seed("retain-resample"))
        draw = torch.multinomial(w.cpu().double(), len(w), replacement=True, generator=gen).to(x.device)
        n_real = len(self.reduced.real_indices)
        self.extra["retain_served"] = {
            "source": "reduced",
            "images": int(len(w)),
            "real": n_real,
            "condensed": int(len(w) - n_real),
            "stands_for": int(round(float(w.sum()))),
            "estimator": "resampled by weight (with replacement)",
            "condensed_share_of_draws": float((draw >= n_real).float().mean()),
        }
        return x[draw], y[draw]

    def forget(self) -> tuple[torch.Tensor, torch.Tensor]:
        idx = self.split.forget.to(self.data.train.labels.device)
        return self.data.train.images[idx], self.data.train.labels[idx]

    def reduced_tensors(self) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """The reduced retain set as float [0,1] images, labels, and per-sample weights (a condensed image counts
        for the retain members of its bucket, a member shared by several served buckets -- DM's and herding's
        whole-class buckets -- split evenly between them; a real image counts once).

        The exact training positions and condensed rows gathered here are first checked by the independent audit
        (unlearn.audit) against the request's split; a leak raises ReducedSetLeakError and nothing is served."""
        self._no_retain("the reduced retain set")
        r, cs = self.reduced, self.condensed
        dev = self.device
        real_idx = r.real_indices.to(self.data.train.labels.device)
        rows = r.condensed_rows
        self.served_audits.append(require_clean(audit_served(self.split, cs, self.data.train.labels, real_idx, rows)))
        images = torch.cat([as_unit(self.data.train.images[real_idx]).to(dev), cs.images[rows].to(dev)])
        labels = torch.cat([self.data.train.labels[real_idx].to(dev), cs.labels[rows].to(dev)])
        owner = torch.repeat_interleave(torch.arange(len(cs)), cs.bucket_sizes())
        served = torch.zeros(len(cs), dtype=torch.bool)
        served[rows.cpu()] = True
        members = cs.bucket_indices[served[owner]]
        share = torch.bincount(members, minlength=cs.train_size).float()
        per_row = torch.zeros(len(cs)).index_add_(0, owner[served[owner]], 1.0 / share[members])
        weights = torch.cat([torch.ones(len(real_idx)), per_row[rows.cpu()]]).to(dev)
        return images, labels, weights

    def forgotten_classes(self) -> torch.Tensor:
        """Bool [classes]: True for a class with no retain sample left (class forgetting)."""
        self._no_retain("the retain set's labels")
        labels = self.data.train.labels
        left = torch.bincount(labels[self.split.retain.to(labels.device)].cpu(), minlength=self.data.info.num_classes)
        return left == 0

    def remembrance(self, keep_forgotten_classes: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
        """The remembrance set stored by ``unlearn offline``. Classes with no retain image left (class forgetting)
        are dropped unless ``keep_forgotten_classes`` (the reference keeps them, and so re-teaches the class)."""
        self._no_retain("the remembrance set")
        if "remembrance_images" not in self.artefacts:
            from dcforget.errors import ConfigError

            raise ConfigError(
                "this method needs a checkpoint made by `unlearn offline` (it carries the remembrance set)"
            )
        x, y = self.artefacts["remembrance_images"], self.artefacts["remembrance_labels"]
        if not keep_forgotten_classes:
            keep = ~self.forgotten_classes()[y.cpu()]
            x, y = x[keep], y[keep]
        return x.to(self.device), y.to(self.device)

    def train_config(self, **overrides: Any) -> TrainConfig:
        keys = {f for f in TrainConfig.__dataclass_fields__}
        values = {k: v for k, v in self.options.items() if k in keys}
        values.update(overrides)
        return TrainConfig.from_dict(values)


@dataclass(frozen=True)
class Method:
    """A registered method: what it runs, its defaults, and what it needs and does (the runner, the request and
    ``unlearn methods`` read these instead of lists of method names)."""

    run: Callable[[UnlearnContext], Classifier]
    defaults: dict[str, Any]
    summary: str
    needs_condensed: bool = False  # reads a condensed file (--from-condensed): its reduced retain set
    needs_offline: bool = False  # starts from DC-U's offline phase (`unlearn offline`): its remembrance set
    trains_fresh: bool = False  # trains a freshly initialised network (the rest start from the original)
    zero_shot: bool = False  # uses no retain data, only the forget set and the model (enforced by the request)
    validate: Callable[[dict[str, Any]], None] | None = None  # checks the options a user gave, together
    space: Space = field(default_factory=dict)  # what a hyperparameter search varies (dcforget.space)
    auxiliary: bool = (
        False  # zero-shot, but also reads held-out images (the validation split) that were never trained on
    )
    class_only: bool = False  # defined for forgetting whole classes only (the request refuses other forget specs)
    # reads the validation split inside the method (an ascent target, an attack's non-members, a rewind): True, or
    # a function of the options saying whether these options make it read it. Such a method's studies serve it the
    # method half of the validation split and choose on the selection half (dcforget.datasets.validation_halves)
    reads_validation: bool | Callable[[dict[str, Any]], bool] = False
    # where the method and its registered defaults come from: "Author et al., venue; code repository path" (the
    # defaults are the reference's; settings of our own live in tuned files, configs/tuned/)
    reference: str = ""
    # answers correction requests (labels:FILE, features:...: the samples stay, corrected) instead of removing samples;
    # the request refuses a correction request to any other method, and a removal request to this one
    corrects: bool = False
    # the points of its space where a search starts (its first trials), each over the registered defaults: the
    # registered point itself unless the method names others (e.g. one per rule of a searched switch)
    starts: tuple[dict[str, Any], ...] = ({},)

    @property
    def defaults_digest(self) -> str:
        """A digest of the registered defaults. Cached results of the method (a tuning study's trials and jobs, a
        U-LiRA method job) are keyed with it: they were scored under the defaults they ran with, so a changed
        default must not read them back."""
        what = json.dumps(self.defaults, sort_keys=True, default=str)
        return hashlib.sha256(what.encode()).hexdigest()[:12]

    @property
    def reads_retain(self) -> bool:
        """Whether the method trains on the retain set through ``UnlearnContext.retain`` (so ``--retain reduced``
        applies to it): every method but the zero-shot ones and those that build their own set from a condensed
        file or DC-U's offline phase (they read the reduced set, or the remembrance set, themselves)."""
        return not (self.zero_shot or self.needs_condensed or self.needs_offline or self.corrects)

    @property
    def capabilities(self) -> list[str]:
        return [
            name
            for name in (
                "needs_condensed",
                "needs_offline",
                "trains_fresh",
                "zero_shot",
                "auxiliary",
                "class_only",
                "reads_validation",
                "reads_retain",
                "corrects",
            )
            if getattr(self, name)
        ]

    def reads_validation_with(self, options: dict[str, Any] | None = None) -> bool:
        """Whether the method, run with ``options`` (over its defaults), reads the validation split."""
        if callable(self.reads_validation):
            return bool(self.reads_validation({**self.defaults, **(options or {})}))
        return bool(self.reads_validation)


METHODS: Registry[Method] = Registry("unlearning method")


def register(
    name: str,
    *,
    summary: str,
    needs_condensed: bool = False,
    needs_offline: bool = False,
    trains_fresh: bool = False,
    zero_shot: bool = False,
    auxiliary: bool = False,
    class_only: bool = False,
    validate: Callable[[dict[str, Any]], None] | None = None,
    space: Space | None = None,
    shared_space: bool = True,
    reads_validation: bool | Callable[[dict[str, Any]], bool] = False,
    reference: str = "",
    corrects: bool = False,
    starts: tuple[dict[str, Any], ...] = ({},),
    **defaults: Any,
):
    """``validate``: called with the options a user gave (before defaults fill in the rest), for combinations the
        types alone cannot refuse. ``space``: the method's own search dimensions; with ``shared_space`` the shared ones
        (dcforget.space.SHARED: lr, weight decay, momentum, batch size, epochs) join for the options the method has.
        ``reads_validation``: the method reads ``ctx.data.val`` (True, or a function of its options); a zero-shot method
        that does must also declare ``auxiliary`` (its view holds no validation split otherwise). ``reference``: the source
    of the method and of its registered defaults (paper, and the authors' code where the paper is silent).
    ``corrects``: the method answers correction requests (labels:FILE, features:...) and only those. ``starts``: where
    a search of the method starts (its first trials), each point over the registered defaults; only the method's own
    options, and at least one point."""
    full_space = method_space(defaults, space, shared_space)
    if not starts or any(set(p) - set(defaults) for p in starts):
        raise ValueError(f"method {name!r}: starts must be one or more points over the method's own options")

    def deco(fn: Callable[[UnlearnContext], Classifier]) -> Callable[[UnlearnContext], Classifier]:
        if auxiliary and not zero_shot:
            raise ValueError(f"method {name!r}: auxiliary data is a zero-shot method's (the others see all data)")
        if reads_validation and zero_shot and not auxiliary:
            raise ValueError(
                f"method {name!r}: a zero-shot method that reads the validation split must declare auxiliary=True"
            )
        METHODS.register(name)(
            Method(
                fn,
                defaults,
                summary,
                needs_condensed,
                needs_offline,
                trains_fresh,
                zero_shot,
                validate,
                full_space,
                auxiliary,
                class_only,
                reads_validation,
                reference,
                corrects,
                tuple(dict(p) for p in starts),
            )
        )
        return fn

    return deco
