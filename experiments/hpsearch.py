"""Hyperparameter search for an unlearning method, Deep Unlearn's protocol on the validation split
(../shared/reference/unlearning-methods.md §1.2; `munl/hpsearch`), on Optuna and the many-model engine.

A *study* tunes one method for one setup (dataset, per-class cap, validation fraction, model, the originals'
training, forget spec, seeds). Per seed there is an original (trained with that seed) and a retraining on its
retain set (the same seed, so the same initialisation where the architecture allows: Deep Unlearn's originals and
retrained models share their initial weights); a seed varies the original's and the retraining's initialisation
and data order, the forget draw, and the method's randomness. A trial runs the method on every seed's original and
scores it, per seed, against that seed's retraining on four objectives (Deep Unlearn's ``objective10``):

    |dRA| / 3, |dFA| / 3, |dVA| / 3 (accuracies as fractions), 1 - indiscernibility(validation MIA)

with the indiscernibility 1 - |MIA - 0.5| / 0.5 of the population MIA of forget vs *validation* images. The trial's
objectives are the means over seeds; the sampler is NSGA-III (multi-objective); the chosen trial is the complete
trial with the smallest Euclidean norm of that mean 4-vector (Deep Unlearn: ``get_best_trials``). Nothing here
reads the test split: test accuracy and the test MIA are recorded for reports, never given to the sampler.

A method that reads the validation split inside itself (``reads_validation`` in the registry: ``condensed``'s
ascent target, ``mia-guided``'s non-members, ``scrub``'s rewind, ``lrp-npp``'s relevance images) would otherwise be
chosen on the images it trained against. Its study (``StudySetup.validation = "halves"``, set by `experiments tune`
for such a method) serves it only the *method half* of the validation split and reads VA and the validation MIA on
the *selection half* only (``dcforget.datasets.validation_halves``: stratified, seeded), for the method's runs and
the retraining references alike. Every other method's study keeps the whole validation split (``"whole"``, the
default, which the setup's JSON leaves out so that earlier studies keep their digests).

Differences from Deep Unlearn, on purpose: one study per (method, setup) whose trials each run every seed
(Deep Unlearn runs one study per seed and picks across them), so the chosen hyperparameters are the ones that work
across initialisations, not on one; and every (trial, seed) unlearning run is a job of ``dcforget.jobs``
(content-addressed, so an interrupted study re-reads finished runs and a rerun computes nothing).

Storage: Optuna's journal file (``JournalFileBackend``; safe for several processes) or a database URL the user
gives. A study resumes: complete trials are kept, trials left running by an interrupted search are evaluated again
(their jobs are read back where they finished) and told."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import math
import os
import socket
import statistics
import time
import warnings
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Callable

import torch

from dcforget.datasets import Data, load_data
from dcforget.errors import ConfigError, DivergedError
from dcforget.forget import ForgetSpec
from dcforget.jobs import STALE_AFTER_S, THIS_RUN, Executor, GridRun, JobStore, job_key, pid_alive, run_jobs
from dcforget.space import Choice, Fixed, Float, Int, Space, describe, resolve
from dcforget.train import TRAINING_REVISION, TrainConfig
from unlearn.methods import METHODS
from unlearn.tuned import Setting, ran_options

from .artefacts import original_model

OBJECTIVES = ("retain_gap", "forget_gap", "val_gap", "val_mia_distinguishability")
OBJECTIVE_SETS = {
    "deep-unlearn": OBJECTIVES,  # Deep Unlearn's objective10, faithful
    "ours": ("retain_gap", "forget_gap", "val_gap", "val_mia_gap"),  # distance to retraining, under a time bound
}
MAX_TIME_RATIO = 0.1
"""The ``ours`` objective's bound: a trial whose whole-request time exceeds this fraction of retraining's (mean over
seeds) is infeasible (NSGA-III's constraint) and never chosen while a feasible trial exists."""
JOB_VERSION = "1"

TUNE_DEFAULTS: dict[str, Any] = {
    "model": "mlp",
    "per_class": None,
    "val_fraction": 0.15,
    "forget": "random:0.1",
    "seeds": 3,
    "trials": 20,
    "population": None,
    "train": {"epochs": 30},
    "clusters": 10,
    "base_options": {},
}
"""`experiments tune`'s registered defaults: the ``[tune]`` table of a preset or config file overrides them, and the
command's flags override that."""


@dataclass(frozen=True)
class StudySetup:
    """What a study is about; its JSON form keys the study, its jobs and the tuned-config file."""

    dataset: str
    model: str
    per_class: int | None = None
    val_fraction: float = 0.15
    forget: str = "random:0.1"
    seeds: tuple[int, ...] = (0, 1, 2)
    train: dict[str, Any] = field(default_factory=lambda: TrainConfig().to_dict())  # the originals' and retraining's
    model_options: dict[str, Any] = field(default_factory=dict)
    condense: dict[str, Any] = field(default_factory=lambda: {"condenser": "fdm", "clusters": 10, "options": {}})
    offline: dict[str, Any] = field(default_factory=dict)  # DC-U's offline phase (dcu-reference), over its defaults
    remembrance_ipc: int = 10
    validation: str = "whole"  # "halves": the method reads the method half, objectives the selection half
    retain: str = "full"  # the retain set the method is served: "full", or "reduced" (the condensed file's)

    def __post_init__(self) -> None:
        if self.validation not in ("whole", "halves"):
            raise ConfigError(f"a study's validation is whole or halves, not {self.validation!r}")
        if self.retain not in ("full", "reduced"):
            raise ConfigError(f"a study's retain source is full or reduced, not {self.retain!r}")
        if not self.seeds or len(set(self.seeds)) != len(self.seeds):
            raise ConfigError("a study needs one or more distinct seeds")
        if not 0 < self.val_fraction < 1:
            raise ConfigError("a study needs a validation split: val_fraction in (0, 1) (its objectives read it)")
        TrainConfig.from_dict(self.train)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["seeds"] = list(self.seeds)
        for key, default in (("validation", "whole"), ("retain", "full")):
            if d[key] == default:  # defaults left out: setups written before these fields keep their digest
                del d[key]
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "StudySetup":
        return cls(**{**d, "seeds": tuple(d["seeds"])})

    @property
    def train_epochs(self) -> int:
        return int(self.train["epochs"])

    def digest(self, **more: Any) -> str:
        return hashlib.sha256(json.dumps({**self.to_dict(), **more}, sort_keys=True).encode()).hexdigest()[:12]

    def artefact_digest(self) -> str:
        """The digest the originals and their condensed files are named by: the retain source a method is served
        does not change them (a full- and a reduced-retain study share one original per seed); the trainers'
        revision does (``dcforget.train.TRAINING_REVISION``)."""
        return replace(self, retain="full").digest(training=TRAINING_REVISION)

    @property
    def reference(self) -> "StudySetup":
        """The setup the retraining reference runs under: the full retain set, whatever the method is served."""
        return replace(self, retain="full")


# ------------------------------------------------------------------------------------------------ jobs
@functools.lru_cache(maxsize=4)
def _data(setup_json: str, data_dir: str | None, device: str) -> Data:
    s = StudySetup.from_dict(json.loads(setup_json))
    return load_data(s.dataset, data_dir, s.per_class, seed=0, val_fraction=s.val_fraction).to(torch.device(device))


def _original(s: StudySetup, seed: int, root: Path, data: Data, device: torch.device):
    path = root / "originals" / f"{s.dataset.split(':')[0]}-{s.model}-{s.artefact_digest()}-s{seed}.pt"
    return original_model(
        path,
        data,
        s.model,
        TrainConfig.from_dict(s.train),
        device=device,
        seed=seed,
        model_options=s.model_options or None,
    )


def _artefacts(
    s: StudySetup, seed: int, root: Path, data: Data, device: torch.device, method: str, context: dict[str, Any]
):
    """(start model, condensed set or None, offline tensors or None) of ``method`` on one seed's original: the
    condensed file of the original (``needs_condensed``), or DC-U's offline phase and the condensed file of its
    model (``needs_offline``). Files under ``root``, named by the setup's digest and the seed."""
    from .artefacts import condensed_file, dcu_offline

    m = METHODS.get(method)
    original = _original(s, seed, root, data, device)
    stem = root / "originals" / f"{s.dataset.split(':')[0]}-{s.model}-{s.artefact_digest()}-s{seed}"
    c = s.condense
    if m.needs_offline:
        model, tensors = dcu_offline(
            f"{stem}-offline.pt",
            data,
            original,
            {**s.offline},
            ipc=s.remembrance_ipc,
            data_dir=context.get("data_dir"),
            device=device,
            seed=seed,
        )
        cs = condensed_file(
            f"{stem}-offline-{c['condenser']}-K{c['clusters']}.h5",
            data,
            model,
            c["condenser"],
            clusters=c["clusters"],
            options=c.get("options"),
            device=device,
            seed=seed,
        )
        return model, cs, tensors
    if m.needs_condensed or s.retain == "reduced":
        cs = condensed_file(
            f"{stem}-{c['condenser']}-K{c['clusters']}.h5",
            data,
            original,
            c["condenser"],
            clusters=c["clusters"],
            options=c.get("options"),
            device=device,
            seed=seed,
        )
        return original, cs, None
    return original, None, None


def original_job(spec: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """Make (or read back) one seed's original and the artefacts ``spec["methods"]`` need (condensed files, DC-U's
    offline phase); files under ``context["root"]``. Run before the unlearning jobs, so one process writes each."""
    s = StudySetup.from_dict(spec["setup"])
    device = torch.device(context.get("device", "cpu"))
    data = _data(json.dumps(s.to_dict(), sort_keys=True), context.get("data_dir"), str(device))
    for method in spec.get("methods", ["retrain"]):
        _artefacts(s, int(spec["seed"]), Path(context["root"]), data, device, method, context)
    return {"seed": int(spec["seed"])}


def unlearn_job(spec: dict[str, Any], context: dict[str, Any]) -> dict[str, Any]:
    """One method with one set of options on one seed's original: the request's metrics (validation and test),
    seconds, and what the method reports. The retraining reference is this job with method "retrain"."""
    from unlearn.request import unlearn_request

    s = StudySetup.from_dict(spec["setup"])
    seed = int(spec["seed"])
    device = torch.device(context.get("device", "cpu"))
    data = _data(json.dumps(s.to_dict(), sort_keys=True), context.get("data_dir"), str(device))
    start, condensed, tensors = _artefacts(s, seed, Path(context["root"]), data, device, spec["method"], context)
    try:
        res = unlearn_request(
            start,
            data,
            s.forget,
            spec["method"],
            device=device,
            seed=seed,
            quiet=True,
            options=spec["options"],
            condensed=condensed,
            artefacts=tensors,
            validation=s.validation,
            retain=s.retain,
        )
    except DivergedError as err:  # a legitimate outcome of a trial: scored as the worst (Deep Unlearn: inf)
        return {"diverged": str(err)}
    r = res.report
    keys = ("retain_acc", "forget_acc", "val_acc", "val_mia", "test_acc", "mia")
    if s.validation == "halves":
        keys += ("selection_val_acc", "selection_val_mia")
    return {**{k: r[k] for k in keys}, "seconds": r["time"]["total_s"], "method_extra": r.get("method_extra", {})}


def objectives(
    result: dict[str, Any], retrain: dict[str, Any], validation: str = "whole", objective: str = "deep-unlearn"
) -> list[float]:
    """One run's objectives against the same seed's retraining (validation only); a run whose model diverged scores
    infinity on each, as in Deep Unlearn. ``validation="halves"``: VA and the validation MIA on the selection half of
    the validation split (the half the method never read), for the run and the reference.

    ``objective``: ``"deep-unlearn"``, Deep Unlearn's ``objective10`` (|dRA|/3, |dFA|/3, |dVA|/3 and
    1 - indiscernibility of the run's validation MIA), or ``"ours"``: the distance to retraining on every figure,
    |dRA|, |dFA|, |dVA| and |d validation MIA| (the run's MIA against retraining's, not against 0.5: a retrained
    model's forget set is not indiscernible from validation images when the model generalises poorly, so Deep
    Unlearn's last objective rewards a model wrecked to chance, reports/benchmark-cpu)."""
    names = OBJECTIVE_SETS[objective]
    if "diverged" in result:
        return [math.inf] * len(names)
    va, mia = ("selection_val_acc", "selection_val_mia") if validation == "halves" else ("val_acc", "val_mia")
    if objective == "ours":
        return [abs(result[k] - retrain[k]) for k in ("retain_acc", "forget_acc", va, mia)]
    return [
        abs(result["retain_acc"] - retrain["retain_acc"]) / 3,
        abs(result["forget_acc"] - retrain["forget_acc"]) / 3,
        abs(result[va] - retrain[va]) / 3,
        abs(result[mia] - 0.5) / 0.5,
    ]


def time_ratio(result: dict[str, Any], retrain: dict[str, Any]) -> float:
    """The run's whole-request time over the same seed's retraining's: the retraining timed in the run that timed
    the method (``result["time_reference"]``, set by :class:`SameRunTimes`) where the result has one, else
    ``retrain``'s; infinity for a diverged run."""
    if "diverged" in result:
        return math.inf
    reference = result.get("time_reference") or retrain
    if not reference.get("seconds"):
        return math.inf
    return float(result["seconds"]) / float(reference["seconds"])


class SameRunTimes:
    """Every time ratio of a search divides two times of one run, as the benchmark's do.

    The job store reads a finished job back with the seconds of the run that computed it, so a trial's jobs and the
    retraining reference may come from different runs (an earlier search whose trials had the same specification,
    a reference whose options changed, a study resumed in a new process): their ratio would divide times taken
    hours apart, or on another machine. Here each (trial, seed) result is paired with the retraining of its seed
    timed in the result's own run: the reference job itself where that run computed it, else a retiming of it that
    run left in the store (the reference's spec with ``timed_in``). Where neither exists, the result is timed again
    in this run (its spec with ``timed_in``: a new job, so the store's entries are never replaced) and paired with
    the retraining timed in this run (computed once per seed and run). A result whose run is not recorded (written
    before runs were) is timed again too. The pair is recorded with the result (``time_reference``: the
    retraining's seconds and run; ``run``: the result's); objectives keep reading the reference job's metrics."""

    def __init__(
        self,
        jobs: Callable,
        held: Callable[[dict[str, Any]], bool],
        reference_specs: dict[int, dict[str, Any]],
        references: dict[int, dict[str, Any]],
        run: str,
    ):
        self.jobs, self.held, self.run = jobs, held, run
        self.reference_specs, self.references = reference_specs, references
        self.timed: dict[tuple[int, str], dict[str, Any]] = {}  # (seed, run) -> the retraining timed in that run
        self.retimed = 0  # (trial, seed) results timed again in this run

    def _reference_in(self, seed: int, run: str | None) -> dict[str, Any] | None:
        """The retraining of ``seed`` timed in ``run``, if that run timed one (never computes)."""
        if run is None:
            return None
        if self.references[seed].get("run") == run:
            return self.references[seed]
        if (seed, run) not in self.timed:
            spec = {**self.reference_specs[seed], "timed_in": run}
            if not self.held(spec):
                return None
            [self.timed[(seed, run)]] = self.jobs(unlearn_job, [spec])
        return self.timed[(seed, run)]

    def _time_here(self, seeds: set[int]) -> None:
        """Time the retraining of ``seeds`` in this run where it has not been."""
        todo = sorted(s for s in seeds if self._reference_in(s, self.run) is None)
        if todo:
            specs = [{**self.reference_specs[s], "timed_in": self.run} for s in todo]
            for s, r in zip(todo, self.jobs(unlearn_job, specs)):
                self.timed[(s, self.run)] = r

    def pair(self, specs: list[dict[str, Any]], results: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``results`` of the (trial, seed) ``specs``, each with the retraining time of its own run."""
        out, here, unpaired = list(results), set(), []
        for i, r in enumerate(out):
            seed = int(specs[i]["seed"])
            if "diverged" in r:
                continue
            if r.get("run") == self.run:
                here.add(seed)
            elif self._reference_in(seed, r.get("run")) is None:
                unpaired.append(i)
                here.add(seed)
        if unpaired:
            again = self.jobs(unlearn_job, [{**specs[i], "timed_in": self.run} for i in unpaired])
            for i, r in zip(unpaired, again):
                out[i] = r
            self.retimed += len(unpaired)
        self._time_here(here)
        for i, r in enumerate(out):
            if "diverged" not in r:
                ref = self._reference_in(int(specs[i]["seed"]), r.get("run"))
                out[i] = {**r, "time_reference": {"seconds": ref.get("seconds"), "run": ref["run"]}}
        return out


def study_validation(method: str, base_options: dict[str, Any] | None = None) -> str:
    """How a study of ``method`` uses the validation split: ``"halves"`` where the method (with the study's fixed
    options) reads it inside, else ``"whole"``."""
    return "halves" if METHODS.get(method).reads_validation_with(base_options) else "whole"


def norm(values: list[float]) -> float:
    return math.sqrt(sum(v * v for v in values))


# ------------------------------------------------------------------------------------------------ the search
def retrain_options(setup: StudySetup) -> dict[str, Any]:
    """The retraining reference trains like the originals (same recipe and epochs) and is timed as the benchmark's is:
    in float32, as every method runs. The originals may train under bf16 autocast (``bf16 = "auto"``), but a bf16
    retraining would be faster than the benchmark's float32 one and tighten the search's time bound (condensed's
    registered start point fell outside it in the search and inside it in the benchmark; reports/policy-search-cpu)."""
    known = METHODS.get("retrain").defaults
    missing = sorted(
        k
        for k in ("optimizer", "lr", "momentum", "weight_decay", "schedule", "batch_size", "epochs")
        if k in setup.train and k not in known
    )
    if missing:
        raise ConfigError(f"the retraining reference cannot train like the originals: retrain lacks {missing}")
    return {k: v for k, v in setup.train.items() if k in known and k != "bf16"}


def distributions(space: Space, train_epochs: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """(Optuna distributions of the searched dimensions, the fixed values)."""
    import optuna.distributions as od

    dists, fixed = {}, {}
    for name, dim in resolve(space, train_epochs).items():
        if isinstance(dim, Fixed):
            fixed[name] = dim.value
        elif isinstance(dim, Float):
            dists[name] = od.FloatDistribution(dim.low, dim.high, log=dim.log)
        elif isinstance(dim, Int):
            dists[name] = od.IntDistribution(dim.low, dim.high, log=dim.log)
        elif isinstance(dim, Choice):
            dists[name] = od.CategoricalDistribution(list(dim.values))
        else:  # Epochs is resolved above
            raise TypeError(f"unknown search dimension {dim!r}")
    return dists, fixed


def start_points(method: str, dists: dict[str, Any]) -> list[dict[str, Any]]:
    """Where a study of ``method`` starts: its registered ``starts`` (the registered point unless the method names
    others), each over the registered defaults and cut to the searched dimensions. A dimension whose value there is
    not in its range (an ``auto``, or epochs outside the resolved range) is left to the sampler; a point that repeats
    one before it is dropped."""
    import optuna.distributions as od

    m = METHODS.get(method)
    points: list[dict[str, Any]] = []
    for start in m.starts:
        values = {**m.defaults, **start}
        point = {}
        for name, dist in dists.items():
            v = values.get(name)
            if isinstance(dist, od.CategoricalDistribution):
                inside = name in values and v in dist.choices
            else:
                kinds = int if isinstance(dist, od.IntDistribution) else (int, float)
                inside = isinstance(v, kinds) and not isinstance(v, bool) and dist.low <= v <= dist.high
            if inside:
                point[name] = v
        if point and point not in points:
            points.append(point)
    return points


def population_size(trials: int) -> int:
    """NSGA-III's generation size for a study of ``trials`` trials: Optuna's (and Deep Unlearn's) 50 where there
    are 100 trials or more; otherwise a quarter of the trials (at least 4), so the budget spans about four
    generations. With 50 and 20 trials the sampler would never leave its first, random, generation: random search
    under NSGA-III's name."""
    return 50 if trials >= 100 else max(4, trials // 4)


def check_storage(storage: str | Path) -> None:
    """Refuse a study storage that cannot be used, before any job runs and without creating anything: a journal
    file that exists must be a readable Optuna journal and one that does not must be creatable; a database URL must
    parse and its driver be installed, and an sqlite file that exists must be an sqlite database."""
    url = str(storage)
    if "://" not in url:
        _check_journal(Path(url))
        return
    try:
        import sqlalchemy
        from sqlalchemy.engine import make_url

        parsed = make_url(url)
    except Exception as err:  # noqa: BLE001 - sqlalchemy's ArgumentError and friends
        raise ConfigError(f"--study {url!r} is not a database URL ({err})") from None
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:" and not db.startswith("file:"):
            _check_file(Path(db), "an sqlite database", url)
            if Path(db).exists():
                import sqlite3

                try:
                    with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as con:
                        con.execute("PRAGMA schema_version").fetchall()
                except sqlite3.Error as err:
                    raise ConfigError(f"--study {url!r}: {db} is not a readable sqlite database ({err})") from None
    try:
        sqlalchemy.create_engine(url).dispose()  # loads the dialect and its driver; connects to nothing
    except ImportError as err:
        raise ConfigError(f"--study {url!r} needs a database driver that is not installed ({err})") from None
    except Exception as err:  # noqa: BLE001 - NoSuchModuleError (unknown dialect), ArgumentError
        raise ConfigError(f"--study {url!r} cannot be used ({type(err).__name__}: {err})") from None


def _check_file(path: Path, what: str, shown: str) -> None:
    from dcforget.errors import OutputExistsError
    from dcforget.io import check_writable

    if path.exists() and not path.is_file():
        raise ConfigError(f"--study {shown}: {path} is not a file")
    try:
        check_writable(path, force=True)
    except OutputExistsError as err:
        raise ConfigError(f"--study {shown} cannot be {what}: {err}") from None


def _check_journal(path: Path) -> None:
    """Every complete line of an existing journal must be one of Optuna's operations (a JSON object with an
    ``op_code``), and Optuna must replay them. Optuna itself skips a damaged last line and then appends after it,
    damaging the file further. A last line without its newline (a write cut short) is refused too: Optuna would
    append its next operation to it."""
    _check_file(path, "a journal file", str(path))
    if not path.exists():
        return
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(f"--study {path} cannot be read ({err.strerror or err})") from None
    lines = raw.split(b"\n")
    if lines[-1]:
        raise ConfigError(
            f"--study {path} is not a readable Optuna journal (its last line, {len(lines)}, is "
            "incomplete: a write was cut short)"
        )
    for n, line in enumerate(lines[:-1], 1):
        try:
            op = json.loads(line)
        except ValueError as err:  # JSONDecodeError, UnicodeDecodeError
            raise ConfigError(
                f"--study {path} is not a readable Optuna journal (line {n}: "
                f"{type(err).__name__}: {' '.join(str(err).split())[:120]})"
            ) from None
        if not (isinstance(op, dict) and isinstance(op.get("op_code"), int)):
            raise ConfigError(f"--study {path} is not a readable Optuna journal (line {n} is not an operation)")
    try:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        JournalStorage(JournalFileBackend(str(path)))  # replays the log: reads, writes nothing
    except Exception as err:  # noqa: BLE001 - whatever a damaged journal raises (JSON, Unicode, KeyError...)
        raise ConfigError(
            f"--study {path} is not a readable Optuna journal ({type(err).__name__}: "
            f"{' '.join(str(err).split())[:200]})"
        ) from None


def open_study(name: str, storage: str | Path, seed: int = 0, population: int = 50, objective: str = "deep-unlearn"):
    """An Optuna study (created or resumed) in a journal file or at a database URL, sampled by NSGA-III with
    generations of ``population`` trials. A storage that cannot be opened is a :class:`ConfigError`. The number of
    objectives is ``objective``'s; with ``ours`` each trial also carries a constraint (``Trial.set_constraint``:
    its time ratio minus the bound, infeasible above 0), which NSGA-III reads."""
    import optuna

    check_storage(storage)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = str(storage)
    try:
        if "://" in url:
            backend = url
        else:
            path = Path(url)
            path.parent.mkdir(parents=True, exist_ok=True)
            from optuna.storages import JournalStorage
            from optuna.storages.journal import JournalFileBackend

            backend = JournalStorage(JournalFileBackend(str(path)))
        with warnings.catch_warnings():  # "experimental" since 3.2; Deep Unlearn's sampler
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            sampler = optuna.samplers.NSGAIIISampler(seed=seed, population_size=population)
        return optuna.create_study(
            study_name=name,
            storage=backend,
            directions=["minimize"] * len(OBJECTIVE_SETS[objective]),
            sampler=sampler,
            load_if_exists=True,
        )
    except ConfigError:
        raise
    except Exception as err:  # noqa: BLE001 - a database that refuses (connection, permissions, schema)
        raise ConfigError(
            f"cannot open the study storage {url} ({type(err).__name__}: {' '.join(str(err).split())[:200]})"
        ) from None


def trial_spec(setup: dict[str, Any], method: str, options: dict[str, Any], seed: int) -> dict[str, Any]:
    """One trial's job on one seed. It carries the digest of the method's registered defaults, so a changed default
    never reads a job scored under the old ones back from the store."""
    return {
        "setup": setup,
        "method": method,
        "options": options,
        "seed": seed,
        "defaults": METHODS.get(method).defaults_digest,
    }


def study_name(
    method: str, setup: StudySetup, base_options: dict[str, Any] | None = None, objective: str = "deep-unlearn"
) -> str:
    """The study's name: the method, the setup, its search space, the fixed options, the digest of the method's
    registered defaults and the objective (named only when not Deep Unlearn's), so a changed range, default,
    preset or retraining reference never resumes (and mixes in) an older study's trials."""
    what = json.dumps(
        {
            "space": describe(METHODS.get(method).space),
            "base": base_options or {},
            "defaults": METHODS.get(method).defaults_digest,
            # a study on bf16 originals measured against a bf16 retraining before its reference ran in float32
            # (retrain_options): a new name, so those studies are never read back; float32 setups keep theirs
            **({"reference": "float32 retraining"} if setup.train.get("bf16") else {}),
        },
        sort_keys=True,
        default=str,
    )
    tail = "" if objective == "deep-unlearn" else f"-{objective}"
    return f"{method}-{setup.digest()}-{hashlib.sha256(what.encode()).hexdigest()[:8]}{tail}"


@dataclass
class StudyResult:
    method: str
    setup: StudySetup
    best: dict[str, Any]  # trial number, options, objectives, norm, per-seed results
    trials: list[dict[str, Any]]
    references: dict[int, dict[str, Any]]  # seed -> retraining's metrics
    space: dict[str, Any]
    fixed: dict[str, Any]
    computed: int  # jobs computed by this call (0 on a rerun)
    sampler: dict[str, Any] = field(default_factory=dict)  # NSGA-III's population and base seed
    data_size: dict[str, Any] = field(default_factory=dict)  # the originals' training set: train_size, num_classes
    objective: str = "deep-unlearn"
    max_time_ratio: float | None = None  # the ``ours`` objective's time bound
    retimed: int = 0  # (trial, seed) results read back from another run and timed again in this one

    def summary(self) -> dict[str, Any]:
        done = [t for t in self.trials if t["state"] == "COMPLETE" and "repeat_of" not in t]
        finite = sorted(t["norm"] for t in done if math.isfinite(t["norm"]))
        timed = [r for t in done for r in t.get("per_seed") or [] if "diverged" not in r]
        return {
            "trials": len(done),
            "repeats": sum("repeat_of" in t for t in self.trials),  # redraws of a held point, not counted
            "best_trial": self.best["number"],
            "best_norm": self.best["norm"],
            "diverged_trials": len(done) - len(finite),
            "norms": {"min": finite[0] if finite else None, "median": finite[len(finite) // 2] if finite else None},
            "jobs_computed_this_run": self.computed,
            "jobs_retimed_this_run": self.retimed,
            # the trials' time ratios: how many divide two times of one run (SameRunTimes); the others were told
            # before runs were recorded
            "time_ratios": {
                "one_run": sum(map(one_run, timed)),
                "run_not_recorded": sum(not one_run(r) for r in timed),
            },
            "objective": self.objective,
            **({"max_time_ratio": self.max_time_ratio} if self.max_time_ratio is not None else {}),
            **({"chosen_feasible": self.best.get("feasible")} if "feasible" in self.best else {}),
        }


def one_run(result: dict[str, Any]) -> bool:
    """Whether a (trial, seed) result's time ratio divides two times of one recorded run."""
    reference = result.get("time_reference") or {}
    return result.get("run") is not None and reference.get("run") == result["run"]


def times_one_run(trial: dict[str, Any]) -> bool:
    """Whether every time ratio of a trial (a row of :class:`StudyResult`) divides two times of one recorded run."""
    return all(one_run(r) for r in trial.get("per_seed") or [] if "diverged" not in r)


def reference_spec(setup: StudySetup, seed: int) -> dict[str, Any]:
    """The job of ``seed``'s retraining reference."""
    return {"setup": setup.reference.to_dict(), "method": "retrain", "options": retrain_options(setup), "seed": seed}


def _references(setup: StudySetup, method: str, jobs: Callable) -> dict[int, dict[str, Any]]:
    """Every seed's original (with the artefacts ``method`` needs) and its retraining, through ``jobs(fn, specs)``
    (which returns the results in order): seed -> retraining's metrics."""
    sd = setup.to_dict()
    jobs(original_job, [{"setup": sd, "seed": s, "methods": sorted({"retrain", method})} for s in setup.seeds])
    return dict(zip(setup.seeds, jobs(unlearn_job, [reference_spec(setup, s) for s in setup.seeds])))


def _job_runner(store: str | Path, executor: Executor | None, context: dict[str, Any], run: str):
    """(jobs(fn, specs) -> results in order, each with the ``run`` that computed it; held(spec) -> whether the store
    holds that unlearning job; computed() -> jobs computed so far)."""
    count = [0]

    def jobs(fn, specs):
        done: GridRun = run_jobs(fn, specs, store, executor=executor, version=JOB_VERSION, context=context, run=run)
        count[0] += done.computed
        runs = done.runs or [None] * len(done.results)  # a GridRun made without them: runs not recorded
        return [{**r, "run": r_run} for r, r_run in zip(done.results, runs, strict=True)]

    held_in = JobStore(store)

    def held(spec):
        return held_in.has(job_key(unlearn_job, spec, JOB_VERSION))

    return jobs, held, lambda: count[0]


def method_seed_offset(method: str) -> int:
    """What a study of ``method`` adds to its sampler seed: a hash of the method's name, so that two methods with
    the same search space do not draw the same trials."""
    return int(hashlib.sha256(method.encode()).hexdigest()[:8], 16)


def tune(
    method: str,
    setup: StudySetup,
    *,
    trials: int,
    storage: str | Path,
    store: str | Path,
    executor: Executor | None = None,
    context: dict[str, Any],
    base_options: dict[str, Any] | None = None,
    batch: int | None = None,
    sampler_seed: int = 0,
    population: int | None = None,
    stale_after_s: float = STALE_AFTER_S,
    log: Callable[[str], None] = lambda _: None,
    objective: str = "deep-unlearn",
    max_time_ratio: float = MAX_TIME_RATIO,
    run: str = THIS_RUN,
) -> StudyResult:
    """Run (or resume) the study of ``method`` on ``setup`` until it has ``trials`` complete trials.

        ``context``: {"root": artefact folder (originals), "data_dir", "device"}. ``base_options``: the method's options
        that the search does not vary (e.g. a preset's); the searched and fixed dimensions override them. Trials are
        asked ``batch`` at a time (default: the executor's workers) and their (trial, seed) runs go to the executor
        together. ``population``: NSGA-III's generation size (default :func:`population_size` of ``trials``). A study
        short of ``trials`` asks the method's start points (:func:`start_points`) before any new draw of the sampler (in
    a fresh study they are its first trials; in a resumed one they follow the trials it holds). A point the sampler
        redraws exactly (NSGA-III's crossover can copy a parent) is not run again: the trial is told what the earlier
        one measured, marked ``repeat_of``, and not counted among the ``trials`` (at most ``trials`` such redraws per
        call, so that a space the sampler has exhausted ends the search). Returns every trial and the chosen one.

        Several drivers may work on one study at once (same storage and store): each trial records the driver that
        asked it (host, process); a trial left RUNNING is evaluated again only when its driver is gone (on this host)
        or it started more than ``stale_after_s`` ago (a driver on another host), and a trial another driver finished
        meanwhile is not told twice. Each driver seeds its sampler with ``sampler_seed`` plus the number of trials the
        study holds when it starts, so drivers started one after another draw different trials (and plus
        :func:`method_seed_offset`, so studies of different methods draw different trials).

        ``objective``: ``"deep-unlearn"`` (faithful) or ``"ours"`` (:func:`objectives`); with ``ours`` a trial whose
        time ratio to retraining (mean over seeds) exceeds ``max_time_ratio`` is infeasible: NSGA-III's constraint, and
        the chosen trial is the feasible one with the smallest norm (the smallest norm overall, marked
        ``feasible: false``, when no trial is feasible)."""
    if objective not in OBJECTIVE_SETS:
        raise ConfigError(f"unknown objective {objective!r}; one of {', '.join(OBJECTIVE_SETS)}")
    names = OBJECTIVE_SETS[objective]
    m = METHODS.get(method)
    if not m.space:
        raise ConfigError(f"method {method!r} declares no search space")
    population = population_size(trials) if population is None else population
    if isinstance(population, bool) or not isinstance(population, int) or population < 2:
        raise ConfigError(f"NSGA-III's population must be a whole number of at least 2, got {population!r}")
    dists, fixed = distributions(m.space, setup.train_epochs)
    base = {**(base_options or {}), **fixed}
    jobs, held, computed = _job_runner(store, executor, context, run)
    sd = setup.to_dict()
    name = study_name(method, setup, base, objective)
    # opened before any job runs, so a storage that cannot be used costs no training
    # a resumed study gets a sampler seeded by how far it got: the same seed again would redraw the first trials
    # and each method draws its own points: studies of methods with the same search space (ssd and lfssd) on one
    # sampler seed drew the same first generation, and NSGA-III's crossover recombines those values, so they
    # chose identical options (issue #32: lfssd.class.json = ssd.json)
    offset = method_seed_offset(method)
    study = open_study(
        name,
        storage,
        (sampler_seed + offset + len(open_study(name, storage, objective=objective).get_trials(deepcopy=False)))
        % 2**32,
        population,
        objective,
    )
    references = _references(setup, method, jobs)
    times = SameRunTimes(jobs, held, {s: reference_spec(setup, s) for s in setup.seeds}, references, run)
    data = _data(json.dumps(sd, sort_keys=True), context.get("data_dir"), str(context.get("device", "cpu")))
    data_size = {"train_size": len(data.train), "num_classes": data.info.num_classes}  # what the originals trained on
    batch = max(1, int(batch or getattr(executor, "workers", 1) or 1))

    import optuna

    me = {"host": socket.gethostname(), "pid": os.getpid()}

    def evaluate(batch_trials):
        specs = [trial_spec(sd, method, {**base, **t.params}, s) for t in batch_trials for s in setup.seeds]
        results = times.pair(specs, jobs(unlearn_job, specs))
        k = len(setup.seeds)
        for i, t in enumerate(batch_trials):
            tell(t, results[i * k : (i + 1) * k])

    def tell(t, per_seed):
        if study._storage.get_trial(t._trial_id).state.is_finished():  # another driver took it over and finished it
            return
        k = len(per_seed)
        objs = [objectives(r, references[s], setup.validation, objective) for r, s in zip(per_seed, setup.seeds)]
        mean = [sum(o[j] for o in objs) / k for j in range(len(names))]
        ratio = sum(time_ratio(r, references[s]) for r, s in zip(per_seed, setup.seeds)) / k
        t.set_user_attr("per_seed", per_seed)
        t.set_user_attr("options", {**base, **t.params})
        t.set_user_attr("time_ratio", ratio if math.isfinite(ratio) else None)
        if objective == "ours":  # NSGA-III's constraint: feasible when <= 0
            t.set_constraint("time_ratio", (ratio - max_time_ratio) if math.isfinite(ratio) else 1.0)
        study.tell(t, mean, skip_if_finished=True)

    def measured(params: dict[str, Any]):  # the study's complete trial of exactly these parameters, if any
        return next(
            (
                t
                for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
                if t.params == params and "repeat_of" not in t.user_attrs and "per_seed" in t.user_attrs
            ),
            None,
        )

    def distinct() -> int:  # complete trials that are not repeats of an earlier one
        return sum(
            "repeat_of" not in t.user_attrs
            for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))
        )

    def abandoned(t) -> bool:
        d = t.user_attrs.get("driver") or {}
        if d.get("host") == me["host"] and isinstance(d.get("pid"), int):
            return d["pid"] == me["pid"] or not pid_alive(d["pid"])  # this process's own: an earlier call that failed
        started = t.datetime_start.timestamp() if t.datetime_start is not None else 0.0
        return time.time() - started >= stale_after_s

    running = [t for t in study.get_trials(deepcopy=False) if t.state == optuna.trial.TrialState.RUNNING]
    stale = [t for t in running if abandoned(t)]
    if len(stale) < len(running):
        log(f"{method}: {len(running) - len(stale)} trial(s) running in another driver: left to it")
    if stale:  # left running by an interrupted search: evaluate those parameters again (finished jobs read back)
        log(f"{method}: {len(stale)} trial(s) left running by an earlier search: evaluating them again")
        again = [optuna.trial.Trial(study, t._trial_id) for t in stale]
        for t in again:
            t.set_user_attr("driver", me)
        evaluate(again)

    def queued(asked_only: bool) -> list[dict[str, Any]]:  # the start points the study's trials hold
        return [
            t.system_attrs["fixed_params"]
            for t in study.get_trials(deepcopy=False)
            if "fixed_params" in t.system_attrs and (t.params or not asked_only)
        ]

    points = start_points(method, dists)
    done = distinct()
    for point in [p for p in points if p not in queued(False)][: max(trials - done, 0)]:
        study.enqueue_trial(point)  # asked before any new draw; a point the study holds, resumed or not, is not again
    repeats = 0
    while True:
        done = distinct()
        if done >= trials:
            break
        if repeats >= trials:  # a space the sampler has exhausted (or nearly): stop rather than redraw forever
            log(f"{method}: the sampler redrew points the study holds {repeats} times; {done}/{trials} distinct trials")
            break
        fresh, twins = [], []  # twins: (a trial, an earlier trial of this batch with the same parameters)
        for _ in range(min(batch, trials - done)):
            if repeats >= trials:
                break
            t = study.ask(dists)
            t.set_user_attr("driver", me)
            earlier = measured(t.params)
            same = next((f for f in fresh if f.params == t.params), None)
            if earlier is None and same is None:
                fresh.append(t)
                continue
            # NSGA-III's crossover can redraw a point the study holds: told what that trial measured (the same
            # runs, which the job store would read back), not counted as a trial, and the sampler asked again
            repeats += 1
            if earlier is not None:
                t.set_user_attr("repeat_of", earlier.number)
                tell(t, earlier.user_attrs["per_seed"])
            else:
                twins.append((t, same))
        if fresh:
            evaluate(fresh)
        for t, same in twins:  # a point drawn twice in one batch: told once its first draw is measured
            t.set_user_attr("repeat_of", same.number)
            tell(t, study._storage.get_trial(same._trial_id).user_attrs["per_seed"])
        log(f"{method}: {distinct()}/{trials} trials")
    starts = [p for p in points if p in queued(True)]  # the start points the study asked
    rows = []
    for t in study.get_trials(deepcopy=True):
        row = {
            "number": t.number,
            "state": t.state.name,
            "params": t.params,
            "options": t.user_attrs.get("options"),
            "per_seed": t.user_attrs.get("per_seed"),
            "time_ratio": t.user_attrs.get("time_ratio"),
            **({"repeat_of": t.user_attrs["repeat_of"]} if "repeat_of" in t.user_attrs else {}),
        }
        if t.state == optuna.trial.TrialState.COMPLETE:
            row["objectives"] = dict(zip(names, t.values))
            row["norm"] = norm(t.values)
            if objective == "ours":
                row["feasible"] = row["time_ratio"] is not None and row["time_ratio"] <= max_time_ratio
        rows.append(row)
    complete = [r for r in rows if r["state"] == "COMPLETE" and "repeat_of" not in r][:trials] if rows else []
    if not complete:
        raise ConfigError(f"study of {method!r} has no complete trial")
    feasible = [r for r in complete if r.get("feasible", True)]
    best = min(feasible or complete, key=lambda r: (r["norm"], r["number"]))
    return StudyResult(
        method,
        setup,
        best,
        rows,
        references,
        describe(m.space),
        fixed,
        computed(),
        {"name": "NSGA-III", "population": population, "seed": sampler_seed, "method_offset": offset, "starts": starts},
        data_size,
        objective,
        max_time_ratio if objective == "ours" else None,
        times.retimed,
    )


SELECTION = {
    "whole": "validation only: Deep Unlearn's four objectives (|dRA|/3, |dFA|/3, |dVA|/3, 1 - indiscernibility of the "
    "validation MIA) against the same seed's retraining, mean over seeds; NSGA-III; the trial with the "
    "smallest Euclidean norm",
    "halves": "validation only, on the selection half: the method read the method half of the validation split and "
    "never the selection half; Deep Unlearn's four objectives (|dRA|/3, |dFA|/3, |dVA|/3 and 1 - "
    "indiscernibility of the validation MIA, VA and MIA on the selection half) against the same seed's "
    "retraining, mean over seeds; NSGA-III; the trial with the smallest Euclidean norm",
}


def selection_text(res: StudyResult) -> str:
    """How the study chose its trial, in words (the tuned file's ``selection``)."""
    text = SELECTION[res.setup.validation]
    if res.objective == "ours":
        text = text.replace(
            "Deep Unlearn's four objectives (|dRA|/3, |dFA|/3, |dVA|/3, 1 - indiscernibility of the validation MIA)",
            "our four objectives (|dRA|, |dFA|, |dVA|, |d validation MIA|)",
        ).replace(
            "Deep Unlearn's four objectives (|dRA|/3, |dFA|/3, |dVA|/3 and 1 - indiscernibility of the validation MIA",
            "our four objectives (|dRA|, |dFA|, |dVA| and |d validation MIA|",
        )
        text += (
            f", among the trials whose whole-request time is at most {res.max_time_ratio:g}x retraining's "
            "(mean over seeds; NSGA-III's constraint)"
        )
    if res.setup.retain == "reduced":
        text += "; the method served the condensed file's reduced retain set"
    return text


def tuned_on(setup: StudySetup, train_size: int | None, num_classes: int | None) -> dict[str, Any]:
    """The setting a study tuned on, as `unlearn` matches it against a checkpoint (``unlearn.tuned.Setting``):
    dataset, model, the originals' training-set size (``train_size``: images trained on, validation excluded;
    ``per_class``: the cap) and epochs, and the kind of request (plus the exact forget spec)."""
    s = Setting(
        setup.dataset.split(":")[0],
        setup.model,
        train_size,
        setup.train_epochs,
        ForgetSpec.parse(setup.forget).family,
        setup.per_class,
        num_classes,
    )
    return {**s.to_dict(), "forget": setup.forget, "val_fraction": setup.val_fraction}


def ran_with(method: str, options: dict[str, Any]) -> dict[str, Any]:
    """The method's registered defaults that a study ran under, beside the options it chose: recorded in a tuned
    file or policy entry (``defaults``), so that a default changed later, on other data, does not change what it
    runs (``unlearn.tuned.ran_options``)."""
    return {k: v for k, v in METHODS.get(method).defaults.items() if k not in options}


def tuned_config(res: StudyResult, *, preset: str, meta: dict[str, Any]) -> dict[str, Any]:
    """The tuned-hyperparameter file's content: the chosen options with where they come from, and the setting they
    were tuned on (``tuned_on``: what `unlearn` matches a checkpoint against)."""
    return {
        "tuned_on": tuned_on(res.setup, res.data_size.get("train_size"), res.data_size.get("num_classes")),
        "method": res.method,
        "dataset": res.setup.dataset.split(":")[0],
        "model": res.setup.model,
        "preset": preset,
        "options": res.best["options"],
        "defaults": ran_with(res.method, res.best["options"]),
        "objectives": res.best["objectives"],
        "norm": res.best["norm"],
        "time_ratio": res.best.get("time_ratio"),
        "time_ratios_one_run": times_one_run(res.best),
        "trial": res.best["number"],
        "setup": res.setup.to_dict(),
        "space": res.space,
        "fixed": res.fixed,
        "study": {**res.summary(), "sampler": res.sampler},
        "selection": selection_text(res),
        "objective": res.objective,
        "meta": meta,
    }


# ------------------------------------------------------------------------------------------------ the check
def recheck(
    doc: dict[str, Any],
    *,
    store: str | Path,
    executor: Executor | None = None,
    context: dict[str, Any],
    run: str = THIS_RUN,
) -> dict[str, Any]:
    """Run a tuned file's chosen options again under its recorded setup (every seed: original, retraining, the
    method) and compare the objectives with the ones the study recorded for that trial. With a fresh ``store``
    and ``context["root"]`` everything is recomputed, so this checks that the file reproduces its study's best
    trial, not that a store remembers it.

    Within noise, per objective: |recomputed - recorded| <= max(2 x the standard error over seeds of the
    recomputed per-seed values, 0.005). The result holds both vectors, the norms and the verdict, and the method's
    time over retraining's (mean over seeds; each seed's two times of one run, :class:`SameRunTimes`), beside the
    study's where the file records it: reported, not judged (a time depends on the machine and its load)."""
    setup = StudySetup.from_dict(doc["setup"])
    method, options = doc["method"], ran_options(doc)
    jobs, held, computed = _job_runner(store, executor, context, run)
    references = _references(setup, method, jobs)
    times = SameRunTimes(jobs, held, {s: reference_spec(setup, s) for s in setup.seeds}, references, run)
    specs = [trial_spec(setup.to_dict(), method, options, s) for s in setup.seeds]
    runs = times.pair(specs, jobs(unlearn_job, specs))
    objective = doc.get("objective", "deep-unlearn")  # a policy entry's is ours; a tuned file's Deep Unlearn's
    if objective not in OBJECTIVE_SETS:
        raise ConfigError(f"unknown objective {objective!r}; one of {', '.join(OBJECTIVE_SETS)}")
    names = OBJECTIVE_SETS[objective]
    per_seed = [objectives(r, references[s], setup.validation, objective) for r, s in zip(runs, setup.seeds)]
    k = len(per_seed)
    mean = [sum(o[j] for o in per_seed) / k for j in range(len(names))]
    rows = {}
    for j, name in enumerate(names):
        vals, recorded = [o[j] for o in per_seed], float(doc["objectives"][name])
        if not all(math.isfinite(v) for v in vals):  # a diverged run matches only a diverged record
            rows[name] = {
                "recorded": recorded,
                "recomputed": mean[j],
                "abs_diff": math.inf,
                "tolerance": 0.0,
                "within": not math.isfinite(recorded),
            }
            continue
        se = statistics.stdev(vals) / math.sqrt(k) if k > 1 else 0.0
        tolerance, diff = max(2 * se, 0.005), abs(mean[j] - recorded)
        rows[name] = {
            "recorded": recorded,
            "recomputed": mean[j],
            "abs_diff": diff,
            "tolerance": tolerance,
            "within": bool(diff <= tolerance),
        }
    return {
        "method": method,
        "forget": setup.forget,
        "options": options,
        "trial": doc.get("trial"),
        "recorded_norm": float(doc["norm"]),
        "recomputed_norm": norm(mean),
        "objectives": rows,
        "within_noise": all(r["within"] for r in rows.values()),
        "jobs_computed": computed(),
        "jobs_retimed": times.retimed,
        "time_ratio": {
            "recorded": doc.get("time_ratio"),
            "recomputed": sum(time_ratio(r, references[s]) for r, s in zip(runs, setup.seeds)) / k,
        },
        "per_seed": [dict(zip(names, o)) for o in per_seed],
    }
