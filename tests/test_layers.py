"""The import contract (docs/DESIGN.md, .importlinter): foundation <- condense <- unlearn <- attacks <- experiments.
import-linter (grimp) sees every import, function-local ones included."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dcforget", "condense", "unlearn", "attacks", "experiments")
LINT = Path(sys.executable).with_name("lint-imports")


def lint(root: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT), "--config", str(root / ".importlinter"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def copy_tree(dst: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", dst / ".importlinter")
    return dst


def test_imports_flow_one_way(tmp_path):
    r = lint(copy_tree(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "2 kept, 0 broken" in r.stdout


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path):
    root = copy_tree(tmp_path)
    target = root / "dcforget" / "errors.py"
    target.write_text(
        target.read_text() + "\n\ndef _sneaky():\n    from experiments import runner\n    return runner\n"
    )
    r = lint(root)
    assert r.returncode != 0
    assert "BROKEN" in r.stdout and "dcforget.errors -> experiments" in r.stdout


def test_the_foundation_importing_an_optional_heavy_package_breaks_the_second_contract(tmp_path):
    root = copy_tree(tmp_path)
    target = root / "dcforget" / "metrics.py"
    target.write_text("import optuna  # noqa: F401\n" + target.read_text())
    r = lint(root)
    assert r.returncode != 0 and "1 kept, 1 broken" in r.stdout and "dcforget.metrics -> optuna" in r.stdout


RUFF = Path(sys.executable).with_name("ruff")


def test_style_is_ruffs(tmp_path):
    """ruff check and ruff format (ruff.toml: line length 120) pass on the whole tree, and a badly formatted file
    would fail the check (so the check is not a no-op)."""
    if not RUFF.exists():
        import pytest

        pytest.skip("ruff is not installed (pip install -e '.[test]')")
    for args in (["check", "."], ["format", "--check", "."]):
        r = subprocess.run([str(RUFF), *args], cwd=REPO, capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr
    bad = tmp_path / "bad.py"
    bad.write_text("import os,sys\nx = {  'a':1 }\n")
    r = subprocess.run(
        [str(RUFF), "format", "--check", "--config", str(REPO / "ruff.toml"), str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode != 0
