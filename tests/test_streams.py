"""Streams of small erasure requests (issue #33): the successive kind with ``size`` images per request, retraining
only at ``reference_at``, and variants that train on the reduced set."""

import json

import pytest
from click.testing import CliRunner

from experiments.cli import main as experiments


@pytest.fixture(scope="module")
def stream(tmp_path_factory):
    out = tmp_path_factory.mktemp("stream")
    res = CliRunner().invoke(
        experiments, ["reproduce", "dcu", "--preset", "smoke", "--only", "stream-10", "--seeds", "1", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    return out, json.loads((out / "report.json").read_text())


def test_every_method_forgets_the_same_small_requests_and_retraining_runs_only_at_its_points(stream):
    out, rep = stream
    cells = {c["key"]["method"]: c["result"]["cycles"] for c in rep["cells"]["stream-10"]}
    assert [c is None for c in cells["retrain"]] == [False, True, False]  # reference_at = [1, 3] at smoke
    for method, cycles in cells.items():
        done = [c for c in cycles if c is not None]
        assert all(c["request_size"] == 2 for c in done)
        assert [c["forget_size"] for c in done] == ([2, 6] if method == "retrain" else [2, 4, 6])  # cumulative
    files = sorted(p.name for p in (out / "streams" / "stream-10").iterdir())
    assert files == ["seed0-request1.txt", "seed0-request2.txt", "seed0-request3.txt"]
    drawn = [set(map(int, (out / "streams" / "stream-10" / f).read_text().split())) for f in files]
    assert all(len(d) == 2 for d in drawn) and not (drawn[0] & drawn[1]) and not (drawn[1] & drawn[2])
    assert cells["kde (reduced)"][0]["retain_source"] == "reduced" and cells["kde"][0]["retain_source"] == "full"
    assert cells["condensed"][0]["reduced_size"] < cells["condensed"][0]["retain_size"]


def test_the_report_has_a_time_ratio_only_where_retraining_ran(stream):
    _, rep = stream
    rows = [r for r in rep["rows"] if r["experiment"] == "stream-10"]
    kde = {r["cycle"]: r for r in rows if r["method"] == "kde"}
    assert set(kde) == {1, 2, 3} and "time_ratio" in kde[1] and "time_ratio" in kde[3] and "time_ratio" not in kde[2]
    assert {r["cycle"] for r in rows if r["method"] == "retrain"} == {1, 3}
    assert "retain: reduced" in next(r for r in rows if r["method"] == "kde (reduced)")["extra"]
    assert all(r["forget"] == "+2 images" for r in rows)


def test_the_report_says_a_stream_starts_each_seed_from_its_own_original(stream):
    out, _ = stream
    md = (out / "report.md").read_text()
    assert "In stream-10, the original (initialisation and data order), its condensed file" in md


def test_streams_start_each_seed_from_its_own_original():
    """The stream experiments compare a seed's methods with that seed's retraining, so they start from that seed's
    original (``originals = "per-seed"``); DC-U's own successive-request table keeps seed 0's, as the paper does."""
    from experiments.kinds.successive import originals_seed
    from experiments.runner import load_suite
    from experiments.workspace import Experiment

    exps = {e.name: e for e in load_suite("dcu", "paper")[1]}
    assert [originals_seed(exps[n], 2) for n in ("stream-10", "stream-100")] == [2, 2]
    assert originals_seed(exps["successive-requests"], 2) == 0
    with pytest.raises(Exception, match="originals must be one of seed-0, per-seed"):
        originals_seed(Experiment("x", {"originals": "each"}), 1)
