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
    return subprocess.run([str(LINT), "--config", str(root / ".importlinter"), "--no-cache"], cwd=root, env=env,
                          capture_output=True, text=True, timeout=300)


def copy_tree(dst: Path) -> Path:
    for pkg in PACKAGES:
        shutil.copytree(REPO / pkg, dst / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / ".importlinter", dst / ".importlinter")
    return dst


def test_imports_flow_one_way(tmp_path):
    r = lint(copy_tree(tmp_path))
    assert r.returncode == 0, r.stdout + r.stderr
    assert "1 kept, 0 broken" in r.stdout


def test_an_upward_import_inside_a_function_breaks_the_contract(tmp_path):
    root = copy_tree(tmp_path)
    target = root / "dcforget" / "errors.py"
    target.write_text(target.read_text() + "\n\ndef _sneaky():\n    from experiments import runner\n    return runner\n")
    r = lint(root)
    assert r.returncode != 0
    assert "BROKEN" in r.stdout and "dcforget.errors -> experiments" in r.stdout
