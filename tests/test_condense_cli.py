import json

import pytest
from click.testing import CliRunner

from condense.cli import main as condense_main
from dcforget.condensed_store import read_condensed
from unlearn.cli import main as unlearn_main

TINY = "synthetic:classes=4,train=30,test=10,size=16"


@pytest.fixture(scope="module")
def workdir(tmp_path_factory):
    d = tmp_path_factory.mktemp("condense")
    res = CliRunner().invoke(
        unlearn_main, ["train", TINY, "--model", "cnn", "--epochs", "2", "--out", str(d / "orig.pt"), "-q"]
    )
    assert res.exit_code == 0, res.output
    return d


def invoke(*args):
    return CliRunner().invoke(condense_main, [str(a) for a in args])


def test_build_inspect_preview_evaluate(workdir):
    h5 = workdir / "fdm.h5"
    res = invoke(
        "build",
        TINY,
        "--method",
        "fdm",
        "--clusters",
        3,
        "--checkpoint",
        workdir / "orig.pt",
        "--option",
        "steps=5",
        "--out",
        h5,
        "-q",
    )
    assert res.exit_code == 0, res.output
    assert "fdm: 12 images, 12 buckets" in res.output and " s (" in res.output
    cs = read_condensed(h5)
    assert cs.config["method_options"]["steps"] == 5 and "orig.pt" in cs.embedder
    res = invoke("inspect", h5)
    assert res.exit_code == 0 and "per class: [3, 3, 3, 3]" in res.output and "influence 'bucket'" in res.output
    png = workdir / "grid.png"
    res = invoke("preview", h5, "--out", png)
    assert res.exit_code == 0 and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from PIL import Image

    assert Image.open(png).size == (2 * (10 * 18 + 2), 2 * (4 * 18 + 2))
    out = workdir / "eval.json"
    res = invoke("evaluate", h5, "--model", "convnet", "--seeds", 2, "--epochs", 3, "--out", out, "-q")
    assert res.exit_code == 0, res.output
    rep = json.loads(out.read_text())
    # two seeds, two trainings: the report's mean is theirs, and it is what the CLI prints
    a, b = rep["test_accs"]
    assert rep["mean"] == pytest.approx((a + b) / 2) and rep["std"] == pytest.approx(abs(a - b) / 2**0.5)
    assert f"{100 * rep['mean']:.2f}" in res.output


def test_build_trains_the_model_on_the_fly(tmp_path):
    out = tmp_path / "k.h5"
    res = invoke(
        "build", TINY, "--method", "kmeans", "--clusters", 2, "--model", "mlp", "--epochs", 1, "--out", out, "-q"
    )
    assert res.exit_code == 0, res.output
    assert (tmp_path / "k-original.pt").is_file() and len(read_condensed(out)) == 8


def test_methods_lists_options():
    res = invoke("methods")
    assert res.exit_code == 0 and "fdm" in res.output and "steps=100" in res.output


@pytest.mark.parametrize(
    "args, msg",
    [
        (["build", TINY, "--method", "gan", "--clusters", 2], "unknown condensation method 'gan'"),
        (["build", TINY, "--method", "dm"], "give --ipc"),
        (["build", TINY, "--method", "fdm", "--clusters", 99], "exceeds the 26 training images"),
        (["build", TINY, "--method", "fdm", "--clusters", 2, "--option", "steps"], "key=value"),
        (["build", TINY, "--method", "fdm", "--clusters", 2, "--option", "speed=3"], "unknown option"),
        (["build", "synthetic:classes=4,train=30,test=10,size=8", "--clusters", 2], "image shape"),
        (["build", "mnist", "--clusters", 2], "dataset 'synthetic', not 'mnist'"),
        (["inspect", "{tmp}/missing.h5"], "does not exist"),
        (["preview", "{tmp}/junk.h5", "--out", "{tmp}/g.png"], "not a readable HDF5"),
        (["evaluate", "{tmp}/junk.h5"], "not a readable HDF5"),
    ],
)
def test_bad_input_exit_2_one_line_nothing_written(workdir, tmp_path, args, msg):
    (tmp_path / "junk.h5").write_text("junk")
    args = [str(a).format(tmp=tmp_path) for a in args]
    if args[0] == "build":
        args += [
            "--checkpoint",
            str(workdir / "orig.pt"),
            "--out",
            str(tmp_path / "o.h5"),
            "-q",
            "--no-download",
            "--data-dir",
            str(tmp_path),
        ]
    before = sorted(p.name for p in tmp_path.iterdir())
    res = CliRunner().invoke(condense_main, args)
    assert res.exit_code == 2, res.output
    assert msg in res.output and "Traceback" not in res.output
    assert sorted(p.name for p in tmp_path.iterdir()) == before
