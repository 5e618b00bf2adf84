"""Generated suite names and --only lists for `experiments reproduce --report-only`: every one is either accepted
(exit 0, a report) or refused with exactly one ``error:`` line and exit 2, never a traceback; a refused one writes
nothing."""

from __future__ import annotations

import tempfile
from pathlib import Path

from click.testing import CliRunner
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from experiments.cli import main as experiments

DCU = ["random-forgetting", "class-forgetting", "remembrance-size"]
path_like = st.sampled_from(
    [
        "..",
        "../dcu",
        "/etc",
        "dcu/..",
        "./dcu",
        "dcu/",
        "~",
        "",
        " ",
        ".",
        "-x",
        "dcu\n",
        "configs/experiments/dcu",
        "\x00",
        "dcu;rm",
        "nosuch",
    ]
)
names = st.one_of(path_like, st.sampled_from(["dcu", "choices", "demo"]), st.text(max_size=12))
only_items = st.one_of(st.sampled_from(DCU + ["", " ", "nope", "../x"]), st.text(max_size=8))


def _check(args: list[str], out: Path) -> None:
    res = CliRunner().invoke(experiments, args)
    assert "Traceback" not in res.output
    assert res.exit_code in (0, 2), (args, res.output, res.exception)
    if res.exit_code == 2:
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), (args, res.stderr)
        assert not out.exists(), args
    else:
        assert (out / "report.json").is_file()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(suite=names)
def test_generated_suite_names(suite):
    assume(suite not in ("-h", "--help"))  # the help flag, not a suite: it prints the help and exits 0, rightly
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "rep"
        _check(
            ["reproduce", suite, "--preset", "smoke", "--only", "nope-never", "--report-only", "--out", str(out)], out
        )


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(only=st.one_of(st.lists(only_items, max_size=4).map(",".join), st.text(max_size=10)))
def test_generated_only_lists(only):
    with tempfile.TemporaryDirectory() as d:
        out = Path(d) / "rep"
        _check(
            [
                "reproduce",
                "dcu",
                "--preset",
                "smoke",
                "--seeds",
                "1",
                "--only",
                only,
                "--report-only",
                "--out",
                str(out),
            ],
            out,
        )
