"""What a cell computes with: the experiment (its file after the preset's overrides), the cells of its grid, the
registry of experiment kinds, and the workspace of cached artefacts (data, originals, condensed files, DC-U
offline checkpoints). This module is cell code: it joins the code digest, unlike the orchestration in runner.py
(which only decides which cells to run and where their results go)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from dcforget.datasets import DEFAULT_VAL_FRACTION, Data, load_data
from dcforget.registry import Registry
from dcforget.train import TRAINING_REVISION, TrainConfig

from .artefacts import condensed_file, dcu_offline, original_model

Log = Callable[[str], None]


@dataclass
class Experiment:
    name: str
    spec: dict[str, Any]  # the experiment file with the preset's overrides applied

    @property
    def title(self) -> str:
        return self.spec.get("title", self.name)


def val_fraction(preset: dict[str, Any]) -> float:
    """The preset's validation fraction (default 0.15): held out of the capped training set, never trained on."""
    return float(preset.get("val_fraction", DEFAULT_VAL_FRACTION))


def _short_digest(options: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(options, sort_keys=True, default=str).encode()).hexdigest()[:8]


# --------------------------------------------------------------------------------------------- workspace
@dataclass
class Workspace:
    """The preset's data and every cached artefact, made on first use."""

    preset: dict[str, Any]
    root: Path
    device: torch.device
    data_dir: str | None
    log: Log
    _memo: dict[str, Any] = field(default_factory=dict)
    overrides: dict[str, dict[str, Any]] = field(default_factory=dict)  # arch -> {model_options, offline}
    quiet: bool = True  # False: progress bars of the training inside cells (the demo shows them)
    run_id: str | None = None  # the invocation the cells run in: a time ratio divides two times of one invocation

    def for_experiment(self, exp: "Experiment") -> "Workspace":
        """This workspace (same memo) with ``exp``'s model and offline-phase settings, and its own ``dataset`` and
        ``per_class`` where it names them (a benchmark over several datasets)."""
        mo, off = exp.spec.get("model_options", {}), exp.spec.get("offline", {})
        ov = {a: {"model_options": mo.get(a), "offline": off} for a in set(mo) | set(exp.spec.get("models", []))}
        return replace(self, overrides=ov, preset=self.experiment_preset(self.preset, exp))

    @staticmethod
    def experiment_preset(preset: dict[str, Any], exp: "Experiment") -> dict[str, Any]:
        """The preset an experiment's cells see: its own ``dataset``, ``per_class`` and ``original_epochs`` where it
        names them (a choice checked on another recipe's original, e.g. the demo's 12-epoch one: that original is a
        separate artefact, since the epochs join the artefact's digest, ``Workspace.variant``)."""
        out = {**preset, **{k: exp.spec[k] for k in ("dataset", "per_class") if k in exp.spec}}
        if "original_epochs" in exp.spec:
            out["original_epochs"] = int(exp.spec["original_epochs"])
        out["dataset"] = preset.get("dataset_specs", {}).get(out["dataset"], out["dataset"])
        return out

    def data(self) -> Data:
        p = self.preset
        key = f"data/{p['dataset']}/{p.get('per_class')}/{val_fraction(p)}"
        return self._cached(
            key,
            lambda: load_data(
                p["dataset"], self.data_dir, p.get("per_class") or None, seed=0, val_fraction=val_fraction(p)
            ).to(self.device),
        )

    def _cached(self, key: str, make):
        if key not in self._memo:
            self._memo[key] = make()
        return self._memo[key]

    def variant(self, arch: str) -> str:
        """The artefact folder of ``arch``: its name plus a digest of what its original model is made from (data,
        cap, validation split, epochs, bf16, the experiment's model options), so a changed preset or two experiments
        with different settings never share an original. The offline and condensed files inside it are named by
        digests of their own settings (``offline``, ``condensed``)."""
        p = self.preset
        made_from = {
            "dataset": p["dataset"],
            "per_class": p.get("per_class"),
            "val_fraction": val_fraction(p),
            "original_epochs": p["original_epochs"],
            "bf16": p.get("bf16", False),
            "model_options": self.overrides.get(arch, {}).get("model_options") or None,
            "training": TRAINING_REVISION,
        }
        if p.get("original_train"):  # the originals' recipe beyond epochs (the benchmark's paper preset)
            made_from["original_train"] = p["original_train"]
        return f"{arch}-{_short_digest(made_from)}"

    def original(self, arch: str, seed: int = 0):
        """The original ``arch`` trained with ``seed`` (initialisation and data order; the reproduction uses seed 0
        for every cell, the benchmark one original per seed, as Deep Unlearn)."""
        cfg = TrainConfig.from_dict(
            {
                **self.preset.get("original_train", {}),
                "epochs": int(self.preset["original_epochs"]),
                "bf16": self.preset.get("bf16", False),
            }
        )
        mo = self.overrides.get(arch, {}).get("model_options") or None
        v = self.variant(arch)
        name = "original.pt" if seed == 0 else f"original-s{seed}.pt"
        return self._cached(
            f"orig/{v}/{seed}",
            lambda: original_model(
                self.root / v / name,
                self.data(),
                arch,
                cfg,
                device=self.device,
                seed=seed,
                model_options=mo,
                log=self.log,
                quiet=self.quiet,
            ),
        )

    def retrained(self, arch: str, forget: str, seed: int, options: dict[str, Any] | None = None):
        """Retraining on the retain set of ``forget`` drawn with ``seed``, from the same seed's original's split, as
        a file (model + the request's report, time included), so methods can measure their distance to it and a
        rerun reads it back: (model, report)."""
        from dcforget.checkpoint import load_checkpoint, save_checkpoint
        from dcforget.provenance import machine
        from unlearn.request import unlearn_request

        v = self.variant(arch)
        path = (
            self.root
            / v
            / f"retrain-{re.sub(r'[^A-Za-z0-9_.]+', '_', forget)}-{_short_digest(options or {})}-s{seed}.pt"
        )

        def make():
            if not path.exists():
                res = unlearn_request(
                    self.original(arch, seed),
                    self.data(),
                    forget,
                    "retrain",
                    device=self.device,
                    seed=seed,
                    quiet=self.quiet,
                    options=options,
                )
                keep = (
                    "retain_acc",
                    "forget_acc",
                    "val_acc",
                    "val_mia",
                    "test_acc",
                    "mia",
                    "indiscernibility",
                    "val_indiscernibility",
                    "time",
                    "forget_size",
                    "retain_size",
                    "options",
                )
                # what timed it, and in which invocation (a time read back from a file of another run is no
                # same-run reference: the leaderboard's retrain cell times retraining again)
                report = {
                    **{k: res.report.get(k) for k in keep},
                    "machine": machine(self.device),
                    "run_id": self.run_id,
                }
                save_checkpoint(path, res.model, {**self.data().split_meta(), "seed": seed, "retrain_report": report})
            ck = load_checkpoint(path, fingerprint=self.data().fingerprint())
            return ck.model.to(self.device), ck.meta.extra["retrain_report"]

        return self._cached(f"retrain/{path}", make)

    def condensed(
        self,
        arch: str,
        offline: bool = False,
        *,
        clusters: int | None = None,
        condenser: str = "fdm",
        ipc: int | None = None,
        source: str | None = None,
        extra: dict[str, Any] | None = None,
        offline_extra: dict[str, Any] | None = None,
        seed: int = 0,
    ):
        """The ``condenser`` file (K = ``clusters`` or the preset's) from the original's or the offline model's
        features; ``extra``: condenser options over the preset's (a variant's, e.g. the reference's FDM blend),
        ``offline_extra``: the offline phase's, as for ``offline``. Named by a digest of all of it."""
        k = int(clusters or self.preset["clusters"])
        v = self.variant(arch)
        options = {**self.preset.get("condense", {}).get(condenser, {}), **(extra or {})}
        if offline:
            model, _, off_name = self.offline(arch, ipc, source, offline_extra, with_name=True, seed=seed)
        else:
            model, off_name = self.original(arch, seed), None
        name = (
            f"{condenser}-K{k}-{'offline-' if offline else ''}"
            f"{_short_digest({'options': options, 'from': off_name, **({'seed': seed} if seed else {})})}"
            f"{f'-s{seed}' if seed else ''}.h5"
        )  # seed 0's name as before; other seeds' cluster with their seed
        return self._cached(
            f"cs/{v}/{name}",
            lambda: condensed_file(
                self.root / v / name,
                self.data(),
                model,
                condenser,
                clusters=k,
                options=options,
                device=self.device,
                seed=seed,
                log=self.log,
                quiet=self.quiet,
            ),
        )

    def offline(
        self,
        arch: str,
        ipc: int | None = None,
        source: str | None = None,
        extra: dict[str, Any] | None = None,
        *,
        with_name: bool = False,
        seed: int = 0,
    ):
        """DC-U's offline checkpoint of ``arch`` (from the original of ``seed``: the reproduction's seed 0, the
        benchmark's one per seed), its remembrance set of ``ipc`` images per class from ``source``
        ("heldout" training images or the "test" split, as the reference; default: the preset's); ``extra``:
        offline-phase options over the preset's (a variant's, e.g. the reference MLP's ``logit_relu``). Named by a
        digest of the options, the remembrance size and its source (and the seed where it is not 0)."""
        p = self.preset
        rem = p.get("remembrance", {})
        ipc = int(ipc if ipc is not None else rem.get("ipc", 10))
        source = source or rem.get("source", "heldout")
        opts = {
            **p.get("offline", {}),
            **(self.overrides.get(arch, {}).get("offline") or {}),
            **(extra or {}),
            "bf16": p.get("bf16", False),
        }
        name = f"offline-ipc{ipc}-{source}-{_short_digest(opts)}{f'-s{seed}' if seed else ''}.pt"
        v = self.variant(arch)
        model, tensors = self._cached(
            f"off/{v}/{name}",
            lambda: dcu_offline(
                self.root / v / name,
                self.data(),
                self.original(arch, seed),
                opts,
                ipc=ipc,
                source=source,
                data_dir=self.data_dir,
                device=self.device,
                log=self.log,
                quiet=self.quiet,
                seed=seed,
            ),
        )
        return (model, tensors, name) if with_name else (model, tensors)


# --------------------------------------------------------------------------------------------- experiment kinds
@dataclass
class Cell:
    experiment: str
    key: dict[str, Any]
    seed: int

    @property
    def id(self) -> str:
        parts = [re.sub(r"[^A-Za-z0-9_.]+", "_", str(v)) for v in self.key.values()]
        return "-".join(parts + [f"s{self.seed}"])


@dataclass(frozen=True)
class Kind:
    """An experiment kind: its grid of cells, how one cell runs, and how finished cells become report rows.
    ``columns``: (row key, header, format) of the kind's own table; None = the unlearning table (RA, FA, ..., the
    reference's numbers). ``inputs``: what a cell reads besides its settings and code (e.g. tuned option files),
    given the experiment's preset (``Workspace.experiment_preset``); it joins the cell's digest."""

    cells: Callable[[Experiment, int], list[Cell]]
    run: Callable[[Cell, Experiment, Workspace], dict[str, Any]]
    rows: Callable[[Experiment, list[dict[str, Any]]], list[dict[str, Any]]]
    columns: tuple[tuple[str, str, str], ...] | None = None
    inputs: Callable[[Cell, Experiment, dict[str, Any]], Any] | None = None


KINDS: Registry[Kind] = Registry("experiment kind")
