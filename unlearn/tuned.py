"""Tuned hyperparameters: the files `experiments tune` writes (configs/tuned/<preset>/<dataset>-<model>/<method>.json),
found by dataset and architecture and used by an unlearning request unless the user turns them off.

A file holds the chosen trial's options with their provenance (the study's setup, trials, objectives on the
validation split, git hash). Options the user gives override the tuned ones; the method's registered defaults fill
in the rest. When several presets tuned the same method for the same dataset and model, the one whose setup is
closest to the real thing wins: ``paper`` (full data), then ``cpu``, then any other preset; ``smoke`` files (tuned on
generated data, to test the pipeline) are used only where asked for by name (``preset="smoke"``). Options tuned
for one kind of forgetting (random samples, whole classes, given indices) are not used for another: a request
matches a file on method, dataset, model and the kind of its forget spec (the file's setup says what it was tuned
on)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcforget.config import config_dirs
from dcforget.errors import ConfigError
from dcforget.forget import parse_forget_spec

PRESET_ORDER = {"paper": 0, "cpu": 1}  # any other preset name ranks 2


@dataclass(frozen=True)
class Tuned:
    path: Path
    method: str
    dataset: str
    model: str
    preset: str
    options: dict[str, Any]
    summary: dict[str, Any]  # trial, norm, trials, setup's per-class cap and forget spec: what the request reports

    def describe(self) -> str:
        s = self.summary
        cap = f", {s['per_class']} images per class" if s.get("per_class") else ", full training set"
        on = f", forgetting {s['forget']}" if s.get("forget") else ""
        norm = s.get("norm")
        shown = f"{norm:.4f}" if isinstance(norm, (int, float)) else "not recorded"
        return (f"tuned options for {self.method} on {self.dataset}/{self.model} from {self.path} (preset "
                f"{self.preset}{cap}{on}: trial {s.get('trial')} of {s.get('trials')}, validation objective norm "
                f"{shown})")


def forget_kind(spec: str) -> str:
    """What kind of forgetting a forget spec asks for: "random", "class" (one or several whole classes, or a
    fraction of some classes: ``classes:C1,C2:F``), "indices" or "overfit"."""
    kind = parse_forget_spec(spec).kind
    return "class" if kind in ("class", "classes") else kind


def whole_classes(spec: str) -> bool:
    """Whether a forget spec removes whole classes (class:C, classes:C1,C2 without a fraction)."""
    parsed = parse_forget_spec(spec)
    return parsed.kind in ("class", "classes") and len(parsed.args) == 1


def tuned_filename(method: str, forget: str) -> str:
    """The tuned file's name for ``method`` tuned on ``forget``: METHOD.json for random forgetting (Deep Unlearn's
    setting), METHOD.KIND.json for the other kinds."""
    kind = forget_kind(forget)
    return f"{method}.json" if kind == "random" else f"{method}.{kind}.json"


def read_tuned(path: str | Path, known: dict[str, Any]) -> Tuned:
    """A tuned-options file, checked: JSON (never pickle), the keys `experiments tune` writes, options the method
    has (``known``: its registered defaults)."""
    p = Path(path)
    try:
        doc = json.loads(p.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"tuned options file {p} cannot be read: {err}") from None
    need = ("method", "dataset", "model", "preset", "options")
    if not isinstance(doc, dict) or any(k not in doc for k in need) or not isinstance(doc["options"], dict):
        raise ConfigError(f"tuned options file {p} is not one `experiments tune` wrote (needs {', '.join(need)})")
    unknown = sorted(set(doc["options"]) - set(known))
    if unknown:
        raise ConfigError(f"tuned options file {p} sets option(s) {', '.join(unknown)} that {doc['method']!r} does not "
                          "have; re-run `experiments tune` for it")
    study = doc.get("study") or {}
    summary = {"trial": doc.get("trial"), "trials": study.get("trials"), "norm": doc.get("norm"),
               "per_class": (doc.get("setup") or {}).get("per_class"),
               "forget": (doc.get("setup") or {}).get("forget"),
               "validation": (doc.get("setup") or {}).get("validation", "whole"),
               "git": (doc.get("meta") or {}).get("git_commit") or (doc.get("meta") or {}).get("git")}
    return Tuned(p, doc["method"], doc["dataset"], doc["model"], doc["preset"], dict(doc["options"]), summary)


def find_tuned(method: str, dataset: str, model: str, known: dict[str, Any], roots: list[Path] | None = None,
               preset: str | None = None, forget: str | None = None) -> Tuned | None:
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
            raise ConfigError(f"tuned options file {path} is for {t.method} on {t.dataset}/{t.model}, not {method} "
                              f"on {dataset}/{model}")
        tuned.append(t)
    if forget is not None:
        kind = forget_kind(forget)
        tuned = [t for t in tuned if t.summary.get("forget") is None or forget_kind(t.summary["forget"]) == kind]
    return tuned[0] if tuned else None
