"""The attack commands as requests: what a user (or the `attacks` CLI) states, validated as a whole by ``prepare()``
before any work, and answered by ``run()``, which writes the JSON report atomically where ``out`` is given.

- :class:`EpsilonRequest` (`attacks epsilon`): the NeurIPS-2023 unlearning-challenge score between unlearned and
  retrained checkpoints (the scoring loop is :func:`attacks.epsilon.score_checkpoints`).
- :class:`MiaRequest` (`attacks mia`), :class:`MetricsRequest` (`attacks metrics`), :class:`InvertRequest`
  (`attacks invert`), :class:`DefendRequest` (`attacks defend`).
- :class:`UliraRequest` (`attacks ulira`): U-LiRA over models trained on random halves of a dataset's pool
  (:mod:`attacks.ulira`), with its registered defaults :data:`ULIRA_DEFAULTS`. Tuned options are chosen by the rule
  `unlearn` follows (:func:`unlearn.tuned.choose_tuned`): a file is used only when its ``tuned_on`` matches the
  setting the attacked methods run in (dataset, model, the originals' training-set size -- half the pool -- and
  epochs, random forgetting); ``options_from`` forces files.

Every bad input raises a typed error (``dcforget.errors``) from ``prepare()``, and nothing is written before
``run()``."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from dcforget.checkpoint import CheckpointMeta, load_checkpoint, open_checkpoint, read_checkpoint_meta
from dcforget.config import parse_options, resolve_config, section
from dcforget.datasets import Data, load_data
from dcforget.errors import ConfigError, TrainingSetMismatchError
from dcforget.forget import ForgetContext, ForgetSpec, resolve_forget
from dcforget.io import atomic_path, atomic_paths, check_writable
from dcforget.metrics import population_mia
from dcforget.pairing import check_pairing
from dcforget.runtime import resolve_device
from dcforget.train import embed, evaluate
from unlearn.methods import METHODS
from unlearn.policy import candidate_tuned, method_label
from unlearn.tuned import Setting, TunedChoice, choose_tuned, forced_tuned, setting_mismatch

from .epsilon import EpsilonScore, epsilon_score, logit_confidence, score_checkpoints
from .roc import auc, tpr_at_fpr

ULIRA_DEFAULTS: dict[str, Any] = {
    "model": "mlp",
    "per_class": None,
    "splits": 64,
    "forget_sets": 4,
    "forget_fraction": 0.1,
    "forget_size": None,
    "targets": None,
    "splits_per_job": 8,
    "methods": ["finetune"],
    "clusters": None,
    "min_observations": 8,
    "bootstrap": 1000,
    "batched": True,
    "train": {"epochs": 30},
}
"""`attacks ulira`'s registered defaults (the ``[ulira]`` table of a preset or config file overrides them, and the
command's flags override that)."""


def forget_indices(meta: CheckpointMeta, spec: str | None, data: Data, seed: int, model) -> torch.Tensor:
    """The forget set an attack compares with: ``spec`` resolved on the checkpoint's training set (``model`` serves
    model-based specs), or, without one, what the checkpoint records it forgot."""
    if spec:
        ctx = ForgetContext(
            data.train.labels,
            data.info.num_classes,
            seed,
            data.info.class_names,
            extra={"model": model, "images": data.train.images},
        )
        return resolve_forget(ForgetSpec.parse(spec), ctx).forget  # the attack's one parse of --forget
    if meta.forgotten:
        return torch.tensor(meta.forgotten, dtype=torch.long)
    raise ConfigError("give --forget SPEC (this checkpoint records no forgotten samples)")


def same_training_set(paths: list) -> list[CheckpointMeta]:
    """The checkpoints' metadata, all made from one training set (dcforget.pairing's mismatch error otherwise)."""
    metas = [read_checkpoint_meta(p)[0] for p in paths]
    for p, m in zip(paths[1:], metas[1:]):
        check_pairing(m, where=f"checkpoint {p}", dataset=metas[0].dataset, fingerprint=metas[0].train_fingerprint)
        if m.train_fingerprint != metas[0].train_fingerprint:  # one of them records none: no proof they match
            raise TrainingSetMismatchError(
                f"checkpoint {p} and {paths[0]} cannot be shown to share a training set "
                "(one records no training-set fingerprint)"
            )
    return metas


def write_report(out: str | os.PathLike | None, force: bool, report: dict) -> None:
    """The report as JSON at ``out``, atomically (nothing where ``out`` is None)."""
    if out:
        with atomic_path(out, force=force) as tmp:
            tmp.write_text(json.dumps(report, indent=2))


# ------------------------------------------------------------------------------------------------ epsilon
@dataclass(frozen=True)
class EpsilonRequest:
    """`attacks epsilon`: at least two unlearned and as many retrained checkpoints of one training set; ``forget``
    None = what the unlearned models forgot (they must all have forgotten the same set)."""

    unlearned: tuple[str | os.PathLike, ...]
    retrained: tuple[str | os.PathLike, ...]
    forget: str | None = None
    data_dir: str | os.PathLike | None = None
    device: str | torch.device | None = None
    out: str | os.PathLike | None = None
    force: bool = False

    def prepare(self) -> "PreparedEpsilon":
        """Validate before any model is run: the counts, the output, one training set for every checkpoint, the
        forget set, and that every model forgot it (a retrained model never saw a forget example)."""
        unlearned, retrained = tuple(self.unlearned), tuple(self.retrained)
        if len(unlearned) < 2 or len(retrained) < 2:
            raise ConfigError("the epsilon metric needs at least 2 unlearned and 2 retrained models")
        if len(unlearned) != len(retrained):
            raise ConfigError(
                f"the epsilon metric compares as many unlearned as retrained models "
                f"(got {len(unlearned)} and {len(retrained)})"
            )
        if self.out:
            check_writable(self.out, self.force)
        metas = same_training_set([*unlearned, *retrained])
        data = metas[0].load_data(self.data_dir)
        device = resolve_device(self.device)
        forget = forget_indices(metas[0], self.forget, data, 0, None)
        wanted = forget.tolist()
        if self.forget is None:
            for i, (path, m) in enumerate(zip((*unlearned, *retrained), metas)):
                if sorted(m.forgotten) != wanted:
                    kind = "unlearned" if i < len(unlearned) else "retrained"
                    raise ConfigError(
                        f"{kind} checkpoint {path} forgot a different set than {unlearned[0]}; give --forget"
                    )
        else:  # the retrained models must never have seen a forget example
            for path, m in zip(retrained, metas[len(unlearned) :]):
                missing = set(wanted) - set(m.forgotten)
                if missing:
                    raise ConfigError(
                        f"retrained checkpoint {path} was trained with {len(missing)} of the "
                        f"{len(wanted)} --forget examples (it records no such forget request)"
                    )
        return PreparedEpsilon(self, data, forget, device)


@dataclass
class EpsilonOutcome:
    score: EpsilonScore
    report: dict[str, Any]
    forget_size: int
    ra_ratio: float
    ta_ratio: float


@dataclass
class PreparedEpsilon:
    request: EpsilonRequest
    data: Data
    forget: torch.Tensor
    device: torch.device

    def run(self) -> EpsilonOutcome:
        """Score every model on the forget set, retain and test accuracy; the epsilon score; the report (written to
        ``out``)."""
        r, data = self.request, self.data.to(self.device)
        u, ra_u, ta_u = score_checkpoints(r.unlearned, data, self.forget, self.device)
        t, ra_r, ta_r = score_checkpoints(r.retrained, data, self.forget, self.device)
        if ra_r == 0 or ta_r == 0:
            raise ConfigError(
                f"the retrained models' mean {'retain' if ra_r == 0 else 'test'} accuracy is 0: the final "
                f"score's accuracy ratio is undefined"
            )
        s = epsilon_score(u, t, ra_ratio=ra_u / ra_r, ta_ratio=ta_u / ta_r)
        report = {
            **s.summary(),
            "ra_unlearned": ra_u,
            "ra_retrained": ra_r,
            "ta_unlearned": ta_u,
            "ta_retrained": ta_r,
            "models": {"unlearned": list(map(str, r.unlearned)), "retrained": list(map(str, r.retrained))},
            "eps": s.eps.tolist(),
        }
        write_report(r.out, r.force, report)
        return EpsilonOutcome(s, report, len(self.forget), ra_u / ra_r, ta_u / ta_r)


def epsilon_request(request: EpsilonRequest) -> EpsilonOutcome:
    """Validate ``request``, then answer it."""
    return request.prepare().run()


# ------------------------------------------------------------------------------------------------ U-LiRA
def _method_named_by(path: str | os.PathLike) -> str | None:
    try:
        doc = json.loads(Path(path).read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None  # forced_tuned says what is wrong with the file
    return doc.get("method") if isinstance(doc, dict) and isinstance(doc.get("method"), str) else None


@dataclass(frozen=True)
class UliraRequest:
    """`attacks ulira`. ``None`` means "not given": the config file, the preset and :data:`ULIRA_DEFAULTS` fill it
    in. ``option_pairs``: ``KEY=VALUE`` method options, each applied to every method that has the key, over tuned
    options. ``tuned``: use tuned files whose setting matches (:func:`unlearn.tuned.choose_tuned`);
    ``options_from``: tuned files forced for the methods they name, whatever their setting, or ``POLICY.json#KIND``:
    the options a policy search chose on validation for each method label it has a study for. ``methods`` are
    labels: ``NAME``, or ``NAME (full)`` / ``NAME (reduced)`` for the retain source the method is served (the
    reduced set of an FDM file built per split, as for the condensed methods). ``pool_seed``: the seed of the capped
    pool's draw (``per_class`` images per class of the training set); another seed gives another pool, on which
    options can be chosen without reading the reported pool's attack."""

    dataset: str
    out: str | os.PathLike
    model: str | None = None
    epochs: int | None = None
    methods: tuple[str, ...] = ()
    option_pairs: tuple[str, ...] = ()
    tuned: bool = True
    options_from: tuple[str | os.PathLike, ...] = ()
    clusters: int | None = None
    splits: int | None = None
    forget_sets: int | None = None
    forget_fraction: float | None = None
    forget_size: int | None = None
    targets: int | None = None
    splits_per_job: int | None = None
    min_observations: int | None = None
    bootstrap: int | None = None
    per_class: int | None = None
    pool_seed: int = 0
    data_dir: str | os.PathLike | None = None
    store: str | os.PathLike = "runs/jobs"
    executor: str | None = None
    workers: int | None = None
    address: str | None = None
    preset: str | None = None
    config_file: str | os.PathLike | None = None
    seed: int = 0
    device: str | None = None
    force: bool = False

    def prepare(self) -> "PreparedUlira":
        """Validate before any job: the output and the job store, the resolved config, the methods and their
        options, the tuned files (chosen for the setting the methods run in), the setup (enough observations per
        example), and the dataset (loaded once here)."""
        from dcforget.jobs import JobStore

        from .ulira import UliraSetup, expected_observations

        if self.options_from and not self.tuned:
            raise ConfigError("--options-from and --untuned contradict each other: give one of them")
        check_writable(self.out, self.force)
        JobStore(self.store).check_writable()  # before any training, not after the first job
        overrides = {
            "model": self.model,
            "splits": self.splits,
            "forget_sets": self.forget_sets,
            "forget_fraction": self.forget_fraction,
            "forget_size": self.forget_size,
            "targets": self.targets,
            "splits_per_job": self.splits_per_job,
            "methods": list(dict.fromkeys(self.methods)) or None,
            "clusters": self.clusters,
            "min_observations": self.min_observations,
            "bootstrap": self.bootstrap,
            "per_class": self.per_class,
            "train": {"epochs": self.epochs},
        }
        config = resolve_config({"ulira": ULIRA_DEFAULTS}, self.preset, self.config_file, {"ulira": overrides})
        u = section(config, "ulira", set(ULIRA_DEFAULTS))
        method_names = list(u["methods"])  # labels: NAME, or NAME (full|reduced) for the retain source
        names = {m: method_label(m)[0] for m in method_names}
        known = {k: v for m in method_names for k, v in METHODS.get(names[m]).defaults.items()}
        parsed = parse_options(self.option_pairs, known)
        method_opts = {
            m: {k: v for k, v in parsed.items() if k in METHODS.get(names[m]).defaults} for m in method_names
        }
        setup = UliraSetup(
            self.dataset,
            u["model"],
            dict(u["train"]),
            method_opts,
            u["per_class"],
            self.pool_seed,
            u["splits"],
            u["forget_sets"],
            u["forget_fraction"],
            self.seed,
            u["clusters"],
            u["splits_per_job"],
            u["batched"],
            u["forget_size"],
            u["targets"],
        )
        # a bad dataset fails here, before any job; its pool gives the setting tuned files must match
        if isinstance(self.pool_seed, bool) or not isinstance(self.pool_seed, int) or self.pool_seed < 0:
            raise ConfigError(f"the pool's seed must be a whole number >= 0, got {self.pool_seed!r}")
        if self.pool_seed and not u["per_class"]:
            raise ConfigError("--pool-seed draws the capped pool: it needs a per-class cap (--per-class N)")
        pool = load_data(self.dataset, self.data_dir, u["per_class"], seed=self.pool_seed, val_fraction=0.0)
        seen = expected_observations(setup, len(pool.train))
        if seen < 2:
            raise ConfigError(
                f"an example would be forgotten in {seen:.1f} models on average: use more splits, forget sets or a "
                "larger forget fraction (or, for small forget sets, fewer --targets)"
            )
        if setup.targets is not None and setup.targets > len(pool.train):
            raise ConfigError(f"--targets {setup.targets} exceeds the pool ({len(pool.train)} examples)")
        here = self.setting(pool, u)
        choices = self._choose_tuned(method_names, here, ForgetSpec.parse(f"random:{u['forget_fraction']}"))
        used = {}
        for m, choice in choices.items():  # tuned options under the --option ones
            if choice.tuned is not None:
                method_opts[m] = {**choice.tuned.options, **method_opts[m]}
                used[m] = {"file": str(choice.tuned.path), "preset": choice.tuned.preset, **choice.tuned.summary}
        if used:  # the setup again, with the tuned options, checked as the methods will see them
            setup = UliraSetup(**{**setup.__dict__, "methods": method_opts})
        return PreparedUlira(self, config, u, setup, choices, used, here)

    def setting(self, pool: Data, u: dict[str, Any]) -> Setting:
        """The setting the attacked methods unlearn in: every original is trained on half of the pool (the capped
        training set, no validation split) for the configured epochs, and forgets random samples of its half."""
        return Setting(
            pool.info.name,
            u["model"],
            len(pool.train) // 2,
            int(u["train"].get("epochs", ULIRA_DEFAULTS["train"]["epochs"])),
            "random",
            u["per_class"],
            pool.info.num_classes,
        )

    def _choose_tuned(self, method_names: list[str], here: Setting, forget: ForgetSpec) -> dict[str, TunedChoice]:
        forced: dict[str, str | os.PathLike] = {}
        if self.options_from and not method_names:
            raise ConfigError("--options-from gives options for a method: name it with --method")
        choices: dict[str, TunedChoice] = {}
        source: dict[str, str] = {}  # label -> the --options-from value that covers it

        def cover(label: str, ref: str) -> None:
            if label in source:
                raise ConfigError(f"--options-from gives two sources for {label!r}: {source[label]}, {ref}")
            source[label] = ref

        for ref in map(str, self.options_from):  # POLICY.json#KIND: each method label its search has a study for
            if "#" not in ref:
                continue
            found = {m: candidate_tuned(ref, m) for m in method_names}
            found = {m: t for m, t in found.items() if t is not None}
            if not found:
                raise ConfigError(
                    f"--options-from {ref}: none of {', '.join(method_names)} is a candidate of that entry (name them "
                    "as its rows are: METHOD (full) or METHOD (reduced))"
                )
            for m, t in found.items():
                cover(m, ref)
                choices[m] = TunedChoice(t, setting_mismatch(t.setting, here), forced=True)
        for path in (str(p) for p in self.options_from if "#" not in str(p)):
            m = _method_named_by(path)
            # every label of that method, else the first label (forced_tuned names the mismatch)
            targets = [x for x in method_names if method_label(x)[0] == m] or method_names[:1]
            for target in targets:
                cover(target, path)
                forced[target] = path
        for m in method_names:
            name = method_label(m)[0]
            known = METHODS.get(name).defaults
            if m in choices:
                continue
            if m in forced:  # the same check `unlearn --options-from` makes
                choices[m] = forced_tuned(forced[m], name, known, here)
            elif self.tuned:  # the same rule `unlearn` follows: only a file tuned on this setting
                choices[m] = choose_tuned(name, here, known, forget)
            else:
                choices[m] = TunedChoice(None, None, off=True)
        return choices


@dataclass
class PreparedUlira:
    request: UliraRequest
    config: dict[str, Any]
    resolved: dict[str, Any]  # the [ulira] table, resolved
    setup: Any  # attacks.ulira.UliraSetup
    tuned_choices: dict[str, TunedChoice] = field(default_factory=dict)
    tuned: dict[str, Any] = field(default_factory=dict)  # method -> the tuned file used (the report's "tuned")
    setting: Setting | None = None

    def run(self, *, quiet: bool = False) -> dict[str, Any]:
        """Train (or read back) every job, attack, and write the report to ``out``; returns it."""
        from dcforget.jobs import make_executor
        from dcforget.provenance import run_meta

        from .ulira import report, run

        r, u = self.request, self.resolved
        with make_executor(r.executor or "local", workers=r.workers or 1, address=r.address) as ex:
            grid = run(self.setup, r.store, executor=ex, data_dir=r.data_dir, device=r.device, quiet=quiet)
            rep = report(self.setup, grid, min_observations=u["min_observations"], bootstrap=u["bootstrap"])
            rep["executor"] = ex.describe()
        rep = {
            "meta": run_meta(resolve_device(r.device), seed=r.seed),
            "config": self.config,
            "tuned": self.tuned,
            "tuned_choice": {
                m: c.record() for m, c in self.tuned_choices.items()
            },  # which file each method used, or why none, against this setting
            "tuned_setting": self.setting.to_dict() if self.setting else None,
            **rep,
        }
        write_report(r.out, r.force, rep)
        return rep


def ulira_request(request: UliraRequest, *, quiet: bool = False) -> dict[str, Any]:
    """Validate ``request``, then answer it; returns the report."""
    return request.prepare().run(quiet=quiet)


PAIRED_SETUP_KEYS = ("dataset", "arch", "train", "per_class", "data_seed", "splits", "forget_sets", "forget_fraction",
                     "seed", "forget_size", "targets")  # fmt: skip


@dataclass
class UliraCompareRequest:
    """`attacks ulira-compare`: the AUC of ``variant`` in report ``a`` minus that of ``against`` (default: the same
    variant) in report ``b``, with a paired 95% interval (:func:`attacks.ulira.paired_auc_difference`). The two
    reports must share the models that pairing relies on: the pool, the splits, the forget sets and the seed
    (``PAIRED_SETUP_KEYS``); they may differ in their methods and options. ``variant`` None: the report's only
    method variant (not original or retrained)."""

    a: str | os.PathLike
    b: str | os.PathLike
    variant: str | None = None
    against: str | None = None
    out: str | os.PathLike | None = None  # the comparison as JSON (with its provenance), atomically
    force: bool = False

    def compare(self) -> dict[str, Any]:
        from dcforget.provenance import run_meta

        from .ulira import REFERENCE_VARIANTS, paired_auc_difference

        if self.out:
            check_writable(self.out, self.force)
        reports = [_read_ulira(p) for p in (self.a, self.b)]
        differ = [k for k in PAIRED_SETUP_KEYS if reports[0]["setup"].get(k) != reports[1]["setup"].get(k)]
        if differ:
            raise ConfigError(f"the reports' models differ in {', '.join(differ)}: only the same pool pairs up")
        names = []
        for rep, path, want in ((reports[0], self.a, self.variant), (reports[1], self.b, self.against or self.variant)):
            if want is None:
                methods = [v for v in rep["attacks"] if v not in REFERENCE_VARIANTS]
                if len(methods) != 1:
                    raise ConfigError(
                        f"{path} has method variants {', '.join(methods) or 'none'}: name one (--variant)"
                    )
                want = methods[0]
            if want not in rep["attacks"]:
                raise ConfigError(f"{path} has no variant {want!r}; it has: {', '.join(rep['attacks'])}")
            names.append(want)
        out = paired_auc_difference(reports[0]["attacks"][names[0]], reports[1]["attacks"][names[1]])
        git = [r["meta"].get("git") if isinstance(r.get("meta"), dict) else None for r in reports]
        sides = [{"report": str(p), "variant": v, "git": g} for p, v, g in
                 zip((self.a, self.b), names, git)]  # fmt: skip
        result = {"meta": run_meta(), "a": sides[0], "b": sides[1], **out}
        write_report(self.out, self.force, result)
        return result


def _read_ulira(path: str | os.PathLike) -> dict[str, Any]:
    """A U-LiRA report (JSON only, nothing else is loaded)."""
    try:
        rep = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, ValueError, RecursionError) as err:  # ValueError: bad JSON, bad text, too long an integer
        raise ConfigError(f"{path} is not a readable JSON report ({type(err).__name__})") from None
    if not isinstance(rep, dict) or not isinstance(rep.get("attacks"), dict) or not isinstance(rep.get("setup"), dict):
        raise ConfigError(f"{path} is not a U-LiRA report (`attacks ulira --out`): no setup and attacks")
    return rep


# ------------------------------------------------------------------------------------------------ one model
def open_one(checkpoint, data_dir, device, out, force) -> tuple[CheckpointMeta, Data, Any, torch.device]:
    """Check the output, load the checkpoint's dataset (same cap and seed) and the model on the device."""
    if out:
        check_writable(out, force)
    ck, data = open_checkpoint(checkpoint, data_dir)
    dev = resolve_device(device)
    return ck.meta, data, ck.model.to(dev), dev


@dataclass(frozen=True)
class MiaRequest:
    """`attacks mia`: the population MIA on one checkpoint, forget set (members) against the test set
    (non-members), with ROC AUC and TPR at low FPR, SSD's entropy attack and, with ``svc``, SalUn's SVC-MIA."""

    checkpoint: str | os.PathLike
    forget: str | None = None
    data_dir: str | os.PathLike | None = None
    seed: int = 0
    device: str | torch.device | None = None
    out: str | os.PathLike | None = None
    force: bool = False
    svc: bool = False
    svc_max: int | None = None

    def prepare(self) -> "PreparedOneModel":
        """The output, the checkpoint with its dataset, and the forget set, checked before any attack."""
        meta, data, model, dev = open_one(self.checkpoint, self.data_dir, self.device, self.out, self.force)
        data = data.to(dev)
        forget = forget_indices(meta, self.forget, data, self.seed, model).to(data.train.labels.device)
        return PreparedOneModel(self, meta, data, model, dev, forget)


@dataclass(frozen=True)
class MetricsRequest:
    """`attacks metrics`: DC-U's unlearning metric (gradient matching, forget vs retain) and the overfitting metric
    on the forget set, of one checkpoint."""

    checkpoint: str | os.PathLike
    forget: str | None = None
    data_dir: str | os.PathLike | None = None
    seed: int = 0
    device: str | torch.device | None = None
    out: str | os.PathLike | None = None
    force: bool = False

    def prepare(self) -> "PreparedOneModel":
        """The output, the checkpoint with its dataset, and the forget set, checked before any attack."""
        meta, data, model, dev = open_one(self.checkpoint, self.data_dir, self.device, self.out, self.force)
        forget = forget_indices(meta, self.forget, data, self.seed, model)
        return PreparedOneModel(self, meta, data, model, dev, forget)


@dataclass
class PreparedOneModel:
    """A validated one-model request (:class:`MiaRequest` or :class:`MetricsRequest`); ``run()`` answers it and
    returns the report (also written to ``out``)."""

    request: MiaRequest | MetricsRequest
    meta: CheckpointMeta
    data: Data
    model: Any
    device: torch.device
    forget: torch.Tensor

    def run(self) -> dict[str, Any]:
        rep = self._mia() if isinstance(self.request, MiaRequest) else self._metrics()
        write_report(self.request.out, self.request.force, rep)
        return rep

    def _mia(self) -> dict[str, Any]:
        from .mia_variants import entropy_lr_mia, svc_mia

        r, data, model, dev, forget = self.request, self.data, self.model, self.device, self.forget
        f = evaluate(model, data.train.images[forget], data.train.labels[forget], device=dev)
        t = evaluate(model, data.test.images, data.test.labels, device=dev)
        res = population_mia(f.losses, t.losses, seed=r.seed)
        rep = {
            "checkpoint": str(r.checkpoint),
            "members": len(forget),
            "non_members": len(t),
            "mia": res.accuracy,
            "mia_splits": res.split_accuracies,
            "indiscernibility": res.indiscernibility,
            "forget_acc": f.accuracy,
            "test_acc": t.accuracy,
            "seed": r.seed,
        }
        keep = torch.ones(len(data.train), dtype=torch.bool, device=forget.device)
        keep[forget] = False
        logits = lambda images: embed(model, images, device=dev, logits=True).cpu()
        sets = {
            "retain": (data.train.images[keep], data.train.labels[keep]),
            "test": (data.test.images, data.test.labels),
            "forget": (data.train.images[forget], data.train.labels[forget]),
        }
        outs = {k: (logits(x), y.cpu()) for k, (x, y) in sets.items()}
        cf, ct = logit_confidence(*outs["forget"]), logit_confidence(*outs["test"])  # ROC score: no saturation
        rep.update(
            auc=auc(cf, ct),
            tpr_at_1pct_fpr=tpr_at_fpr(cf, ct, 0.01),
            **{"tpr_at_0.1pct_fpr": tpr_at_fpr(cf, ct, 0.001)},
        )
        rep["entropy_lr_forget_member_rate"] = entropy_lr_mia(outs["retain"], outs["test"], outs["forget"], seed=r.seed)
        if r.svc:
            rep["svc_mia"] = svc_mia(outs["retain"], outs["test"], outs["forget"], max_per_side=r.svc_max, seed=r.seed)
        return rep

    def _metrics(self) -> dict[str, Any]:
        from dcforget.overfit import overfitting_scores

        from .unlearning_metric import unlearning_metric

        data, model, forget = self.data, self.model, self.forget
        keep = torch.ones(len(data.train), dtype=torch.bool)
        keep[forget] = False
        retain = torch.nonzero(keep).flatten()
        um = unlearning_metric(model, data.train.images, data.train.labels, forget, retain)
        over = overfitting_scores(model, data.train.images[forget], data.train.labels[forget])
        return {
            **um,
            "overfitting_metric_forget_mean": float(over.mean()),
            "forget_size": len(forget),
            "checkpoint": str(self.request.checkpoint),
        }


# ------------------------------------------------------------------------------------------------ inversion
@dataclass(frozen=True)
class InvertRequest:
    """`attacks invert`: model inversion of one or more checkpoints of one training set (``how``: ``"class"``,
    class-representative inputs, or ``"condensive"``, DC-U's generator inversion), scored against the forget set;
    one PNG grid per model and ``report.json`` in the directory ``out``, all or none."""

    checkpoints: tuple[str | os.PathLike, ...]
    out: str | os.PathLike
    forget: str | None = None
    evaluator: str | os.PathLike | None = None
    how: str = "class"
    per_class: int = 2
    steps: int = 300
    pool: str = "test"
    pool_per_class: int | None = None
    data_dir: str | os.PathLike | None = None
    seed: int = 0
    device: str | torch.device | None = None
    force: bool = False

    def prepare(self) -> "PreparedInvert":
        """Every output file, one training set for every checkpoint, the forget set and the evaluator, checked
        before any inversion."""
        out = Path(self.out)
        paths = list(self.checkpoints)
        names = [Path(c).parent.name if Path(c).name == "model.pt" else Path(c).stem for c in paths]
        if len(set(names)) != len(names):
            names = [f"{i}-{n}" for i, n in enumerate(names)]
        for n in names:
            check_writable(out / f"{n}.png", self.force)
        check_writable(out / "report.json", self.force)
        metas = same_training_set(paths)
        data = metas[0].load_data(self.data_dir)
        dev = resolve_device(self.device)
        first = load_checkpoint(paths[0], fingerprint=data.fingerprint()).model.to(dev)
        forget = forget_indices(metas[0], self.forget, data, self.seed, first)
        ev = load_checkpoint(self.evaluator, dataset=data.info.name).model.to(dev) if self.evaluator else None
        return PreparedInvert(self, names, data, dev, forget, ev)


@dataclass
class PreparedInvert:
    request: InvertRequest
    names: list[str]
    data: Data
    device: torch.device
    forget: torch.Tensor
    evaluator: Any

    def run(self, *, quiet: bool = False, log: Callable[[str], None] | None = None) -> dict[str, Any]:
        """Invert every model (``log`` hears one line per model), then write the grids and the report together;
        returns the report."""
        from dcforget.images import save_grid

        from .inversion import condensive_invert, invert_classes, score_reconstructions

        r, data, dev, ev, out = self.request, self.data, self.device, self.evaluator, Path(self.request.out)
        fx, fy = data.train.images[self.forget], data.train.labels[self.forget]
        classes = sorted(set(fy.tolist()))
        report: dict[str, Any] = {
            "forget_size": len(self.forget),
            "classes": classes,
            "method": r.how,
            "per_class": r.per_class,
            "steps": r.steps,
            "pool": r.pool if r.how == "condensive" else None,
            "pool_per_class": r.pool_per_class,
            "models": {},
        }
        grids = []
        for path, name in zip(r.checkpoints, self.names):
            model = load_checkpoint(path, fingerprint=data.fingerprint()).model.to(dev)
            if r.how == "class":
                recon, targets = invert_classes(
                    model,
                    data.info.num_classes,
                    data.info.image_shape,
                    per_class=r.per_class,
                    steps=r.steps,
                    seed=r.seed,
                    classes=classes,
                )
            else:
                recon, targets = condensive_invert(
                    model,
                    data,
                    pool=r.pool,
                    subclasses=r.per_class,
                    epochs=r.steps,
                    classes=classes,
                    seed=r.seed,
                    pool_per_class=r.pool_per_class,
                    quiet=quiet,
                )
            grids.append([recon[targets == c] for c in classes])
            report["models"][name] = {"checkpoint": str(path), **score_reconstructions(recon, targets, fx, fy, ev)}
            m = report["models"][name]
            if log is not None:
                log(
                    f"{name}: SSIM to nearest forget image {m['ssim']:.3f}"
                    + (
                        f", feature cosine {m['feature_cosine']:.3f}, evaluator acc {m['evaluator_accuracy']:.2f}"
                        if ev
                        else ""
                    )
                    + f" -> {out / (name + '.png')}"
                )
        files = [*(out / f"{n}.png" for n in self.names), out / "report.json"]
        with atomic_paths(files, force=r.force) as tmps:  # all or none
            for rows, tmp in zip(grids, tmps):
                save_grid(rows, tmp, columns=r.per_class, scale=3, force=True)
            tmps[-1].write_text(json.dumps(report, indent=2))
        return report


# ------------------------------------------------------------------------------------------------ defenses
@dataclass(frozen=True)
class DefendRequest:
    """`attacks defend`: DC-U's MU-regularisation (unlearn the samples the overfitting metric flags) against a
    DP-SGD baseline (``dp``; needs Opacus). Writes ``mu-regularised.pt`` and ``report.json`` into ``out``, both or
    neither. ``method`` None = the default method when a condensed file is given."""

    checkpoint: str | os.PathLike
    out: str | os.PathLike
    condensed_file: str | os.PathLike | None = None
    method: str | None = None
    option_pairs: tuple[str, ...] = ()
    dp: bool = True
    dp_epsilon: float = 10.0
    dp_delta: float = 1e-5
    dp_epochs: int = 30
    dp_lr: float = 1e-3
    dp_batch_size: int = 256
    dp_max_grad_norm: float = 1.0
    data_dir: str | os.PathLike | None = None
    seed: int = 0
    device: str | torch.device | None = None
    force: bool = False

    def prepare(self) -> "PreparedDefend":
        """The method and its options, both outputs, the checkpoint with its dataset and the condensed file, checked
        before any training."""
        from dcforget.condensed_store import read_condensed
        from unlearn.methods import DEFAULT_METHOD

        method = self.method or (DEFAULT_METHOD if self.condensed_file else None)
        if method is None:
            raise ConfigError("give --from-condensed FILE (the default method) or --method NAME")
        opts = parse_options(self.option_pairs, METHODS.get(method).defaults)
        out = Path(self.out)
        model_path, report_path = out / "mu-regularised.pt", out / "report.json"
        check_writable(model_path, self.force)
        check_writable(report_path, self.force)
        meta, data, model, dev = open_one(self.checkpoint, self.data_dir, self.device, None, self.force)
        condensed = read_condensed(self.condensed_file) if self.condensed_file else None
        return PreparedDefend(self, method, opts, meta, data.to(dev), model, dev, condensed, model_path, report_path)


@dataclass
class PreparedDefend:
    request: DefendRequest
    method: str
    options: dict[str, Any]
    meta: CheckpointMeta
    data: Data
    model: Any
    device: torch.device
    condensed: Any
    model_path: Path
    report_path: Path

    def run(self, *, quiet: bool = False) -> dict[str, Any]:
        """MU-regularise, train the DP-SGD baseline, compare the three models; write both outputs; returns the
        report (``models``: one row per model)."""
        import time

        from dcforget.checkpoint import save_checkpoint

        from .defend import mu_regularise, privacy_report, train_dp

        r, data, dev, model = self.request, self.data, self.device, self.model
        res = mu_regularise(
            model,
            data,
            method=self.method,
            options=self.options,
            condensed=self.condensed,
            device=dev,
            seed=r.seed,
            quiet=quiet,
        )
        overfit = res.split.forget
        rows = {
            "original": privacy_report(model, data, overfit, dev, r.seed),
            "mu-regularised": {
                **privacy_report(res.model, data, overfit, dev, r.seed),
                "seconds": res.report["time"]["total_s"],
            },
        }
        report = {
            "checkpoint": str(r.checkpoint),
            "method": self.method,
            "options": self.options,
            "overfit_size": len(overfit),
            "train_size": len(data.train),
            "seed": r.seed,
            "unlearning_report": res.report,
            "models": rows,
        }
        if r.dp:
            t0 = time.perf_counter()
            dp_model, info = train_dp(
                data,
                model,
                epochs=r.dp_epochs,
                lr=r.dp_lr,
                batch_size=r.dp_batch_size,
                target_epsilon=r.dp_epsilon,
                delta=r.dp_delta,
                max_grad_norm=r.dp_max_grad_norm,
                device=dev,
                seed=r.seed,
            )
            rows["dp-sgd"] = {
                **privacy_report(dp_model, data, overfit, dev, r.seed),
                **info,
                "seconds": time.perf_counter() - t0,
            }
        meta = self.meta
        new_meta = {
            k: v
            for k, v in meta.to_dict().items()
            if k not in ("model", "toolkit_version", "torch_version", "created_utc", "metrics", "history")
        }
        new_meta.update(
            unlearned_from=str(r.checkpoint),
            unlearn_method=self.method,
            forgotten=overfit.tolist(),
            requests=[*meta.requests, "overfit"],
        )
        paths = [self.model_path, self.report_path]
        with atomic_paths(paths, force=r.force) as (tmp_model, tmp_report):  # both or neither
            save_checkpoint(tmp_model, res.model, new_meta, force=True)
            tmp_report.write_text(json.dumps(report, indent=2))
        return report


__all__ = [
    "ULIRA_DEFAULTS",
    "DefendRequest",
    "InvertRequest",
    "MetricsRequest",
    "MiaRequest",
    "PreparedDefend",
    "PreparedInvert",
    "PreparedOneModel",
    "open_one",
    "EpsilonOutcome",
    "EpsilonRequest",
    "PreparedEpsilon",
    "PreparedUlira",
    "UliraRequest",
    "epsilon_request",
    "forget_indices",
    "same_training_set",
    "ulira_request",
    "write_report",
]
