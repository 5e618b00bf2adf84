"""Devices and seeding."""

from __future__ import annotations

import contextlib
import random
from typing import Iterator

import numpy as np
import torch

from .errors import ConfigError


def resolve_device(name: str | None = None) -> torch.device:
    """``None``/``"auto"`` -> CUDA when available, else CPU. ``"cuda"`` without a GPU is an error."""
    if name in (None, "", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise ConfigError(f"unknown device {name!r}; use cpu, cuda or cuda:N") from None
    if dev.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {name!r}; use cpu or cuda")
    if dev.type == "cuda" and not torch.cuda.is_available():
        why = "this torch is built without CUDA" if torch.version.cuda is None else "no CUDA GPU is visible"
        raise ConfigError(f"--device {name} was asked for but CUDA is not available ({why}); use --device cpu")
    if dev.type == "cuda" and dev.index is not None:
        count = torch.cuda.device_count()
        if dev.index >= count:
            have = "cuda:0" if count == 1 else f"cuda:0..cuda:{count - 1}"
            raise ConfigError(
                f"--device {name} was asked for but there {'is' if count == 1 else 'are'} only "
                f"{count} CUDA device{'s' if count != 1 else ''} ({have})"
            )
    return dev


@contextlib.contextmanager
def seeded(seed: int, device: torch.device | None = None) -> Iterator[None]:
    """Run the block with torch's (and numpy's, python's) global RNGs seeded, restoring them afterwards.

    Global RNGs are what layer initialisation, dropout and Kornia draw from; forking keeps a seeded block from
    disturbing the caller's random stream."""
    devices = [device] if device is not None and device.type == "cuda" else []
    np_state, py_state = np.random.get_state(), random.getstate()
    with torch.random.fork_rng(devices=devices):
        torch.manual_seed(seed)
        np.random.seed(seed % 2**32)
        random.seed(seed)
        try:
            yield
        finally:
            np.random.set_state(np_state)
            random.setstate(py_state)


def generator(seed: int) -> torch.Generator:
    """A CPU generator for index permutations: same seed, same permutation on every device."""
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bf16_native(device: torch.device) -> bool:
    """Whether bf16 autocast runs on hardware support here. CUDA: the GPU says so. CPU: the processor needs the
    AVX-512 BF16 or AMX-BF16 extension; without it autocast emulates bf16 and is several times *slower* than float32
    (CNN training 9x slower on this project's AVX2 CI machine: reports/throughput/throughput-cpu.json)."""
    if device.type == "cuda":  # native bf16 from Ampere (compute capability 8) on; older cards emulate it
        return torch.cuda.get_device_capability(device)[0] >= 8
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:  # not Linux: unknown, assume the fast path is absent
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_bf16(tree, device: torch.device):
    """Every ``bf16`` key of a (nested) settings table decided: ``true``/``false`` as given, ``"auto"`` -> on exactly
    where ``bf16_native(device)``. Anything else is a ConfigError (a string such as ``"false"`` must never reach
    ``bool()``, where it would be true). Returns (resolved tree, whether any "auto" was decided)."""
    found = []

    def walk(node, where):
        if isinstance(node, dict):
            out = {}
            for k, v in node.items():
                if k == "bf16" and not isinstance(v, dict):
                    if v == "auto":
                        found.append(where)
                        v = bf16_native(device)
                    elif not isinstance(v, bool):
                        raise ConfigError(
                            f'bf16 must be true, false or "auto", not {v!r}' + (f" (in {where})" if where else "")
                        )
                out[k] = walk(v, f"{where}.{k}" if where else str(k))
            return out
        if isinstance(node, list):
            return [walk(v, where) for v in node]
        return node

    return walk(tree, ""), bool(found)
