"""One condensation request, as a user states it: ``CondenseRequest`` (what `condense build` takes), validated as a
whole by ``prepare()`` before any work (the condenser and its options, ``--clusters``/``--ipc``, the checkpoint and
its dataset, the model to train when there is none, the output paths), then answered by ``run()``.

``condense_request`` is the one-call form (prepare, then run); ``condense.build.build_condensed`` stays the engine
under it for callers that already hold a model and data in memory. Every bad input raises a typed error
(``dcforget.errors``) from ``prepare()``; nothing is written before ``run()``, and ``run()`` writes atomically."""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from dcforget.checkpoint import load_checkpoint, read_checkpoint_meta, save_checkpoint
from dcforget.condensed_store import CondensedSet, write_condensed
from dcforget.config import parse_options, resolve_config, section
from dcforget.datasets import DEFAULT_VAL_FRACTION, load_data, parse_dataset_spec
from dcforget.errors import ConfigError
from dcforget.io import check_writable
from dcforget.models import MODELS
from dcforget.pairing import check_pairing
from dcforget.runtime import resolve_device
from dcforget.train import TrainConfig, checkpoint_meta, train_on

from .build import build_condensed, method_options
from .methods import CONDENSERS

DEFAULT_CONDENSER = "fdm"
DEFAULT_CLUSTERS = 450  # DC-U's K-means buckets per class
DEFAULT_MODEL = "cnn"  # what `condense build` trains when it is given no --checkpoint


def build_defaults() -> dict[str, Any]:
    """The registered defaults of a condensation request (what a preset, a config file and the flags override)."""
    return {
        "method": DEFAULT_CONDENSER,
        "seed": 0,
        "per_class": None,
        "val_fraction": DEFAULT_VAL_FRACTION,
        "model": DEFAULT_MODEL,
        "clusters": DEFAULT_CLUSTERS,
        "ipc": None,
        "train": TrainConfig().to_dict(),
        "condense": {},
    }


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@dataclass(frozen=True)
class CondenseRequest:
    """A condensation request. ``None`` means "not given": the checkpoint's setting (its cap, data seed and
    validation split), then the config file, the preset and :func:`build_defaults` fill it in. ``option_pairs``:
    the condenser's options as ``KEY=VALUE`` strings, parsed strictly. Without ``checkpoint``, a ``model`` is
    trained first and saved beside ``out`` as ``*-original.pt``."""

    dataset: str
    method: str | None = None
    clusters: int | None = None
    ipc: int | None = None
    checkpoint: str | os.PathLike | None = None
    model: str | None = None
    epochs: int | None = None
    option_pairs: tuple[str, ...] = ()
    data_dir: str | os.PathLike | None = None
    val_fraction: float | None = None
    per_class: int | None = None
    download: bool = True
    config_file: str | os.PathLike | None = None
    preset: str | None = None
    seed: int | None = None
    device: str | torch.device | None = None
    out: str | os.PathLike | None = None
    force: bool = False

    def prepare(self) -> "PreparedCondense":
        """Validate the whole request before any work: flags that conflict; the checkpoint (readable, made for this
        dataset); the resolved config; the condenser, its options and whether it takes ``clusters`` or ``ipc``; the
        architecture to train; the output paths (never overwritten without ``force``); the device."""
        if self.checkpoint is not None and (self.model is not None or self.epochs is not None):
            given = " and ".join(f for f, v in (("--model", self.model), ("--epochs", self.epochs)) if v is not None)
            raise ConfigError(
                f"--checkpoint and {given} conflict: --checkpoint gives the model, {given} would train one"
            )
        dataset_name = parse_dataset_spec(self.dataset)[0]
        defaults = build_defaults()
        overrides = {
            "method": self.method,
            "clusters": self.clusters,
            "ipc": self.ipc,
            "seed": self.seed,
            "per_class": self.per_class,
            "val_fraction": self.val_fraction,
            "model": self.model,
            "train": {"epochs": self.epochs},
        }
        if self.checkpoint is not None:
            # the condensed set is of the training set the model saw: its cap and data seed unless told otherwise
            meta, _ = read_checkpoint_meta(self.checkpoint)
            check_pairing(meta, where=f"checkpoint {self.checkpoint}", dataset=dataset_name)  # before any data
            defaults.update(
                per_class=meta.per_class, data_seed=meta.data_seed or 0, val_fraction=meta.val_fraction or 0.0
            )
        config = resolve_config(defaults, self.preset, self.config_file, overrides)
        if self.checkpoint is not None and self.per_class is None:
            config["per_class"] = defaults["per_class"]
        if self.checkpoint is not None and self.val_fraction is None:
            config["val_fraction"] = defaults["val_fraction"]
        config["dataset"] = self.dataset
        method = config["method"]
        condenser = CONDENSERS.get(method)
        table = section(config, "condense").get(method, {})
        if not isinstance(table, dict):
            raise ConfigError(f"config section [condense.{method}] must be a table")
        bucket = condenser.bucket_based
        if bucket and self.ipc is not None or not bucket and self.clusters is not None:
            takes, other = ("--clusters", "--ipc") if bucket else ("--ipc", "--clusters")
            raise ConfigError(f"method {method!r} takes {takes}, not {other}")
        options = {**table, **parse_options(self.option_pairs, condenser.defaults, f" of method {method!r}")}
        method_options(method, options)  # unknown keys, wrong types, negative counts: refused before any work
        if bucket:
            config["ipc"] = None
        else:
            config["clusters"] = None
            if not config["ipc"]:
                raise ConfigError(f"method {method!r} makes --ipc images per class: give --ipc N")
        n = config["clusters"] or config["ipc"]
        out_path = Path(self.out or f"runs/condensed/{self.dataset.split(':')[0]}-{method}-{n}.h5")
        check_writable(out_path, self.force)
        model_out = None
        if self.checkpoint is None:
            MODELS.get(config["model"])
            TrainConfig.from_dict(section(config, "train"))  # a bad [train] table fails now, not after loading
            model_out = out_path.with_name(out_path.stem + "-original.pt")
            check_writable(model_out, self.force)
        device = resolve_device(self.device)
        explicit_seed = self.seed is not None or self.checkpoint is None
        data_seed = config["seed"] if explicit_seed else config.get("data_seed", config["seed"])
        return PreparedCondense(self, config, method, options, out_path, model_out, device, data_seed)


@dataclass
class CondenseOutcome:
    """What a request made: the condensed set (written to ``out``), the seconds per phase, and, where the request
    trained its own model, where that went and its test accuracy."""

    condensed: CondensedSet
    seconds: dict[str, float]
    out: Path
    method: str
    model_out: Path | None = None
    model_test_acc: float | None = None
    config: dict[str, Any] = field(default_factory=dict)


@dataclass
class PreparedCondense:
    """A validated request; ``run()`` answers it."""

    request: CondenseRequest
    config: dict[str, Any]
    method: str
    options: dict[str, Any]
    out: Path
    model_out: Path | None
    device: torch.device
    data_seed: int

    def run(self, *, quiet: bool = False, log: Callable[[str], None] | None = None) -> CondenseOutcome:
        """Load the data, train the model where the request has no checkpoint (``log`` hears one line when it is
        saved), condense, and write the HDF5 file atomically."""
        r, config, dev = self.request, self.config, self.device
        data = load_data(
            r.dataset,
            r.data_dir,
            config["per_class"],
            seed=self.data_seed,
            download=r.download,
            val_fraction=config["val_fraction"],
        ).to(dev)
        test_acc = None
        if r.checkpoint is not None:
            ck = load_checkpoint(
                r.checkpoint,
                dataset=data.info.name,
                fingerprint=data.fingerprint(),
                image_shape=data.info.image_shape,
                num_classes=data.info.num_classes,
            )
            model, ck_path = ck.model, Path(r.checkpoint)
        else:
            cfg = TrainConfig.from_dict(section(config, "train"))
            trained = train_on(data, config["model"], cfg, seed=config["seed"], device=dev, quiet=quiet)
            save_checkpoint(
                self.model_out,
                trained.model,
                checkpoint_meta(data, cfg, config["seed"], trained, config),
                force=r.force,
            )
            test_acc = trained.test_eval.accuracy
            if log is not None:
                log(f"trained {config['model']}: test acc {100 * test_acc:.2f}%  -> {self.model_out}")
            model, ck_path = trained.model, self.model_out
        embedder = json.dumps({"arch": model.arch, "checkpoint": str(ck_path), "checkpoint_sha256": _sha256(ck_path)})
        res = build_condensed(
            data,
            self.method,
            model,
            device=dev,
            seed=config["seed"],
            clusters=config["clusters"],
            ipc=config["ipc"],
            options=self.options,
            embedder=embedder,
            config=config,
            quiet=quiet,
        )
        write_condensed(self.out, res.condensed, force=r.force)
        return CondenseOutcome(
            res.condensed, res.seconds, self.out, self.method, self.model_out, test_acc, config=config
        )


def condense_request(
    request: CondenseRequest, *, quiet: bool = False, log: Callable[[str], None] | None = None
) -> CondenseOutcome:
    """Validate ``request`` (:meth:`CondenseRequest.prepare`), then answer it (:meth:`PreparedCondense.run`)."""
    return request.prepare().run(quiet=quiet, log=log)
