"""Tuned hyperparameters: the files `experiments tune` writes (configs/tuned/<preset>/<dataset>-<model>/<method>.json),
found by dataset and architecture and used by an unlearning request unless the user turns them off.

A file holds the chosen trial's options with their provenance (the study's setup, trials, objectives on the
validation split, git hash). Options the user gives override the tuned ones; the method's registered defaults fill
in the rest. When several presets tuned the same method for the same dataset and model, the one whose setup is
closest to the real thing wins: ``paper`` (full data), then ``cpu``, then any other preset; ``smoke`` files (tuned on
generated data, to test the pipeline) are used only where asked for by name (``preset="smoke"``)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcforget.config import config_dirs
from dcforget.errors import ConfigError

PRESET_ORDER = {"paper": 0, "cpu": 1}  # any other preset name ranks 2


@dataclass(frozen=True)
class Tuned:
    path: Path
    method: str
    dataset: str
    model: str
    preset: str
    options: dict[str, Any]
    summary: dict[str, Any]  # trial, norm, trials, setup's per-class cap: what the request reports

    def describe(self) -> str:
        s = self.summary
        cap = f", {s['per_class']} images per class" if s.get("per_class") else ", full training set"
        return (f"tuned options for {self.method} on {self.dataset}/{self.model} from {self.path} (preset "
                f"{self.preset}{cap}: trial {s.get('trial')} of {s.get('trials')}, validation objective norm "
                f"{s.get('norm', float('nan')):.4f})")


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
               "git": (doc.get("meta") or {}).get("git_commit") or (doc.get("meta") or {}).get("git")}
    return Tuned(p, doc["method"], doc["dataset"], doc["model"], doc["preset"], dict(doc["options"]), summary)


def find_tuned(method: str, dataset: str, model: str, known: dict[str, Any], roots: list[Path] | None = None,
               preset: str | None = None) -> Tuned | None:
    """The tuned options of ``method`` for ``dataset``/``model`` (``preset``: only that preset's), or None where none
    were tuned."""
    dataset = dataset.split(":")[0]
    found: list[Path] = []
    for base in roots if roots is not None else config_dirs():
        found += sorted((Path(base) / "tuned").glob(f"{preset or '*'}/{dataset}-{model}/{method}.json"))
    if preset is None:
        found = [p for p in found if p.parent.parent.name != "smoke"]
    if not found:
        return None
    best = min(found, key=lambda p: (PRESET_ORDER.get(p.parent.parent.name, 2), str(p)))
    t = read_tuned(best, known)
    if (t.method, t.dataset, t.model) != (method, dataset, model):
        raise ConfigError(f"tuned options file {best} is for {t.method} on {t.dataset}/{t.model}, not {method} on "
                          f"{dataset}/{model}")
    return t
