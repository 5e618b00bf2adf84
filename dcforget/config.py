"""Configuration: built-in defaults, then a preset (configs/presets/NAME.toml), then a --config TOML file, then
explicit CLI flags. The resolved dict is stored with every output."""

from __future__ import annotations

import copy
import sys
import tomllib
from pathlib import Path
from typing import Any

from .errors import ConfigError

PRESETS = ("smoke", "cpu", "paper")


def config_dirs() -> list[Path]:
    """The repository's configs/ (editable installs and clones), then the installed copy."""
    return [Path(__file__).resolve().parent.parent / "configs", Path(sys.prefix) / "share" / "dcforget" / "configs"]


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {p} is not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not valid TOML: not UTF-8 text") from None


def load_preset(name: str) -> dict[str, Any]:
    if name not in PRESETS:
        raise ConfigError(f"unknown preset {name!r}; choose one of: {', '.join(PRESETS)}")
    for base in config_dirs():
        path = base / "presets" / f"{name}.toml"
        if path.is_file():
            return load_toml(path)
    raise ConfigError(f"preset {name!r} not found under {' or '.join(str(d) for d in config_dirs())}")


def merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Deep merge; ``None`` values in ``override`` mean "not given" and are skipped."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if value is None:
            continue
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def resolve_config(defaults: dict[str, Any], preset: str | None, config_file: str | None,
                   overrides: dict[str, Any]) -> dict[str, Any]:
    resolved = copy.deepcopy(defaults)
    if preset:
        resolved = merge(resolved, load_preset(preset))
    if config_file:
        resolved = merge(resolved, load_toml(config_file))
    resolved = merge(resolved, overrides)
    if preset:
        resolved["preset"] = preset
    return resolved


def section(config: dict[str, Any], name: str, known: set[str] | None = None) -> dict[str, Any]:
    value = config.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config section [{name}] must be a table")
    if known is not None:
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(unknown)}")
    return value
