"""Jobs: many small, independent computations (U-LiRA's models, seeds, hyperparameter trials), run by an executor
and kept in a content-addressed store.

A job is a pure function of a small spec: ``fn(spec, context) -> result``, where ``spec`` is a JSON-able dict
(dataset, split seed, model, method, options, seed, ...) that decides the result, ``context`` says where to find
things and what to run on (a data directory, a device) without changing the result, and ``result`` is a dict of
JSON-able values and arrays (numpy or torch). ``fn`` must be a module-level function, so a worker process or a
Ray node finds it by name.

The store (:class:`JobStore`) keys a job by the SHA-256 of its function's qualified name, a version string the
caller bumps when the function's meaning changes, and the canonical JSON of its spec. A result is a directory
``ROOT/ab/KEY/`` holding ``result.json`` (the spec, the JSON values, provenance: host, the run that computed it)
and ``arrays.npz`` (the arrays, read back with ``allow_pickle=False``). It is written in a temporary sibling and renamed into place, so a
crashed or killed job leaves at most a ``.tmp-*`` directory (named by its host and process), which is never read as
a result and is cleared by the next run once its driver is gone (or after ``STALE_AFTER_S`` where the driver ran
on another host), so drivers sharing a store never remove each other's writes in progress. Finished jobs are read back, never recomputed. Results are written by the driver (the process that
calls :func:`run_jobs`) as each job finishes, so workers need no shared file system and two jobs never race for
one path.

Executors share one interface (:class:`Executor`): ``map(fn, specs)`` yields ``(position, result)`` as jobs
finish. :class:`LocalExecutor` (the default) runs jobs in this process, or with ``workers > 1`` in a pool of
spawned processes, each limited to ``threads_per_worker`` torch threads (by default ``cores // workers``, at
least 1, so the pool never asks for more threads than the machine has cores); a worker that dies is replaced and
its job run again, up to ``max_retries`` times. :class:`RayExecutor` submits Ray Core tasks (``ray`` is an
optional extra, imported only here and only when chosen) to an existing cluster (``address``) or a local one,
with the CPUs/GPUs each task needs declared, and the same retries of tasks whose worker died. An exception
raised by a job itself is not retried (it would fail the same way): it stops the grid, keeping every finished
result.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import logging
import multiprocessing as mp
import os
import shutil
import socket
import time
import uuid
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from .errors import ConfigError, DcForgetError
from .io import check_writable_dir
from .train import TRAINING_REVISION

JobFn = Callable[[dict[str, Any], dict[str, Any]], dict[str, Any]]  # (spec, context) -> result
RESULT_SCHEMA = "dcforget.job/1"
EXECUTORS = ("local", "ray")
STALE_AFTER_S = 6 * 3600.0  # a temporary this old is a dead driver's, whichever host wrote it

log = logging.getLogger(__name__)

THIS_RUN = f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:12]}"
"""This process's run: a store entry records the run that computed it (``run`` in its ``result.json``), so that a
caller dividing two jobs' times can tell whether both were timed in one run (one driver process on one machine)."""


class JobError(DcForgetError):
    """A job failed (its worker died more often than the retries allow, or it raised)."""


def fn_name(fn: JobFn) -> str:
    name = f"{fn.__module__}:{fn.__qualname__}"
    if "<" in name:  # lambdas, closures: a worker could not find them
        raise ConfigError(f"a job function must be defined at module level, not {name}")
    return name


def canonical(spec: Any) -> str:
    """The spec's canonical JSON (sorted keys, no spaces); refuses what JSON cannot hold exactly."""
    try:
        return json.dumps(spec, sort_keys=True, separators=(",", ":"), allow_nan=False)
    except (TypeError, ValueError) as err:
        raise ConfigError(f"a job spec must be plain JSON (dicts, lists, strings, finite numbers): {err}") from None


def job_key(fn: JobFn, spec: dict[str, Any], version: str = "1") -> str:
    """A job's store key: its function, version, spec and the trainers' revision (what training computes)."""
    return hashlib.sha256(f"{fn_name(fn)}\n{version}\n{TRAINING_REVISION}\n{canonical(spec)}".encode()).hexdigest()


def _split(result: dict[str, Any]) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """A job's result as (JSON values, arrays)."""
    if not isinstance(result, dict):
        raise JobError(f"a job must return a dict, not {type(result).__name__}")
    values, arrays = {}, {}
    for k, v in result.items():
        if hasattr(v, "detach") and hasattr(v, "cpu"):  # a torch tensor, without importing torch here
            v = v.detach().cpu().numpy()
        if isinstance(v, np.ndarray):
            if v.dtype == object:
                raise JobError(f"result {k!r} is an object array; jobs return numbers")
            arrays[k] = v
        else:
            values[k] = v
    return values, arrays


class JobStore:
    """Content-addressed results under ``root`` (see the module's docstring)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"job store {self.root} exists and is not a directory")

    def check_writable(self) -> None:
        """Refuse a store that cannot be written (under a regular file, no permission), before any job runs;
        creates nothing that stays."""
        try:
            check_writable_dir(self.root)
        except DcForgetError as err:
            raise ConfigError(f"job store: {err}") from None

    def path(self, key: str) -> Path:
        return self.root / key[:2] / key

    def has(self, key: str) -> bool:
        p = self.path(key)
        return (p / "result.json").is_file() and (p / "arrays.npz").is_file()

    def get(self, key: str) -> dict[str, Any]:
        p = self.path(key)
        try:
            doc = json.loads((p / "result.json").read_text())
            with np.load(p / "arrays.npz", allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as err:  # noqa: BLE001 - whatever a damaged file raises (BadZipFile, zlib, EOF, decode...)
            raise JobError(f"job result {p} cannot be read ({type(err).__name__}: {err})") from None
        if (
            not isinstance(doc, dict)
            or doc.get("schema") != RESULT_SCHEMA
            or doc.get("key") != key
            or not isinstance(doc.get("values"), dict)
        ):
            raise JobError(f"{p} is not a job result of this version")
        return {**doc["values"], **arrays}

    def run_of(self, key: str) -> str | None:
        """The run that computed the entry (:data:`THIS_RUN` of its driver); None for an entry written before runs
        were recorded."""
        try:
            run = json.loads((self.path(key) / "result.json").read_text()).get("run")
        except Exception as err:  # noqa: BLE001 - as get(): whatever a damaged file raises
            raise JobError(f"job result {self.path(key)} cannot be read ({type(err).__name__}: {err})") from None
        return run if isinstance(run, str) else None

    def put(
        self,
        key: str,
        fn: JobFn,
        spec: dict[str, Any],
        result: dict[str, Any],
        seconds: float,
        version: str = "1",
        run: str = THIS_RUN,
    ) -> None:
        values, arrays = _split(result)
        final = self.path(key)
        final.parent.mkdir(parents=True, exist_ok=True)
        tmp = final.parent / f".tmp-{key[:16]}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        tmp.mkdir()
        try:
            with open(tmp / "arrays.npz", "wb") as f:
                np.savez(f, **arrays)
                f.flush()
                os.fsync(f.fileno())
            doc = {
                "schema": RESULT_SCHEMA,
                "key": key,
                "fn": fn_name(fn),
                "version": version,
                "spec": spec,
                "values": values,
                "seconds": seconds,
                "host": socket.gethostname(),
                "run": run,
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            }
            (tmp / "result.json").write_text(json.dumps(doc, sort_keys=True, allow_nan=True))
            try:
                os.rename(tmp, final)
            except OSError:
                if not final.is_dir():
                    raise
                try:
                    self.get(key)
                    return  # another driver's identical result got there first
                except JobError:
                    pass
                # a damaged or half entry: set it aside (a name the stale-temporary cleanup knows), rename the new
                # result into place, then drop the old one; a reader never sees a half-written result
                aside = final.parent / f".tmp-{key[:16]}-{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
                os.rename(final, aside)
                try:
                    os.rename(tmp, final)
                finally:
                    shutil.rmtree(aside, ignore_errors=True)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    def clear_stale(self, max_age_s: float = STALE_AFTER_S) -> None:
        """Remove temporaries of writes that never finished: those of a driver on this host that is no longer
        running, and any older than ``max_age_s`` (a driver on another host sharing the store, which this one cannot
        ask). A live driver's write in progress is never touched."""
        if not self.root.is_dir():
            return
        now, host = time.time(), socket.gethostname()
        for tmp in self.root.glob("*/.tmp-*"):
            try:
                owner, pid = _tmp_owner(tmp.name)
                dead = owner == host and pid is not None and not pid_alive(pid)
                if dead or now - tmp.stat().st_mtime >= max_age_s:
                    shutil.rmtree(tmp, ignore_errors=True)
            except OSError:
                continue


def _tmp_owner(name: str) -> tuple[str | None, int | None]:
    """(host, pid) of a temporary ``.tmp-KEY16-HOST-PID-UUID8`` (a host name may hold dashes), or (None, None)."""
    head, _, rest = name.partition(".tmp-")
    parts = rest.split("-")
    if head or len(parts) < 4 or not parts[-2].isdigit():
        return None, None
    return "-".join(parts[1:-2]), int(parts[-2])


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def _timed(fn: JobFn, spec: dict[str, Any], context: dict[str, Any]) -> tuple[dict[str, Any], float]:
    t0 = time.perf_counter()
    result = fn(spec, context)
    return result, time.perf_counter() - t0


class Executor(ABC):
    """Runs jobs; yields ``(position in specs, (result, seconds))`` as each finishes, in any order."""

    name = "executor"

    @abstractmethod
    def map(
        self, fn: JobFn, specs: Sequence[dict[str, Any]], context: dict[str, Any]
    ) -> Iterator[tuple[int, tuple[dict[str, Any], float]]]: ...

    def close(self) -> None:
        pass

    def describe(self) -> dict[str, Any]:
        return {"executor": self.name}

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _limit_threads(threads: int) -> None:
    os.environ["OMP_NUM_THREADS"] = str(threads)
    os.environ["MKL_NUM_THREADS"] = str(threads)
    import torch

    torch.set_num_threads(threads)


class LocalExecutor(Executor):
    """In this process (``workers=1``), or a pool of ``workers`` spawned processes with ``threads_per_worker``
    torch threads each (default: cores // workers, at least 1)."""

    name = "local"

    def __init__(self, workers: int = 1, threads_per_worker: int | None = None, max_retries: int = 3):
        if not (isinstance(workers, int) and workers >= 1):
            raise ConfigError(f"workers must be a positive integer, got {workers!r}")
        self.workers = workers
        self.threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
        if not (isinstance(self.threads, int) and self.threads >= 1):
            raise ConfigError(f"threads_per_worker must be a positive integer, got {threads_per_worker!r}")
        self.max_retries = max_retries

    def describe(self) -> dict[str, Any]:
        return {
            "executor": self.name,
            "workers": self.workers,
            "threads_per_worker": self.threads if self.workers > 1 else None,
        }

    def map(self, fn, specs, context):
        if self.workers == 1:
            for i, spec in enumerate(specs):
                yield i, _timed(fn, spec, context)
            return
        pending = dict(enumerate(specs))
        deaths = {i: 0 for i in pending}
        while pending:
            ctx = mp.get_context("spawn")
            pool = cf.ProcessPoolExecutor(
                self.workers, mp_context=ctx, initializer=_limit_threads, initargs=(self.threads,)
            )
            try:
                futures = {pool.submit(_timed, fn, spec, context): i for i, spec in pending.items()}
                broken = False
                for fut in cf.as_completed(futures):
                    i = futures[fut]
                    try:
                        out = fut.result()
                    except cf.process.BrokenProcessPool:
                        broken = True  # a worker died (killed, out of memory): its jobs run again in a new pool
                        continue
                    del pending[i]
                    yield i, out
                if broken:
                    for i in pending:
                        deaths[i] += 1
                    over = [i for i in pending if deaths[i] > self.max_retries]
                    if over:
                        raise JobError(f"{len(over)} job(s) lost their worker more than {self.max_retries} times")
            finally:
                pool.shutdown(wait=True, cancel_futures=True)


class RayExecutor(Executor):
    """Ray Core tasks on the cluster at ``address`` (``None``: start a local one with ``num_cpus``), each task
    declaring ``cpus_per_job`` CPUs and ``gpus_per_job`` GPUs; a task whose worker dies is retried ``max_retries``
    times."""

    name = "ray"

    def __init__(
        self,
        address: str | None = None,
        cpus_per_job: float = 1,
        gpus_per_job: float = 0,
        max_retries: int = 3,
        num_cpus: int | None = None,
    ):
        try:
            import ray
        except ImportError:
            raise ConfigError("the ray executor needs Ray: pip install 'dcforget[ray]'") from None
        self.ray = ray
        self.cpus, self.gpus, self.max_retries = cpus_per_job, gpus_per_job, max_retries
        self.started_here = not ray.is_initialized()
        if self.started_here:
            kwargs: dict[str, Any] = {
                "address": address,
                "log_to_driver": False,
                "include_dashboard": False,
                "configure_logging": False,
            }
            if address is None:
                kwargs["num_cpus"] = num_cpus or os.cpu_count() or 1
            try:
                ray.init(**kwargs)
            except (ConnectionError, RuntimeError, ValueError) as err:
                raise ConfigError(f"cannot connect to a Ray cluster at {address}: {err}") from None
        self.address = address

    def describe(self) -> dict[str, Any]:
        return {
            "executor": self.name,
            "address": self.address or "local",
            "cpus_per_job": self.cpus,
            "gpus_per_job": self.gpus,
            "cluster_cpus": self.ray.cluster_resources().get("CPU"),
        }

    def map(self, fn, specs, context):
        ray = self.ray
        threads = max(1, int(self.cpus))
        task = ray.remote(num_cpus=self.cpus, num_gpus=self.gpus, max_retries=self.max_retries)(_ray_job)
        refs = {task.remote(fn, spec, context, threads): i for i, spec in enumerate(specs)}
        waiting = list(refs)
        while waiting:
            done, waiting = ray.wait(waiting, num_returns=1)
            for ref in done:
                try:
                    out = ray.get(ref)
                except ray.exceptions.RayTaskError as err:  # the job raised: not retried
                    for r in waiting:
                        ray.cancel(r, force=True)
                    cause = err.cause if getattr(err, "cause", None) is not None else err
                    if isinstance(cause, DcForgetError):
                        raise cause from None
                    raise JobError(f"a job failed on Ray: {cause}") from None
                except ray.exceptions.RayError as err:  # the worker died more often than the retries allow
                    for r in waiting:
                        ray.cancel(r, force=True)
                    raise JobError(f"a job's Ray task failed after {self.max_retries} retries: {err}") from None
                yield refs[ref], out

    def close(self) -> None:
        if self.started_here and self.ray.is_initialized():
            self.ray.shutdown()


def _ray_job(fn: JobFn, spec: dict[str, Any], context: dict[str, Any], threads: int):
    _limit_threads(threads)
    return _timed(fn, spec, context)


def make_executor(
    name: str = "local",
    *,
    workers: int = 1,
    address: str | None = None,
    threads_per_worker: int | None = None,
    gpus_per_job: float = 0,
) -> Executor:
    """The executor a CLI's ``--executor/--workers/--address`` name."""
    if name == "local":
        if address:
            raise ConfigError("--address is for the ray executor")
        return LocalExecutor(workers, threads_per_worker)
    if name == "ray":
        return RayExecutor(address, cpus_per_job=threads_per_worker or 1, gpus_per_job=gpus_per_job, num_cpus=None)
    raise ConfigError(f"unknown executor {name!r}; known: {', '.join(EXECUTORS)}")


@dataclass
class GridRun:
    """What :func:`run_jobs` did: every job's result (in the order of the specs), how many ran now."""

    results: list[dict[str, Any]]
    keys: list[str]
    computed: int
    reused: int
    seconds: float
    job_seconds: list[float] = field(default_factory=list)
    runs: list[str | None] = field(default_factory=list)  # the run that computed each result (None: not recorded)


def run_jobs(
    fn: JobFn,
    specs: Sequence[dict[str, Any]],
    store: JobStore | str | os.PathLike,
    *,
    executor: Executor | None = None,
    version: str = "1",
    context: dict[str, Any] | None = None,
    on_result: Callable[[int], None] | None = None,
    run: str = THIS_RUN,
) -> GridRun:
    """Run every job of ``specs`` that ``store`` does not hold yet on ``executor`` (default: in this process),
    writing each result as it finishes; return all results, read back from the store. ``context`` reaches every
    job but is not part of its key; ``run`` is recorded with each result computed now (default: this process)."""
    store = store if isinstance(store, JobStore) else JobStore(store)
    store.clear_stale()
    executor = executor or LocalExecutor()
    t0 = time.perf_counter()
    keys = [job_key(fn, s, version) for s in specs]
    todo: dict[str, int] = {}
    found: dict[str, dict[str, Any]] = {}
    for i, k in enumerate(keys):
        if k in todo or k in found:
            continue
        if store.has(k):
            try:
                found[k] = store.get(k)
                continue
            except JobError as err:
                log.warning(f"damaged job store entry, recomputing it: {err}")
        elif store.path(k).exists():
            log.warning(
                f"incomplete job store entry {store.path(k)} (result.json or arrays.npz missing), recomputing it"
            )
        todo[k] = i
    if todo:
        store.check_writable()
    order = list(todo.values())
    job_seconds = []
    for pos, (result, seconds) in executor.map(fn, [specs[i] for i in order], dict(context or {})):
        i = order[pos]
        store.put(keys[i], fn, specs[i], result, seconds, version, run)
        job_seconds.append(seconds)
        if on_result is not None:
            on_result(i)
    results = [found[k] if k in found else store.get(k) for k in keys]
    runs = [store.run_of(k) for k in keys]
    return GridRun(results, keys, len(order), len(specs) - len(order), time.perf_counter() - t0, job_seconds, runs)
