"""The job engine: content-addressed results, local and Ray executors, retries, nothing recomputed."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from dcforget.errors import ConfigError
from dcforget.jobs import JobError, JobStore, LocalExecutor, job_key, make_executor, run_jobs

sys.path.insert(0, str(Path(__file__).parent))
import jobs_fns  # noqa: E402

SPECS = [{"seed": s, "n": 5} for s in range(4)]


def test_local_grid_is_stored_and_read_back(tmp_path):
    first = run_jobs(jobs_fns.square, SPECS, tmp_path)
    assert (first.computed, first.reused) == (4, 0)
    assert [r["seed"] for r in first.results] == [0, 1, 2, 3]
    assert isinstance(first.results[0]["x"], np.ndarray) and first.results[0]["x"].shape == (5,)
    assert first.results[0]["sum"] == pytest.approx(float((first.results[0]["x"] ** 2).sum()), rel=1e-6)
    again = run_jobs(jobs_fns.square, SPECS + [SPECS[0]], tmp_path)
    assert (again.computed, again.reused) == (0, 5)  # a rerun computes nothing
    assert again.results[0]["pid"] == first.results[0]["pid"]
    doc = json.loads((JobStore(tmp_path).path(first.keys[1]) / "result.json").read_text())
    assert doc["spec"] == SPECS[1] and doc["fn"] == "jobs_fns:square"
    # the key is the content: another spec or another version is another job
    assert job_key(jobs_fns.square, SPECS[0]) != job_key(jobs_fns.square, SPECS[1])
    assert job_key(jobs_fns.square, SPECS[0], "2") != job_key(jobs_fns.square, SPECS[0])


def test_each_result_records_the_run_that_computed_it(tmp_path):
    """A result read back keeps the run that made it (a caller dividing two times can tell whether they are of one
    run); an entry written before runs were recorded has none."""
    from dcforget.jobs import THIS_RUN

    first = run_jobs(jobs_fns.square, SPECS[:2], tmp_path, run="a")
    assert first.runs == ["a", "a"]
    later = run_jobs(jobs_fns.square, SPECS[:3], tmp_path, run="b")
    assert later.runs == ["a", "a", "b"] and later.computed == 1
    assert run_jobs(jobs_fns.square, SPECS[3:], tmp_path).runs == [THIS_RUN]  # by default, this process's run
    doc_path = JobStore(tmp_path).path(first.keys[0]) / "result.json"
    doc = json.loads(doc_path.read_text())
    del doc["run"]
    doc_path.write_text(json.dumps(doc))
    assert run_jobs(jobs_fns.square, SPECS[:1], tmp_path).runs == [None]


def test_unfinished_result_is_not_a_result(tmp_path):
    run = run_jobs(jobs_fns.square, SPECS[:1], tmp_path)
    store = JobStore(tmp_path)
    path = store.path(run.keys[0])
    (path / "arrays.npz").unlink()  # as if killed between the two files (cannot happen with the rename, but)
    dead = _dead_pid()
    stale = path.parent / f".tmp-deadbeef-{socket.gethostname()}-{dead}-abc"  # a killed driver's, on this host
    stale.mkdir()
    assert not store.has(run.keys[0])
    again = run_jobs(jobs_fns.square, SPECS[:1], tmp_path)  # never read as finished: recomputed, put in its place
    assert again.computed == 1 and store.has(run.keys[0]) and again.results[0]["sum"] == run.results[0]["sum"]
    assert not stale.exists() and [p.name for p in path.parent.iterdir()] == [path.name]


@pytest.mark.parametrize(
    "damage", ["truncated-npz", "junk-npz", "truncated-json", "binary-json", "json-list", "other-key"]
)
def test_damaged_entry_is_logged_recomputed_and_replaced(tmp_path, damage, caplog):
    run = run_jobs(jobs_fns.square, SPECS[:2], tmp_path)
    store = JobStore(tmp_path)
    path = store.path(run.keys[0])
    npz, js = path / "arrays.npz", path / "result.json"
    if damage == "truncated-npz":
        npz.write_bytes(npz.read_bytes()[: npz.stat().st_size // 2])
    elif damage == "junk-npz":
        npz.write_bytes(os.urandom(200))
    elif damage == "truncated-json":
        js.write_text(js.read_text()[:20])
    elif damage == "binary-json":
        js.write_bytes(b"\xff\xfe\x00")
    elif damage == "json-list":
        js.write_text("[1, 2]")
    else:
        js.write_text(json.dumps({**json.loads(js.read_text()), "key": "0" * 64}))
    with pytest.raises(JobError, match=str(path)):
        store.get(run.keys[0])
    with caplog.at_level("WARNING", logger="dcforget.jobs"):
        again = run_jobs(jobs_fns.square, SPECS[:2], tmp_path)
    assert (again.computed, again.reused) == (1, 1)
    assert str(path) in caplog.text and "recomputing" in caplog.text
    assert store.get(run.keys[0])["sum"] == run.results[0]["sum"] == again.results[0]["sum"]
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # the damaged copy is gone, no temporary left
    assert run_jobs(jobs_fns.square, SPECS[:2], tmp_path).computed == 0


def test_store_under_a_file_is_refused_before_any_job(tmp_path):
    (tmp_path / "afile").write_text("x")
    calls = []
    with pytest.raises(ConfigError, match="not a directory"):
        run_jobs(jobs_fns.square, SPECS[:1], tmp_path / "afile" / "sub", on_result=lambda i: calls.append(i))
    assert calls == [] and (tmp_path / "afile").read_text() == "x"


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporaries_of_live_drivers_are_kept(tmp_path):
    """Drivers sharing a store: a temporary of a running driver (here: this process) survives another driver's
    cleanup, one of a dead driver on this host goes, one from another host goes only once it is old."""
    store = JobStore(tmp_path)
    (tmp_path / "ab").mkdir(parents=True)
    host = socket.gethostname()
    live = tmp_path / "ab" / f".tmp-0123456789abcdef-{host}-{os.getpid()}-aaaaaaaa"
    dead = tmp_path / "ab" / f".tmp-0123456789abcdef-{host}-{_dead_pid()}-bbbbbbbb"
    remote = tmp_path / "ab" / ".tmp-0123456789abcdef-other-node-7-cccccccc"
    old_remote = tmp_path / "ab" / ".tmp-0123456789abcdef-other-node-8-dddddddd"
    for d in (live, dead, remote, old_remote):
        d.mkdir()
    os.utime(old_remote, (time.time() - 7 * 3600,) * 2)
    store.clear_stale()
    assert live.exists() and remote.exists()
    assert not dead.exists() and not old_remote.exists()


def test_bad_specs_and_functions(tmp_path):
    with pytest.raises(ConfigError, match="plain JSON"):
        run_jobs(jobs_fns.square, [{"seed": float("nan"), "n": 1}], tmp_path)
    with pytest.raises(ConfigError, match="module level"):
        run_jobs(lambda s, c: s, [{}], tmp_path)
    with pytest.raises(ValueError, match="a bug"):
        run_jobs(jobs_fns.boom, [{}], tmp_path)
    with pytest.raises(ConfigError, match="unknown executor"):
        make_executor("slurm")


def test_pool_replaces_a_killed_worker(tmp_path):
    specs = [{"seed": s, "dir": str(tmp_path), "die": s == 1} for s in range(3)]
    with LocalExecutor(workers=2, threads_per_worker=1) as ex:
        run = run_jobs(jobs_fns.die_once, specs, tmp_path / "store", executor=ex)
    assert [r["value"] for r in run.results] == [0, 2, 4]
    assert run.computed == 3
    assert (tmp_path / "ran-1").exists()  # the job did die once
    assert len(list(tmp_path.glob("count-1-*"))) >= 2  # and ran again in a new worker
    assert run_jobs(jobs_fns.die_once, specs, tmp_path / "store", executor=ex).computed == 0


def test_threads_per_worker_rule():
    cores = os.cpu_count() or 1
    assert LocalExecutor(workers=2).threads == max(1, cores // 2)
    assert LocalExecutor(workers=cores * 4).threads == 1


@pytest.fixture(scope="module")
def ray_executor():
    pytest.importorskip("ray", reason="Ray is an optional extra (pip install 'dcforget[ray]')")
    from dcforget.jobs import RayExecutor

    # the local cluster's workers are started with this environment: they must find the test's job functions
    here = str(Path(__file__).parent)
    old = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join([here, str(Path(here).parent), *([old] if old else [])])
    try:
        ex = RayExecutor(num_cpus=2, max_retries=2)
    finally:
        os.environ.pop("PYTHONPATH") if old is None else os.environ.__setitem__("PYTHONPATH", old)
    yield ex
    ex.close()


def test_ray_gives_the_local_results(tmp_path, ray_executor):
    local = run_jobs(jobs_fns.square, SPECS, tmp_path / "local")
    remote = run_jobs(jobs_fns.square, SPECS, tmp_path / "ray", executor=ray_executor)
    assert remote.computed == 4
    for a, b in zip(local.results, remote.results):
        np.testing.assert_array_equal(a["x"], b["x"])
        assert a["sum"] == b["sum"]
    assert run_jobs(jobs_fns.square, SPECS, tmp_path / "ray", executor=ray_executor).computed == 0


def test_ray_retries_a_killed_task(tmp_path, ray_executor):
    specs = [{"seed": s, "dir": str(tmp_path), "die": s == 2} for s in range(4)]
    run = run_jobs(jobs_fns.die_once, specs, tmp_path / "store", executor=ray_executor)
    assert [r["value"] for r in run.results] == [0, 2, 4, 6]
    assert (tmp_path / "ran-2").exists() and len(list(tmp_path.glob("count-2-*"))) == 2
    assert len(list(tmp_path.glob("count-0-*"))) == 1  # nothing duplicated
    assert len([p for p in (tmp_path / "store").rglob("result.json")]) == 4


def test_ray_job_errors_are_not_retried(tmp_path, ray_executor):
    with pytest.raises(JobError, match="a bug"):
        run_jobs(jobs_fns.boom, [{}], tmp_path, executor=ray_executor)


def test_context_reaches_jobs_but_is_not_their_key(tmp_path):
    first = run_jobs(jobs_fns.square, SPECS[:2], tmp_path, context={"data_dir": "/somewhere"})
    again = run_jobs(jobs_fns.square, SPECS[:2], tmp_path, context={"data_dir": "/elsewhere"})
    assert first.computed == 2 and again.computed == 0 and again.keys == first.keys


def test_a_new_training_revision_keys_every_job_again(monkeypatch):
    """What a trainer computes changed (e.g. how epochs are cut into batches): no job stored before is read back."""
    import dcforget.jobs

    before = job_key(jobs_fns.square, SPECS[0])
    monkeypatch.setattr(dcforget.jobs, "TRAINING_REVISION", dcforget.jobs.TRAINING_REVISION + 1)
    assert job_key(jobs_fns.square, SPECS[0]) != before
