"""Tuned hyperparameters: the files `experiments tune` writes (configs/tuned/<preset>/<dataset>-<model>/<method>.json),
found by dataset and architecture and used by an unlearning request unless the user turns them off.

A file holds the chosen trial's options with their provenance (the study's setup, trials, objectives on the
validation split, git hash). Options the user gives override the tuned ones; the method's registered defaults fill
in the rest. When several presets tuned the same method for the same dataset and model, the one whose setup is
closest to the real thing wins: ``paper`` (full data), then ``cpu``, then any other preset; ``smoke`` files (tuned on
generated data, to test the pipeline) are used only where asked for by name (``preset="smoke"``). Options tuned
for one kind of forgetting (random samples, whole classes, given indices) are not used for another: a request
matches a file on method, dataset, model and the kind of its forget spec (the file's setup says what it was tuned
on).

The setting a file was tuned on (``tuned_on``: dataset, model, the originals' training-set size and epochs, the kind
of request; `experiments tune` writes it) must also fit the checkpoint a request unlearns from: options tuned on a
250-per-class original trained 30 epochs can be destructive on a 500- or 5000-per-class one (issue #32).
:func:`choose_tuned` uses a file only when :func:`setting_mismatch` finds nothing (tolerances: ``TRAIN_SIZE_FACTOR``,
``EPOCHS_FACTOR``); a file that records no setting, or a checkpoint that does not record its own, matches nothing.
The experiments, which name their tuned preset explicitly (and reuse CIFAR-10's options on other datasets on
purpose), keep :func:`find_tuned`'s lookup by dataset, model and kind."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcforget.config import config_dirs, shown_path
from dcforget.errors import ConfigError
from dcforget.forget import ForgetSpec

PRESET_ORDER = {"paper": 0, "cpu": 1}  # any other preset name ranks 2

TRAIN_SIZE_FACTOR = 1.5
"""How far apart (as a ratio, either way) the original's training-set size may be from the tuned one's. Steps per
epoch, the size of the forget set and how much the original memorises all scale with it, and a factor of 2 already
turned tuned options destructive in issue #32 (250 -> 500 per class: lfssd class RA 51%, unsir class RA 24%, jit,
scrub and salun random RA 29-43%); 1.5 keeps it below that while letting a different validation fraction or a
rounded cap (e.g. 250 vs 300 per class) through."""

EPOCHS_FACTOR = 1.5
"""How far apart (ratio, either way) the original's training epochs may be from the tuned one's: the epochs decide
how far the original fits (memorises) its training set, which is what the forgetting options are sized against;
issue #32's 15-epoch checkpoint against files tuned at 30 is a factor of 2, outside."""

SETTING_FIELDS = ("dataset", "model", "forget_kind", "train_size", "epochs")


@dataclass(frozen=True)
class Tuned:
    path: Path
    method: str
    dataset: str
    model: str
    preset: str
    options: dict[str, Any]
    summary: dict[str, Any]  # trial, norm, trials, setup's per-class cap and forget spec: what the request reports

    @property
    def setting(self) -> "Setting | None":
        """The setting the file was tuned on (its ``tuned_on``), or None where it records none."""
        on = self.summary.get("tuned_on")
        return Setting.from_dict(on) if on else None

    @property
    def forget_kind(self) -> str | None:
        """The kind of request the file was tuned on (``ForgetSpec.family`` of the spec it records), or None where it
        records no spec (a file tuned for any kind)."""
        on = self.summary.get("forget")
        return ForgetSpec.parse(on).family if on is not None else None

    def describe(self) -> str:
        s = self.summary
        cap = f", {s['per_class']} images per class" if s.get("per_class") else ", full training set"
        on = f", forgetting {s['forget']}" if s.get("forget") else ""
        norm = s.get("norm")
        shown = f"{norm:.4f}" if isinstance(norm, (int, float)) else "not recorded"
        return (
            f"tuned options for {self.method} on {self.dataset}/{self.model} from {shown_path(self.path)} (preset "
            f"{self.preset}{cap}{on}: trial {s.get('trial')} of {s.get('trials')}, validation objective norm "
            f"{shown})"
        )


def tuned_filename(method: str, forget: ForgetSpec) -> str:
    """The tuned file's name for ``method`` tuned on ``forget``: METHOD.json for random forgetting (Deep Unlearn's
    setting), METHOD.KIND.json for the other kinds (``ForgetSpec.family``)."""
    kind = forget.family
    return f"{method}.json" if kind == "random" else f"{method}.{kind}.json"


@dataclass(frozen=True)
class Setting:
    """The setting options are tuned on or used in: the dataset (its name), the model, the originals' training-set
    size (images trained on, validation split excluded) and epochs, and the kind of request. None: not recorded."""

    dataset: str | None
    model: str | None
    train_size: int | None = None
    epochs: int | None = None
    forget_kind: str | None = None
    per_class: int | None = None  # the cap, for the message only (None: not capped, or not recorded)
    num_classes: int | None = None

    def to_dict(self) -> dict[str, Any]:
        d = {
            "dataset": self.dataset,
            "model": self.model,
            "per_class": self.per_class,
            "train_size": self.train_size,
            "num_classes": self.num_classes,
            "epochs": self.epochs,
            "forget_kind": self.forget_kind,
        }
        if self.train_size and self.num_classes:
            d["images_per_class"] = round(self.train_size / self.num_classes, 1)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Setting":
        def num(k):
            v = d.get(k)
            return int(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None

        ds = d.get("dataset")
        return cls(
            ds.split(":")[0] if isinstance(ds, str) else None,
            d.get("model"),
            num("train_size"),
            num("epochs"),
            d.get("forget_kind"),
            num("per_class"),
            num("num_classes"),
        )

    def size_text(self) -> str:
        if self.train_size is None:
            return "not recorded"
        per = f", {self.train_size / self.num_classes:.0f} per class" if self.num_classes else ""
        return f"{self.train_size} images{per}"


def checkpoint_setting(meta: Any, forget: ForgetSpec | None = None) -> Setting:
    """The setting of a checkpoint (``dcforget.checkpoint.CheckpointMeta``): dataset, architecture, training-set size
    (``train_size``, recorded by ``unlearn train`` since split metadata existed) and epochs (``train_config``); an
    unlearned or offline checkpoint carries its original's. What it does not record is None (matches no file)."""
    extra = getattr(meta, "extra", {}) or {}
    train = extra.get("train_config") if isinstance(extra.get("train_config"), dict) else {}
    size, epochs = extra.get("train_size"), train.get("epochs")
    ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0
    return Setting(
        meta.dataset.split(":")[0] if meta.dataset else None,
        meta.arch,
        size if ok(size) else None,
        epochs if ok(epochs) else None,
        forget.family if forget is not None else None,
        meta.per_class,
        meta.num_classes,
    )


def _ratio(a: int, b: int) -> float:
    return max(a, b) / min(a, b)


def setting_mismatch(tuned: Setting | None, here: Setting) -> str | None:
    """Why options tuned on ``tuned`` do not fit ``here`` (the first field that differs, both values and the
    tolerance), or None where they fit: same dataset, model and kind of request; training-set size within
    ``TRAIN_SIZE_FACTOR``; epochs within ``EPOCHS_FACTOR``. Unrecorded on either side is a mismatch."""
    if tuned is None:
        return "the file does not record the setting it was tuned on (no tuned_on; re-run `experiments tune`)"
    for name, a, b in (
        ("dataset", tuned.dataset, here.dataset),
        ("model", tuned.model, here.model),
        ("kind of request", tuned.forget_kind, here.forget_kind),
    ):
        if a is None or b is None:
            return f"{name} not recorded ({'file' if a is None else 'checkpoint'})"
        if a != b:
            return f"{name}: {a} in the file, {b} here"
    if tuned.train_size is None:
        return "training-set size not recorded in the file"
    if here.train_size is None:
        return "the checkpoint does not record its training-set size (train_size; written by an older toolkit)"
    if _ratio(tuned.train_size, here.train_size) > TRAIN_SIZE_FACTOR:
        return (
            f"training-set size: {tuned.size_text()} in the file, {here.size_text()} here (more than "
            f"{TRAIN_SIZE_FACTOR:g}x apart)"
        )
    if tuned.epochs is None:
        return "the original's epochs not recorded in the file"
    if here.epochs is None:
        return "the checkpoint does not record its training epochs (train_config)"
    if _ratio(tuned.epochs, here.epochs) > EPOCHS_FACTOR:
        return f"original's epochs: {tuned.epochs} in the file, {here.epochs} here (more than {EPOCHS_FACTOR:g}x apart)"
    return None


def ran_names(doc: dict[str, Any], where: str) -> set[str]:
    """The option names a tuned file, a policy entry or a candidate sets: its options and the defaults its study ran
    under (checked to be an object), for the caller to hold against the method's own."""
    if not isinstance(doc.get("defaults", {}), dict):
        raise ConfigError(f"{where}: defaults must be an object (the method's defaults its study ran under)")
    return set(doc["options"]) | set(doc.get("defaults", {}))


def ran_options(doc: dict[str, Any]) -> dict[str, Any]:
    """What a tuned file, a policy entry or a policy candidate runs: the method's registered defaults its study ran
    under (``defaults``; files written before they were recorded: today's), then the options it chose."""
    return {**doc.get("defaults", {}), **doc["options"]}


def read_tuned(path: str | Path, known: dict[str, Any]) -> Tuned:
    """A tuned-options file, checked: JSON (never pickle), the keys `experiments tune` writes, options the method
    has (``known``: its registered defaults); it runs the defaults its study ran under where the file records them."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"tuned options file {p} cannot be read: {err}") from None
    need = ("method", "dataset", "model", "preset", "options")
    if not isinstance(doc, dict) or any(k not in doc for k in need) or not isinstance(doc["options"], dict):
        raise ConfigError(f"tuned options file {p} is not one `experiments tune` wrote (needs {', '.join(need)})")
    unknown = sorted(ran_names(doc, f"tuned options file {p}") - set(known))
    if unknown:
        raise ConfigError(
            f"tuned options file {p} sets option(s) {', '.join(unknown)} that {doc['method']!r} does not "
            "have; re-run `experiments tune` for it"
        )
    study = doc.get("study") or {}
    summary = {
        "trial": doc.get("trial"),
        "trials": study.get("trials"),
        "norm": doc.get("norm"),
        "per_class": (doc.get("setup") or {}).get("per_class"),
        "forget": (doc.get("setup") or {}).get("forget"),
        "validation": (doc.get("setup") or {}).get("validation", "whole"),
        "git": (doc.get("meta") or {}).get("git_commit") or (doc.get("meta") or {}).get("git"),
        "tuned_on": doc.get("tuned_on") if isinstance(doc.get("tuned_on"), dict) else None,
    }
    return Tuned(p, doc["method"], doc["dataset"], doc["model"], doc["preset"], ran_options(doc), summary)


def find_tuned(
    method: str,
    dataset: str,
    model: str,
    known: dict[str, Any],
    roots: list[Path] | None = None,
    preset: str | None = None,
    forget: ForgetSpec | None = None,
) -> Tuned | None:
    """The tuned options of ``method`` for ``dataset``/``model`` (``preset``: only that preset's; ``forget``: only
    those tuned for the same kind of forgetting), or None where none were tuned."""
    dataset = dataset.split(":")[0]
    found: list[Path] = []
    for base in roots if roots is not None else config_dirs():
        for name in (f"{method}.json", f"{method}.*.json"):
            found += sorted((Path(base) / "tuned").glob(f"{preset or '*'}/{dataset}-{model}/{name}"))
    if preset is None:
        found = [p for p in found if p.parent.parent.name != "smoke"]
    tuned = []
    for path in sorted(found, key=lambda p: (PRESET_ORDER.get(p.parent.parent.name, 2), str(p))):
        t = read_tuned(path, known)
        if (t.method, t.dataset, t.model) != (method, dataset, model):
            raise ConfigError(
                f"tuned options file {path} is for {t.method} on {t.dataset}/{t.model}, not {method} "
                f"on {dataset}/{model}"
            )
        tuned.append(t)
    if forget is not None:
        tuned = [t for t in tuned if t.forget_kind in (None, forget.family)]
    return tuned[0] if tuned else None


@dataclass(frozen=True)
class TunedChoice:
    """What a request does about tuned options: the file it uses (or None) and one line saying which and why."""

    tuned: Tuned | None
    note: str | None  # why no file was used (None: none exists for this method, dataset and model, or one was used)
    forced: bool = False  # given with --options-from
    off: bool = False  # turned off with --untuned

    def record(self) -> dict[str, Any]:
        """The report's account of the choice."""
        return {
            "file": shown_path(self.tuned.path) if self.tuned else None,
            "forced": self.forced,
            "reason": (
                "tuned options turned off (--untuned)"
                if self.off
                else self.note or "no tuned file for this method, dataset and model"
            )
            if self.tuned is None
            else (
                "forced with --options-from" + (f" ({self.note})" if self.note else "")
                if self.forced
                else "its setting matches the checkpoint's"
            ),
            "tolerances": {"train_size_factor": TRAIN_SIZE_FACTOR, "epochs_factor": EPOCHS_FACTOR},
        }


def choose_tuned(
    method: str, here: Setting, known: dict[str, Any], forget: ForgetSpec, roots: list[Path] | None = None
) -> TunedChoice:
    """The tuned file an unlearning request in setting ``here`` uses: among the files of ``method`` for its dataset
    and model and kind of request (:func:`find_tuned`'s, best preset first), the first whose ``tuned_on`` fits
    (:func:`setting_mismatch`). Where files exist and none fits, no file, and a note naming the first file and the
    field that differs; where only files for another kind of request exist, a note saying so."""
    if not here.dataset:
        return TunedChoice(None, None)
    found = _candidates(method, here.dataset, here.model, known, roots)
    if not found:
        return TunedChoice(None, None)
    kind = forget.family
    same = [t for t in found if t.forget_kind in (None, kind)]
    if not same:
        other = found[0]
        return TunedChoice(
            None,
            f"tuned options for {method} on {here.dataset}/{here.model} ({shown_path(other.path)}) were "
            f"tuned for {other.forget_kind} forgetting, not {kind} "
            "forgetting: not used; the method's defaults apply",
        )
    why = [setting_mismatch(t.setting, here) for t in same]
    for t, w in zip(same, why):
        if w is None:
            return TunedChoice(t, None)
    return TunedChoice(
        None,
        f"tuned options for {method} ({shown_path(same[0].path)}) were tuned on another setting: {why[0]}: "
        "not used; the method's registered defaults apply (--options-from FILE forces a file)",
    )


def _candidates(method: str, dataset: str, model: str, known: dict[str, Any], roots: list[Path] | None) -> list[Tuned]:
    found: list[Path] = []
    for base in roots if roots is not None else config_dirs():
        for name in (f"{method}.json", f"{method}.*.json"):
            found += sorted((Path(base) / "tuned").glob(f"*/{dataset}-{model}/{name}"))
    found = [p for p in found if p.parent.parent.name != "smoke"]
    out = []
    for path in sorted(found, key=lambda p: (PRESET_ORDER.get(p.parent.parent.name, 2), str(p))):
        t = read_tuned(path, known)
        if (t.method, t.dataset, t.model) != (method, dataset, model):
            raise ConfigError(
                f"tuned options file {path} is for {t.method} on {t.dataset}/{t.model}, not {method} "
                f"on {dataset}/{model}"
            )
        out.append(t)
    return out


def forced_tuned(path: str | Path, method: str, known: dict[str, Any], here: Setting) -> TunedChoice:
    """``--options-from FILE``: the file, checked (JSON written by `experiments tune`: its keys, its study's setup and
    command; for ``method``; options the method has), used whatever its setting; the note says where the setting
    differs from ``here``, if it does."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"--options-from {p}: no such file")
    t = read_tuned(p, known) if _method_of(p) == method else None
    if t is None:
        raise ConfigError(f"--options-from {p} holds options for {_method_of(p)!r}, not for {method!r}")
    doc = json.loads(p.read_text())
    command = (doc.get("meta") or {}).get("command") if isinstance(doc.get("meta"), dict) else None
    if not isinstance(doc.get("setup"), dict) or not (isinstance(command, str) and "experiments tune" in command):
        raise ConfigError(
            f"--options-from {p} is not a file `experiments tune` wrote (it records no setup or no "
            "`experiments tune` command)"
        )
    return TunedChoice(t, setting_mismatch(t.setting, here), forced=True)


def _method_of(p: Path) -> Any:
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"--options-from {p} cannot be read as JSON: {err}") from None
    if not isinstance(doc, dict) or not isinstance(doc.get("method"), str):
        raise ConfigError(f"--options-from {p} is not a file `experiments tune` wrote (it names no method)")
    return doc["method"]


def choice_line(choice: TunedChoice) -> str | None:
    """The one line a command prints about a tuned-options choice: the file it uses (and, when forced with
    ``--options-from``, where its setting differs), or why it uses none; None where there is nothing to say (no file
    for this method, dataset and model, or ``--untuned``)."""
    if choice.tuned is not None and choice.forced:
        differs = f"; its setting differs: {choice.note}" if choice.note else ""
        return f"using {choice.tuned.describe()}, forced by --options-from{differs}"
    if choice.tuned is not None:
        return f"using {choice.tuned.describe()}; --untuned turns them off"
    return choice.note
