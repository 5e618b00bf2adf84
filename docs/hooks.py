"""MkDocs hook (mkdocs.yml `hooks:`): fills the pages' generated sections (``<!-- generated: NAME -->`` lines: the
methods, the CLI reference, the reports index) and adds the committed reports and their figures to the site, all
from experiments.docgen at build time. Excluded from the site itself (`exclude_docs`)."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

from mkdocs.structure.files import File

ROOT = Path(__file__).resolve().parent.parent


def docgen():
    """experiments.docgen of the checkout being built (its root goes first on sys.path), not another installed copy."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    return importlib.import_module("experiments.docgen")


def on_config(config):
    docgen()  # import early, so mkdocs-click and mkdocstrings find this checkout's packages too
    return config


def on_files(files, config):
    gen = docgen()
    for path, markdown in gen.report_pages(ROOT).items():
        files.append(File.generated(config, path, content=markdown))
    for path, source in gen.report_assets(ROOT):
        files.append(File.generated(config, path, abs_src_path=str(source)))
    return files


def on_page_markdown(markdown, page, config, files):
    return docgen().expand(markdown, ROOT)


def on_page_content(html, page, config, files):
    return docgen().tidy_cli_html(html) if page.file.src_uri == "cli.md" else html
