"""The offline artefacts an unlearning experiment needs, made once and cached at a path: the original model, a
condensed file of its training set, and DC-U's offline checkpoint (with its remembrance set). A file that is
there is read back (checked against the training set's fingerprint), not remade; a new one is written
atomically, so an interrupted run leaves nothing half-written. The benchmarks and `unlearn reproduce` share
these, so an experiment is a configuration, not a copied script.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Callable

import torch

from condense.build import build_condensed
from dcforget.checkpoint import load_checkpoint, save_checkpoint
from dcforget.condensed_store import CondensedSet, read_condensed, write_condensed
from dcforget.datasets import Data
from dcforget.models import Classifier
from dcforget.pairing import check_pairing
from dcforget.train import TrainConfig, checkpoint_meta, train_on
from unlearn.offline import offline_phase, remembrance_set

Log = Callable[[str], None]


def _silent(_: str) -> None:
    pass


def original_model(
    path: str | Path,
    data: Data,
    arch: str,
    cfg: TrainConfig,
    *,
    device: torch.device,
    seed: int = 0,
    model_options: dict[str, Any] | None = None,
    log: Log = _silent,
    quiet: bool = True,
) -> Classifier:
    path = Path(path)
    if not path.exists():
        t = time.perf_counter()
        tr = train_on(data, arch, cfg, seed=seed, device=device, quiet=quiet, model_options=model_options)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, tr.model, checkpoint_meta(data, cfg, seed, tr))
        log(f"original {arch}: trained in {time.perf_counter() - t:.0f} s, test acc {100 * tr.test_eval.accuracy:.2f}%")
    return load_checkpoint(path, fingerprint=data.fingerprint()).model.to(device)


def condensed_file(
    path: str | Path,
    data: Data,
    model: Classifier,
    method: str,
    *,
    clusters: int | None = None,
    ipc: int | None = None,
    options: dict[str, Any] | None = None,
    device: torch.device,
    seed: int = 0,
    log: Log = _silent,
    quiet: bool = True,
) -> CondensedSet:
    path = Path(path)
    if not path.exists():
        t = time.perf_counter()
        res = build_condensed(
            data, method, model, device=device, seed=seed, clusters=clusters, ipc=ipc, options=options, quiet=quiet
        )
        path.parent.mkdir(parents=True, exist_ok=True)
        write_condensed(path, res.condensed)
        log(f"condensed {method} ({clusters or ipc}): built in {time.perf_counter() - t:.0f} s")
    cs = read_condensed(path)
    check_pairing(cs, where=f"condensed file {path}", fingerprint=data.fingerprint())
    return cs


def dcu_offline(
    path: str | Path,
    data: Data,
    model: Classifier,
    options: dict[str, Any],
    *,
    ipc: int = 10,
    source: str = "heldout",
    data_dir=None,
    device: torch.device,
    seed: int = 0,
    log: Log = _silent,
    quiet: bool = True,
) -> tuple[Classifier, dict[str, torch.Tensor]]:
    """DC-U's offline phase from ``model``: (offline model, tensors holding the remembrance set)."""
    path = Path(path)
    if not path.exists():
        t = time.perf_counter()
        rem = remembrance_set(data, ipc, source, seed, data_dir)
        off = offline_phase(model, data, rem, options, device=device, seed=seed, quiet=quiet)
        meta = checkpoint_meta(data, TrainConfig(), seed, offline=options, remembrance={"ipc": ipc, "source": source})
        path.parent.mkdir(parents=True, exist_ok=True)
        save_checkpoint(path, off, meta, tensors={"remembrance_images": rem.images, "remembrance_labels": rem.labels})
        log(f"DC-U offline phase: {time.perf_counter() - t:.0f} s")
    ck = load_checkpoint(path, fingerprint=data.fingerprint())
    return ck.model.to(device), ck.tensors
