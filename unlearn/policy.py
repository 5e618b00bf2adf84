"""The default policy: which method, retain source and options answer a request that names no method.

`experiments tune DATASET --model M --policy KIND` searches the candidate methods, each with both retain sources
where it reads a retain set, on the validation split, and writes the winner as one entry of
``configs/policy/<preset>/<dataset>-<model>.json``. An entry is keyed by the kind of request (:data:`POLICY_KINDS`):

* ``class``: whole classes (``class:C``, ``classes:A,B``);
* ``small``: a per-sample request whose *new* images (those no earlier request of the checkpoint forgot) are at most
  :data:`SMALL_REQUEST` of the training set: a person's erasure request, one of a stream;
* ``large``: any other per-sample request (``random:F`` above that share, a large index file, a fraction of some
  classes, ``overfit``).

`unlearn --from-condensed FILE` without ``--method`` classifies its request, takes the entry tuned on a setting
that fits the checkpoint (dataset, model, training-set size and epochs within :mod:`unlearn.tuned`'s tolerances;
presets ``paper`` then ``cpu`` then others, ``smoke`` never unless named) and says which entry it used; with no
entry it says which fallback it used (the registered default, :data:`unlearn.methods.DEFAULT_METHOD`) and how to
tune one. Options the user gives override the entry's. The file is JSON, checked when read; never pickle."""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Sequence

from dcforget.config import config_dirs, shown_path
from dcforget.errors import ConfigError
from dcforget.forget import ForgetSpec

from .methods import DEFAULT_METHOD, METHODS
from .tuned import PRESET_ORDER, Setting, Tuned, TunedChoice, choose_tuned, ran_names, ran_options, setting_mismatch

SMALL_REQUEST = 0.01
"""A per-sample request whose new images are at most this share of the training set is ``small`` (the default
method's own small-request rule uses the same share: ``condensed``'s ``small_request`` option)."""

POLICY_KINDS = ("class", "small", "large")
SCHEMA = "dcforget-policy"
VERSION = 1


def request_kind(
    spec: ForgetSpec, train_size: int | None, forgotten: Sequence[int] = (), small: float = SMALL_REQUEST
) -> tuple[str, str]:
    """(kind of request, why) for ``spec`` on a checkpoint trained on ``train_size`` images that already forgot
    ``forgotten`` (its earlier requests): see the module's docstring. A request whose size cannot be told without
    the data (a fraction of some classes, ``overfit``) is ``large``."""
    if spec.whole_classes:
        return "class", "whole classes"
    if spec.kind == "indices":
        new = len(set(spec.read_indices().tolist()) - set(forgotten))
    elif spec.kind == "random" and train_size:
        new = int(round(float(spec.fraction) * (train_size - len(forgotten))))
    else:
        return "large", f"a {spec.kind} request, sized only on the data"
    if not train_size:
        return "large", f"{new} new images; the checkpoint does not record its training-set size"
    bound = small * train_size
    if new <= bound:
        return "small", f"{new} new images <= {small:g} of the {train_size} training images"
    return "large", f"{new} new images > {small:g} of the {train_size} training images"


@dataclass(frozen=True)
class PolicyCandidate:
    """One study of an entry's search: a method with one retain source, the options that study chose on validation
    and its validation figures (``norm``: the objective's distance; ``time_ratio``: the request's time over
    retraining's)."""

    method: str
    retain: str
    options: dict[str, Any]
    norm: float | None
    time_ratio: float | None
    feasible: bool
    validation: str = "whole"  # how its study served the validation split ("halves": the method reads it)

    @property
    def label(self) -> str:
        """The row label of the candidate in a table: ``METHOD (full)`` or ``METHOD (reduced)``."""
        return f"{self.method} ({self.retain})"


@dataclass(frozen=True)
class PolicyEntry:
    """One entry of a policy file: what answers a ``kind`` request in the setting it was tuned on."""

    path: Path
    preset: str
    kind: str
    method: str
    retain: str
    options: dict[str, Any]
    setting: Setting | None
    summary: dict[str, Any]  # objective, norm, time ratio, candidates searched, the study's provenance
    candidates: tuple[PolicyCandidate, ...] = ()  # every study of the search, the winner's included
    validation: str = "whole"  # how the studies served the validation split ("halves": a method reading it)
    forget: str | None = None  # the forget spec the studies searched on (their setup's)

    def describe(self) -> str:
        s = self.summary
        searched = s.get("candidates_searched")
        over = f" over {searched} candidate studies" if searched else ""
        return (
            f"{self.method} ({self.retain} retain) from {shown_path(self.path)} [preset {self.preset}; `experiments tune "
            f"--policy {self.kind}`, objective {s.get('objective')}{over}]"
        )


def read_policy(path: str | Path) -> list[PolicyEntry]:
    """A policy file, checked: JSON that `experiments tune --policy` wrote, each entry's kind, method, retain source
    and options (the method's own), each run with the defaults its study ran under where the file records them."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"policy file {p} cannot be read: {err}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA or not isinstance(doc.get("entries"), dict):
        raise ConfigError(f"policy file {p} is not one `experiments tune --policy` wrote (schema {SCHEMA})")
    if doc.get("version") != VERSION:
        raise ConfigError(f"policy file {p} has version {doc.get('version')!r}; this toolkit reads {VERSION}")
    out = []
    for kind, e in sorted(doc["entries"].items()):
        where = f"policy file {p}, entry {kind!r}"
        if kind not in POLICY_KINDS:
            raise ConfigError(f"{where}: unknown kind of request; one of {', '.join(POLICY_KINDS)}")
        if not isinstance(e, dict) or not isinstance(e.get("options"), dict):
            raise ConfigError(f"{where}: needs method, retain and options")
        _check_choice(where, e)
        raw = e.get("candidates") or []
        if not isinstance(raw, list) or not all(isinstance(c, dict) for c in raw):
            raise ConfigError(f"{where}: candidates must be a list of studies")
        candidates = []
        for i, c in enumerate(raw):
            _check_choice(f"{where}, candidate {i}", c)
            # its own study's mode (files before it was recorded: what the method reads with those options)
            mode = c.get("validation") or (
                "halves" if METHODS.get(c["method"]).reads_validation_with(ran_options(c)) else "whole"
            )
            if mode not in ("whole", "halves"):
                raise ConfigError(f"{where}, candidate {i}: validation is whole or halves, not {mode!r}")
            candidates.append(
                PolicyCandidate(
                    c["method"],
                    c["retain"],
                    ran_options(c),
                    _number(c.get("norm")),
                    _number(c.get("time_ratio")),
                    bool(c.get("feasible")),
                    mode,
                )
            )
        setup = e.get("setup") if isinstance(e.get("setup"), dict) else {}
        validation = setup.get("validation", "whole")
        if validation not in ("whole", "halves"):
            raise ConfigError(f"{where}: setup.validation is whole or halves, not {validation!r}")
        on = e.get("tuned_on")
        summary = {k: e.get(k) for k in ("objective", "norm", "objectives", "time_ratio", "feasible")}
        summary["candidates_searched"] = len(candidates)
        summary["git"] = (e.get("meta") or {}).get("git") if isinstance(e.get("meta"), dict) else None
        out.append(
            PolicyEntry(
                p,
                str(doc.get("preset")),
                kind,
                e["method"],
                e["retain"],
                ran_options(e),
                Setting.from_dict(on) if isinstance(on, dict) else None,
                summary,
                tuple(candidates),
                validation,
                setup.get("forget") if isinstance(setup.get("forget"), str) else None,
            )
        )
    return out


RETAIN_SOURCES = ("full", "reduced")


def method_label(label: str) -> tuple[str, str]:
    """(registered method, retain source) of a row label: ``NAME`` (the full retain set), ``NAME (full)`` or
    ``NAME (reduced)`` (:attr:`PolicyCandidate.label`). An unknown name is the registry's error; ``reduced`` only
    for a method that reads a retain set."""
    if not isinstance(label, str):
        raise ConfigError(f"a method is named by text (NAME, or NAME (full|reduced)), not {label!r}")
    name, retain = label, "full"
    for source in RETAIN_SOURCES:
        if label.endswith(f" ({source})"):
            name, retain = label[: -len(source) - 3], source
    m = METHODS.get(name)
    if retain == "reduced" and not m.reads_retain:
        raise ConfigError(f"{label!r}: {name} reads no retain set, so it has no reduced one")
    return name, retain


def candidate_tuned(ref: str, label: str) -> Tuned | None:
    """``POLICY.json#KIND``: the options the policy search chose on validation for ``label``'s method and retain
    source, as tuned options (their summary names the policy file, the entry, its study's norm and the setting it
    was tuned on); None where the entry has no such candidate."""
    path, _, kind = str(ref).rpartition("#")
    if not path or kind not in POLICY_KINDS:
        raise ConfigError(
            f"{ref}: a policy's candidates are named POLICY.json#KIND, KIND one of {', '.join(POLICY_KINDS)}"
        )
    entry = next((e for e in read_policy(path) if e.kind == kind), None)
    if entry is None:
        raise ConfigError(f"{ref}: {path} has no {kind!r} entry")
    name, retain = method_label(label)
    c = next((c for c in entry.candidates if (c.method, c.retain) == (name, retain)), None)
    if c is None:
        return None
    on = entry.setting
    if on is not None and entry.forget:  # the setting's kind of forgetting as tuned files record it (its family)
        on = replace(on, forget_kind=ForgetSpec.parse(entry.forget).family)
    summary = {
        "trial": f"{c.label} study",
        "trials": f"the {kind} policy's {len(entry.candidates)} studies",
        "norm": c.norm,
        "per_class": on.per_class if on else None,
        "forget": entry.forget,
        "tuned_on": on.to_dict() if on else None,
        "time_ratio": c.time_ratio,
        "feasible": c.feasible,
    }
    return Tuned(
        entry.path, name, on.dataset if on else "", on.model if on else "", entry.preset, dict(c.options), summary
    )


def _check_choice(where: str, e: dict[str, Any]) -> None:
    """An entry's or a candidate's method (registered), retain source, options and the defaults its study ran under
    (the method's own)."""
    if not isinstance(e.get("options"), dict) or not isinstance(e.get("method"), str):
        raise ConfigError(f"{where}: needs method (a name), retain and options")
    method = METHODS.get(e["method"])  # an unknown name: the registry's error
    if e.get("retain") not in ("full", "reduced"):
        raise ConfigError(f"{where}: retain is full or reduced, not {e.get('retain')!r}")
    unknown = sorted(ran_names(e, where) - set(method.defaults))
    if unknown:
        raise ConfigError(f"{where}: option(s) {', '.join(unknown)} that {e['method']!r} does not have")


def _number(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else None


def policy_files(dataset: str, model: str, roots: list[Path] | None = None, preset: str | None = None) -> list[Path]:
    """The policy files for ``dataset``/``model``, best preset first (``smoke`` only when ``preset`` names it)."""
    found: list[Path] = []
    for base in roots if roots is not None else config_dirs():
        found += sorted((Path(base) / "policy").glob(f"{preset or '*'}/{dataset.split(':')[0]}-{model}.json"))
    if preset is None:
        found = [p for p in found if p.parent.name != "smoke"]
    return sorted(found, key=lambda p: (PRESET_ORDER.get(p.parent.name, 2), str(p)))


@dataclass(frozen=True)
class PolicyChoice:
    """What a request without ``--method`` does: the entry it follows (or None: the fallback) and why."""

    kind: str
    why: str  # why the request is of that kind
    entry: PolicyEntry | None
    note: str | None = None  # why no entry was used, or why the entry's search's runner-up answers instead
    untuned: bool = False  # --untuned: no entry (a tuned choice of method and options) was read

    @property
    def method(self) -> str:
        return self.entry.method if self.entry else DEFAULT_METHOD

    @property
    def retain(self) -> str:
        return self.entry.retain if self.entry else "full"

    @property
    def options(self) -> dict[str, Any]:
        return dict(self.entry.options) if self.entry else {}

    @property
    def source(self) -> str:
        """Where what the request runs comes from, in a few words: the fallback, the entry, or the candidate that
        answers for an entry whose method cannot run on this checkpoint (:func:`runs_on_plain`)."""
        if self.entry is None:
            return "fallback"
        instead = self.entry.summary.get("instead_of")
        return (
            f"policy entry {instead}, on a plain original its closest runnable candidate" if instead else "policy entry"
        )

    def line(self, here: Setting) -> str:
        """The one line `unlearn` prints about it."""
        if self.entry is not None:
            instead = f"{self.note}: " if self.note else ""
            return f"policy: a {self.kind} request ({self.why}) -> {instead}{self.entry.describe()}"
        if self.untuned:
            return (
                f"policy: a {self.kind} request ({self.why}); --untuned: no policy entry or tuned file is read; "
                f"{DEFAULT_METHOD} (the registered default, full retain) with its registered options"
            )
        how = (
            f"experiments tune {here.dataset or 'DATASET'} --model {here.model or 'MODEL'} --policy {self.kind} "
            "--preset cpu|paper --data-dir DIR"
        )
        return (
            f"policy: a {self.kind} request ({self.why}); {self.note}; fallback: {DEFAULT_METHOD} (the registered "
            f"default, full retain); tune one with `{how}`"
        )

    def record(self, here: Setting) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "why": self.why,
            "file": shown_path(self.entry.path) if self.entry else None,
            "preset": self.entry.preset if self.entry else None,
            "method": self.method,
            "retain": self.retain,
            "fallback": self.entry is None,
            "note": self.note,
            "summary": self.entry.summary if self.entry else None,
            "checkpoint_setting": here.to_dict(),
        }


def default_options(choice: PolicyChoice, here: Setting, spec: ForgetSpec) -> tuple[dict[str, Any], TunedChoice]:
    """What a request without ``--method`` runs with, under any options the user gives: the entry's (tuned) options,
    with no tuned file; or, for the fallback, the options of its file tuned on this setting (``choose_tuned``), none
    if none fits. With the tuned-file choice the report records."""
    if choice.entry is not None:
        return choice.options, TunedChoice(None, "the policy entry's options are tuned ones: no tuned file is read")
    tuned = choose_tuned(choice.method, here, METHODS.get(choice.method).defaults, spec)
    return (dict(tuned.tuned.options) if tuned.tuned is not None else {}), tuned


def runs_on_plain(entry: PolicyEntry) -> PolicyEntry | None:
    """What ``entry`` answers on a checkpoint that did not go through DC-U's offline phase: the entry itself where its
    method does not start from it; else its search's best candidate (smallest validation norm within the time bound)
    whose method does not, as an entry of the same file (its norm and time ratio in the summary); None if none."""
    if not METHODS.get(entry.method).needs_offline:
        return entry
    runnable = [
        c for c in entry.candidates if c.feasible and c.norm is not None and not METHODS.get(c.method).needs_offline
    ]
    if not runnable:
        return None
    c = min(runnable, key=lambda c: (c.norm, c.label))
    summary = {**entry.summary, "norm": c.norm, "time_ratio": c.time_ratio, "feasible": c.feasible}
    summary["objectives"] = None  # the entry's; the candidate's own are in the file
    summary["instead_of"] = f"{entry.method} ({entry.retain} retain)"
    return replace(entry, method=c.method, retain=c.retain, options=dict(c.options), summary=summary)


def choose_policy(
    spec: ForgetSpec,
    here: Setting,
    forgotten: Sequence[int] = (),
    roots: list[Path] | None = None,
    tuned: bool = True,
    offline: bool = False,
) -> PolicyChoice:
    """The policy entry a request in setting ``here`` follows: the first (best preset first) for its kind of request
    whose ``tuned_on`` fits the checkpoint (:func:`unlearn.tuned.setting_mismatch`), or the fallback with a note.
    An entry whose method starts from DC-U's offline phase (``dcu-reference``) answers only a checkpoint that went
    through it (``offline``: `unlearn offline` wrote it); on any other, its search's best candidate that runs there
    answers instead (:func:`runs_on_plain`), and the line says so.
    ``tuned=False`` (`unlearn --untuned`): no entry, since an entry is a tuned choice of method and options; the
    registered default with its registered options."""
    kind, why = request_kind(spec, here.train_size, forgotten)
    if not tuned:
        return PolicyChoice(kind, why, None, "--untuned: no policy entry or tuned file is read", untuned=True)
    if not here.dataset or not here.model:
        return PolicyChoice(kind, why, None, "the checkpoint does not record its dataset and model")
    files = policy_files(here.dataset, here.model, roots)
    entries = [e for f in files for e in read_policy(f) if e.kind == kind]
    if not entries:
        where = f"configs/policy/*/{here.dataset}-{here.model}.json"
        return PolicyChoice(kind, why, None, f"no {kind} entry in {where}")
    target = replace(here, forget_kind=kind)
    mismatches = []
    for e in entries:
        on = replace(e.setting, forget_kind=kind) if e.setting is not None else None
        differs = setting_mismatch(on, target)
        if differs is None:
            plain = e if offline else runs_on_plain(e)
            if plain is None or plain is e:  # (none that runs here: the request says what the method needs)
                return PolicyChoice(kind, why, e)
            return PolicyChoice(
                kind,
                why,
                plain,
                f"the entry, {e.method} ({e.retain} retain), starts from DC-U's offline phase and this checkpoint "
                "did not go through it (`unlearn offline`): its search's closest candidate that runs here",
            )
        mismatches.append(f"{shown_path(e.path)}: {differs}")
    return PolicyChoice(kind, why, None, f"no entry tuned on this setting ({mismatches[0]})")
