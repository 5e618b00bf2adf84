"""The documentation site builds with `mkdocs build --strict` (skipped where the docs extra is not installed), and
the built methods page lists every registered method: the hook (docs/hooks.py) is wired in and expands the page's
generated section, which a strict build alone would not notice (an unexpanded marker is an invisible comment)."""

import html
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from unlearn.methods import METHODS

pytest.importorskip("mkdocs")
pytest.importorskip("mkdocs_click")
pytest.importorskip("mkdocstrings")

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("site")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(REPO / "mkdocs.yml"), "-d", str(out)]
    env = {**os.environ, "NO_MKDOCS_2_WARNING": "1"}
    res = subprocess.run(cmd, check=False, cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert res.returncode == 0, res.stdout + res.stderr
    return out


def test_built_methods_page_lists_every_registered_method(site):
    page = html.unescape((site / "methods" / "index.html").read_text())
    ids = set(re.findall(r'<h2 id="method-([^"]+)"', page))
    assert len(ids) == len(METHODS.names())
    for name in METHODS.names():
        assert f'id="method-{name}"' in page, name
    assert "<!-- generated" not in page


def test_built_cli_reference_has_every_command_and_no_placeholder_defaults(site):
    page = (site / "cli" / "index.html").read_text()
    for command in ("condense build", "unlearn train", "attacks mia", "experiments reproduce"):
        assert command in page, command
    assert "Sentinel.UNSET" not in page


def test_built_reports_index_links_pages_that_exist(site):
    page = (site / "reports" / "index.html").read_text()
    links = re.findall(r'<td><a href="([\w.-]+/(?:report/)?)"', page)
    assert len(links) == len(
        [d for d in (REPO / "reports").iterdir() if (d / "report.md").is_file() or (d / "README.md").is_file()]
    )
    for link in links:
        assert (site / "reports" / link / "index.html").is_file(), link
