"""Configuration: built-in defaults, then a preset (configs/presets/NAME.toml), then a --config TOML file, then
explicit CLI flags. The resolved dict is stored with every output."""

from __future__ import annotations

import contextlib
import copy
import functools
import math
import sys
import tomllib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import ConfigError

if TYPE_CHECKING:  # annotations only: the config layer never imports torch at runtime
    import torch

PRESETS = ("smoke", "cpu", "paper")


def config_dirs() -> list[Path]:
    """The repository's configs/ (editable installs and clones), then the installed copy."""
    return [Path(__file__).resolve().parent.parent / "configs", Path(sys.prefix) / "share" / "dcforget" / "configs"]


def shown_path(path: str | Path) -> str:
    """``path`` as reports and messages name it: relative to the working directory where it lies under it (a run
    from a clone names ``configs/...``, not the clone's absolute location), else absolute."""
    p = Path(path).resolve()
    try:
        return p.relative_to(Path.cwd().resolve()).as_posix()
    except ValueError:
        return str(p)


def load_toml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise ConfigError(f"config file {p} is a directory, not a TOML file")
    if not p.is_file():
        raise ConfigError(f"config file {p} does not exist")
    try:
        with p.open("rb") as fh:
            return tomllib.load(fh)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError(f"config file {p} is not valid TOML: {err}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config file {p} is not valid TOML: not UTF-8 text") from None
    except OSError as err:
        raise ConfigError(f"config file {p} cannot be read: {err.strerror or err}") from None


# Top-level keys with a meaning of their own, wherever they appear: (types, minimum or None)
TOP_LEVEL_RULES: dict[str, tuple[tuple[type, ...], float | None]] = {
    "seed": ((int,), 0),
    "data_seed": ((int,), 0),
    "per_class": ((int,), 1),
    "clusters": ((int,), 1),
    "ipc": ((int,), 1),
    "model": ((str,), None),
    "method": ((str,), None),
    "val_fraction": ((int, float), 0),
}


@functools.lru_cache(maxsize=1)
def _preset_keys() -> frozenset[str]:
    """Top-level keys of the bundled presets: a preset (and a config file laid out like one) may carry tables for
    other commands ([evaluate], [condense.dm], ...), which a command ignores."""
    keys: set[str] = set()
    for base in config_dirs():
        for path in sorted((base / "presets").glob("*.toml")) if (base / "presets").is_dir() else []:
            with contextlib.suppress(ConfigError):
                keys |= set(load_toml(path))
    return frozenset(keys)


def check_keys(loaded: dict[str, Any], defaults: dict[str, Any], known: set[str], source: str) -> None:
    """Unknown top-level keys/tables, and values of the wrong type, in a preset or config file are errors."""
    unknown = sorted(set(loaded) - known)
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) or table(s): {', '.join(unknown)}; known here: {', '.join(sorted(known))}"
        )
    for key, value in loaded.items():
        if isinstance(defaults.get(key), dict) and not isinstance(value, dict):
            raise ConfigError(f"{source}: {key} must be a table ([{key}]), got {value!r}")
        if key in TOP_LEVEL_RULES:
            kinds, low = TOP_LEVEL_RULES[key]
            if isinstance(value, bool) or not isinstance(value, kinds):
                raise ConfigError(f"{source}: {key} must be a {' or '.join(k.__name__ for k in kinds)}, got {value!r}")
            if low is not None and value < low:
                raise ConfigError(f"{source}: {key} must be >= {low}, got {value!r}")


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


def resolve_config(
    defaults: dict[str, Any],
    preset: str | None,
    config_file: str | None,
    overrides: dict[str, Any],
    device: "torch.device | None" = None,
) -> dict[str, Any]:
    resolved = copy.deepcopy(defaults)
    known = set(defaults) | set(overrides) | {"preset"} | _preset_keys()
    if preset:
        loaded = load_preset(preset)
        check_keys(loaded, defaults, known, f"preset {preset!r}")
        resolved = merge(resolved, loaded)
    if config_file:
        loaded = load_toml(config_file)
        check_keys(loaded, defaults, known, f"config file {config_file}")
        resolved = merge(resolved, loaded)
    resolved = merge(resolved, overrides)
    if preset:
        resolved["preset"] = preset
    from .runtime import resolve_bf16, resolve_device  # bf16 = "auto": decided for the device that will run it

    return resolve_bf16(resolved, device if device is not None else resolve_device(None))[0]


def section(config: dict[str, Any], name: str, known: set[str] | None = None) -> dict[str, Any]:
    value = config.get(name, {})
    if not isinstance(value, dict):
        raise ConfigError(f"config section [{name}] must be a table")
    if known is not None:
        unknown = sorted(set(value) - known)
        if unknown:
            raise ConfigError(f"unknown key(s) in [{name}]: {', '.join(unknown)}")
    return value


# ----------------------------------------------------------------------------------------- method options
_BOOL_WORDS = {"true": True, "1": True, "yes": True, "false": False, "0": False, "no": False}
POSITIVE_OPTIONS = {"batch_size", "final_batch_size", "batch_real", "chunk"}  # 0 would divide by zero
UNIT_OPTIONS = {"retain_fraction", "sparsity"}  # fractions


def _kind(default: Any) -> str:
    want = type(default)
    if want is bool:
        return "a boolean (true/false, 1/0, yes/no)"
    if want in (int, float):
        return f"{'an integer' if want is int else 'a number'}{' >= 0' if default >= 0 else ''}"
    if want is list and default:
        return f"a comma-separated list of {type(default[0]).__name__}"
    return f"a {want.__name__}"


def _in_range(key: str, value: Any, default: Any) -> bool:
    if isinstance(value, list):
        return all(_in_range(key, v, default[0] if default else v) for v in value)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return True
    if not math.isfinite(value):
        return False
    if isinstance(default, (int, float)) and not isinstance(default, bool) and default >= 0 and value < 0:
        return False
    if key in POSITIVE_OPTIONS and value < 1:
        return False
    return not (key in UNIT_OPTIONS and value > 1)


def coerce_option(key: str, value: Any, default: Any, where: str = "") -> Any:
    """A method option as the type of its default: CLI strings are parsed strictly (booleans only true/false, 1/0,
    yes/no; numbers finite), TOML values must already have that type; a count or rate whose default is >= 0 may
    not be negative. ``where`` (e.g. " of method 'fdm'") goes into the message."""
    want = type(default)
    shown = f"option {key}={value!r}{where}"
    if default is None:
        return value
    if isinstance(value, str) and want is not str:
        text = value.strip()
        try:
            if want is bool:
                value = _BOOL_WORDS[text.lower()]
            elif want is list:
                value = [type(default[0])(v.strip()) for v in text.split(",")] if default else text.split(",")
            elif want in (int, float):
                value = want(text)
            else:
                raise ValueError
        except (ValueError, KeyError, IndexError, TypeError):
            raise ConfigError(f"{shown} must be {_kind(default)}") from None
    if want is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, want) or (want in (int, float) and isinstance(value, bool)):
        raise ConfigError(f"{shown} must be {_kind(default)}")
    if want is list and default and not all(isinstance(v, type(default[0])) and not isinstance(v, bool) for v in value):
        raise ConfigError(f"{shown} must be {_kind(default)}")
    if not _in_range(key, value, default):
        bound = (
            ">= 1"
            if key in POSITIVE_OPTIONS
            else "in [0, 1]"
            if key in UNIT_OPTIONS
            else ">= 0"
            if _in_range(key, 0, default) and not _in_range(key, -1, default)
            else ""
        )
        raise ConfigError(f"{shown} is out of range: it must be finite{' and ' + bound if bound else ''}")
    return value


def check_options(given: Any, defaults: dict[str, Any], where: str = "") -> dict[str, Any]:
    """Options from a config table: unknown keys and wrong types/ranges are errors; returns them coerced."""
    if not isinstance(given, dict):
        raise ConfigError(f"options{where} must be a table, got {given!r}")
    unknown = sorted(set(given) - set(defaults))
    if unknown:
        raise ConfigError(
            f"unknown option(s){where}: {', '.join(unknown)}; known: {', '.join(sorted(defaults)) or '(none)'}"
        )
    return {k: coerce_option(k, v, defaults[k], where) for k, v in given.items()}


def parse_options(pairs: Any, defaults: dict[str, Any], where: str = "") -> dict[str, Any]:
    """``--option KEY=VALUE`` pairs (every CLI's one parser): unknown keys are errors, values are parsed strictly as
    the type of their default (``dsa=ture``, ``steps=-5``, ``lr=nan`` are errors)."""
    out = {}
    for pair in pairs:
        key, eq, value = str(pair).partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--option takes key=value, got {pair!r}")
        key = key.strip()
        if key not in defaults:
            raise ConfigError(f"unknown option {key!r}{where}; known: {', '.join(sorted(defaults)) or '(none)'}")
        value = coerce_option(key, value.strip(), defaults[key], where)
        if key in out and out[key] != value:  # the same key twice: no silent winner
            scope = f" ({where.strip()})" if where.strip() else ""
            raise ConfigError(
                f"--option {key}={_shown(out[key])} and --option {key}={_shown(value)}{scope} conflict; "
                "give one of them"
            )
        out[key] = value
    return out


def _shown(value: Any) -> str:
    """An option value as it is written on the command line."""
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, list):
        return ",".join(map(_shown, value))
    return str(value)
