"""Every document a module's docstrings or comments cite (``docs/reference/dcu.md §5.4``, ``docs/DESIGN.md``,
``configs/...``) exists in the repository, so a reader can follow it."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("dcforget", "condense", "unlearn", "attacks", "experiments")
CITED = re.compile(r"(?<![\w/.-])((?:docs|configs|reports|scripts)/[\w/.-]+\.(?:md|toml|json|py|sh))")
BARE_DOC = re.compile(r"(?<![\w/.-])([\w-]+\.md)\b")


def test_cited_documents_exist():
    missing = []
    for pkg in PACKAGES:
        for path in sorted((REPO / pkg).rglob("*.py")):
            text = path.read_text()
            for ref in CITED.findall(text):
                if "NAME" not in ref and "SUITE" not in ref and not (REPO / ref).exists():
                    missing.append(f"{path.relative_to(REPO)}: {ref}")
            for ref in BARE_DOC.findall(text):  # a bare document name must be one of the repository's own
                if ref not in ("report.md", "README.md") and not any(REPO.glob(f"docs/**/{ref}")):
                    missing.append(f"{path.relative_to(REPO)}: {ref} (no such document under docs/)")
    assert not missing, "\n".join(missing)
