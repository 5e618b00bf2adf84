"""Generated bad input (hypothesis): forget specs, ``--option key=value`` strings and TOML configs, near-valid
mutations and arbitrary text, go through the library's one parser for each (and, for a sample, through the CLI).
Each either parses or raises the toolkit's typed error (``DcForgetError`` and its subclasses); never another
exception. On the CLI: exit code 0 or 2, and on 2 exactly one ``error: ...`` line and no traceback."""

from __future__ import annotations

import json
import math
import os
import tempfile
from pathlib import Path

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")
from click.testing import CliRunner  # noqa: E402
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from dcforget.config import check_options, parse_options, resolve_config, section  # noqa: E402
from dcforget.errors import DcForgetError  # noqa: E402
from dcforget.forget import ForgetContext, ForgetSpec, resolve_forget  # noqa: E402
from dcforget.train import TrainConfig  # noqa: E402

TINY = "synthetic:classes=4,train=30,test=10,size=16"
LIB = settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
CLI = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# ------------------------------------------------------------------------------------------ strategies
VALID_SPECS = ["random:0.1", "class:2", "classes:1,2:0.1", "indices:{idx}", "overfit"]
PIECES = [
    ":",
    ",",
    "0",
    "1",
    "2",
    "-1",
    "0.1",
    "1.5",
    "nan",
    "inf",
    "1e309",
    " ",
    "",
    "x",
    "class",
    "random",
    "indices:",
    "classes:",
    "/",
    "#",
    "\x00",
    "é",
    "99999999999999999999",
    "bird",
]


def _mutate(draw, text: str) -> str:
    """A near-valid variant: delete, duplicate, replace or insert a piece, a few times."""
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(text)))
        j = draw(st.integers(i, min(len(text), i + 4)))
        op = draw(st.sampled_from(["delete", "insert", "replace", "case", "dup"]))
        piece = draw(st.sampled_from(PIECES))
        if op == "delete":
            text = text[:i] + text[j:]
        elif op == "insert":
            text = text[:i] + piece + text[i:]
        elif op == "replace":
            text = text[:i] + piece + text[j:]
        elif op == "case":
            text = text[:i] + text[i:j].upper() + text[j:]
        else:
            text = text[:j] + text[i:j] + text[j:]
    return text


@st.composite
def forget_specs(draw, idx: str) -> str:
    if draw(st.booleans()):
        return draw(st.text(max_size=30))
    base = draw(st.sampled_from(VALID_SPECS)).format(idx=idx)
    return base if draw(st.integers(0, 5)) == 0 else _mutate(draw, base)


FINETUNE = {
    "epochs": 30,
    "batch_size": 256,
    "optimizer": "adam",
    "lr": 0.001,
    "momentum": 0.9,
    "weight_decay": 0.0,
    "schedule": "constant",
    "bf16": False,
}
DEFAULTS = {**FINETUNE, "hidden": [128, 512], "fraction": 0.5, "mode": "a"}
PLAUSIBLE = {
    int: ["1", "3", "0", "-2", "2.5"],
    float: ["0.1", "1", "0", "-0.5", "1e3", "nan"],
    bool: ["true", "false", "1", "no", "maybe"],
    str: ["adam", "sgd", "constant", "", "b"],
    list: ["32,16", "8", "a,b", "", "1,2,3"],
}
VALUES = [
    "1",
    "0",
    "-1",
    "0.5",
    "1e-3",
    "nan",
    "inf",
    "-inf",
    "true",
    "ture",
    "yes",
    "",
    " ",
    "1,2",
    "1,,2",
    "x",
    "1e309",
    "99999999999999999999",
    "0x10",
    "1_000",
    "adam",
    "sgd",
]


@st.composite
def option_strings(draw) -> str:
    kind = draw(st.integers(0, 4))
    if kind == 0:
        return draw(st.text(max_size=20))
    if kind == 4:  # a plausible one, valid or just outside what is allowed
        key = draw(st.sampled_from(sorted(DEFAULTS)))
        return f"{key}={draw(st.sampled_from(PLAUSIBLE[type(DEFAULTS[key])]))}"
    key = draw(st.sampled_from([*DEFAULTS, "epochz", "", " epochs", "EPOCHS", "lr "]))
    value = draw(st.sampled_from(VALUES)) if kind < 3 else draw(st.text(max_size=10))
    sep = draw(st.sampled_from(["=", "=", "=", "==", ":", ""]))
    return f"{key}{sep}{value}"


KEYS = [
    "seed",
    "per_class",
    "model",
    "method",
    "val_fraction",
    "clusters",
    "modle",
    "train",
    "epochs",
    "lr",
    "batch_size",
    "optimizer",
    "momentum",
    "weight_decay",
    "bf16",
    "unlearn",
    "finetune",
    "model_options",
    "hidden",
    "data_seed",
    "ipc",
    "x",
]
SCALARS = st.one_of(
    st.integers(-3, 10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["mlp", "cnn", "adam", "zero", "", "finetune"]),
    st.text(max_size=8),
)
VALUES_TOML = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(KEYS), inner, max_size=3),
    max_leaves=6,
)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf") if math.isinf(v) else repr(v)
    if isinstance(v, int):
        return str(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {_toml_value(x)}" for k, x in v.items()) + "}"


def _toml(doc: dict, prefix: str = "") -> str:
    """A small TOML writer: scalars and inline values first, then one [table] per nested dict."""
    lines = [f"{k} = {_toml_value(v)}" for k, v in doc.items() if not isinstance(v, dict)]
    for k, v in doc.items():
        if isinstance(v, dict):
            name = f"{prefix}.{k}" if prefix else k
            lines += ["", f"[{name}]", _toml(v, name)]
    return "\n".join(lines) + "\n"


@st.composite
def toml_texts(draw) -> str:
    doc = draw(
        st.dictionaries(
            st.sampled_from(KEYS),
            VALUES_TOML | st.dictionaries(st.sampled_from(KEYS), VALUES_TOML, max_size=3),
            max_size=4,
        )
    )
    text = _toml(doc)
    how = draw(st.integers(0, 4))
    if how == 0:
        return draw(st.text(max_size=40))
    if how == 1:  # a near-valid one: a character lost or added
        return _mutate(draw, text)
    return text


# ------------------------------------------------------------------------------------------ the library
@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("gen")
    (d / "idx.txt").write_text("0\n3\n5\n")
    return d


CTX = ForgetContext(torch.arange(40) % 4, 4, seed=0, class_names=("airplane", "bird", "cat", "dog"))


@LIB
@given(data=st.data())
def test_forget_specs_parse_or_typed_error(files, data):
    spec = data.draw(forget_specs(str(files / "idx.txt")))
    try:
        parsed = ForgetSpec.parse(spec)
        split = resolve_forget(parsed, CTX)
    except DcForgetError as err:
        event(f"refused: {type(err).__name__}")
        return
    event("parsed")
    assert len(split.forget) + len(split.retain) == 40 and len(split.forget) >= 1


@LIB
@given(pairs=st.lists(option_strings(), min_size=1, max_size=3))
def test_option_strings_parse_or_typed_error(pairs):
    try:
        out = parse_options(pairs, DEFAULTS, " of method 'x'")
    except DcForgetError as err:
        event(f"refused: {type(err).__name__}")
        return
    event("parsed")
    for key, value in out.items():
        assert key in DEFAULTS and isinstance(value, type(DEFAULTS[key]))
        if isinstance(value, float):
            assert math.isfinite(value)


def _load_config(path: Path) -> None:
    """What `unlearn train` and an unlearning request do with a config file, up to the work."""
    from dcforget.models import MODELS
    from unlearn.methods import METHODS

    defaults = {
        "model": "cnn",
        "model_options": {},
        "seed": 0,
        "per_class": None,
        "val_fraction": 0.15,
        "train": TrainConfig().to_dict(),
        "method": None,
        "unlearn": {},
    }
    config = resolve_config(defaults, None, str(path), {}, device=torch.device("cpu"))
    TrainConfig.from_dict(section(config, "train"))
    MODELS.get(config["model"])
    for method, table in section(config, "unlearn").items():
        check_options(table, METHODS.get(method).defaults, f" of method {method!r}")


@LIB
@given(text=toml_texts())
def test_toml_configs_load_or_typed_error(text):
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        try:
            _load_config(path)
        except DcForgetError as err:
            event(f"refused: {type(err).__name__}")
        else:
            event("loaded")


# ------------------------------------------------------------------------------------------ a sample, on the CLI
@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    from experiments.cli import unlearn_main

    d = tmp_path_factory.mktemp("gen-ck")
    (d / "small.toml").write_text("[model_options]\nhidden = [32, 16]\n")
    res = CliRunner().invoke(
        unlearn_main,
        [
            "train",
            TINY,
            "--model",
            "mlp",
            "--config",
            str(d / "small.toml"),
            "--epochs",
            "1",
            "--out",
            str(d / "orig.pt"),
            "-q",
        ],
    )
    assert res.exit_code == 0, res.output
    return d / "orig.pt"


def _check_cli(res) -> None:
    assert res.exit_code in (0, 2), (res.exit_code, res.output, res.exception)
    assert "Traceback" not in res.output
    event(f"exit {res.exit_code}" + (" (validated)" if "error: validated" in res.stderr else ""))
    if res.exit_code == 2:
        lines = res.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), res.stderr


class _Validated(DcForgetError):
    """Stands in for the work once a request has been validated: keeps the sample fast."""


@pytest.fixture
def no_work(monkeypatch):
    from unlearn import request

    def stop(self, **kw):
        raise _Validated("validated")

    monkeypatch.setattr(request.PreparedRequest, "run", stop)


@CLI
@given(data=st.data())
def test_forget_specs_on_the_cli(files, checkpoint, data):
    from experiments.cli import unlearn_main

    spec = data.draw(forget_specs(str(files / "idx.txt")))
    with tempfile.TemporaryDirectory() as out:
        res = CliRunner().invoke(
            unlearn_main,
            [
                "--checkpoint",
                str(checkpoint),
                "--forget",
                spec,
                "--method",
                "none",
                "--untuned",
                "--out",
                os.path.join(out, "u"),
                "-q",
            ],
        )
    _check_cli(res)


@CLI
@given(pairs=st.lists(option_strings(), min_size=1, max_size=2))
def test_option_strings_on_the_cli(checkpoint, no_work, pairs):
    from experiments.cli import unlearn_main

    args = ["--checkpoint", str(checkpoint), "--forget", "class:1", "--method", "finetune", "--untuned", "-q"]
    for p in pairs:
        args += ["--option", p]
    with tempfile.TemporaryDirectory() as out:
        res = CliRunner().invoke(unlearn_main, [*args, "--out", os.path.join(out, "u")])
    _check_cli(res)


@CLI
@given(text=toml_texts())
def test_toml_configs_on_the_cli(checkpoint, no_work, text):
    from experiments.cli import unlearn_main

    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "c.toml"
        path.write_text(text, encoding="utf-8", errors="surrogatepass")
        res = CliRunner().invoke(
            unlearn_main,
            [
                "--checkpoint",
                str(checkpoint),
                "--forget",
                "class:1",
                "--method",
                "finetune",
                "--config",
                str(path),
                "--untuned",
                "-q",
                "--out",
                os.path.join(d, "u"),
            ],
        )
    _check_cli(res)
