"""The documentation site's generated pages (experiments.docgen, filled in by docs/hooks.py at `mkdocs build`) follow
the code: every registered method and every tuned file is on the methods page, every console script in the CLI
reference, every committed report in the reports index."""

import re
from pathlib import Path

import click
import pytest

from experiments import docgen
from unlearn.methods import METHODS
from unlearn.methods.base import Method

REPO = Path(__file__).resolve().parents[1]


def sections(page: str) -> list[str]:
    """The method names the page has a section for (its ``## `name` `` headings)."""
    return re.findall(r"^## `([^`]+)` \{ #method-", page, re.MULTILINE)


def test_methods_page_has_a_section_for_every_registered_method():
    page = docgen.methods_page(REPO)
    assert sorted(sections(page)) == METHODS.names()
    for name in METHODS.names():  # and a row in the summary table, linking to that section
        assert f"| [`{name}`](#method-" in page


def test_methods_page_is_generated_from_the_registry(monkeypatch):
    fake = Method(
        run=lambda ctx: None, defaults={"zeta_option": 7}, summary="a method only this test registers", zero_shot=True
    )
    monkeypatch.setitem(METHODS._items, "zz-docs-test", fake)
    page = docgen.methods_page(REPO)
    assert "zz-docs-test" in sections(page)
    assert "a method only this test registers" in page and "`zeta_option` | `7` | not searched" in page
    assert "`zero_shot`: zero-shot" in page
    monkeypatch.delitem(METHODS._items, "zz-docs-test")
    assert "zz-docs-test" not in sections(docgen.methods_page(REPO))


def test_methods_page_shows_defaults_spaces_capabilities_and_every_tuned_file():
    page = docgen.methods_page(REPO)
    blocks = dict(zip(sections(page), re.split(r"^## `[^`]+` \{ #method-.*$", page, flags=re.MULTILINE)[1:]))
    for name in METHODS.names():
        m = METHODS.get(name)
        for option in m.defaults:
            assert f"| `{option}` |" in blocks[name], (name, option)
        for cap in m.capabilities:
            assert f"- `{cap}`:" in blocks[name], (name, cap)
        for option in m.space:
            assert re.search(rf"\| `{re.escape(option)}` \| .* \| (?!not searched)", blocks[name]), (name, option)
    tuned = docgen.tuned_files(REPO)
    assert tuned, "configs/tuned holds the committed tuned files"
    for t in tuned:
        method = t.doc.get("method")
        assert method in blocks, f"{t.path} names method {method!r}, not registered"
        assert f"`{t.path}`" in blocks[method], t.path


def test_cli_page_documents_every_console_script():
    scripts = docgen.console_scripts(REPO / "setup.py")
    assert {c for c, _, _ in scripts} >= {"condense", "unlearn", "attacks", "experiments"}
    page = docgen.cli_page(REPO)
    for command, module, attr in scripts:
        imported = __import__(module, fromlist=[attr])
        assert isinstance(getattr(imported, attr), click.Command), (module, attr)
        assert f":module: {module}\n    :command: {attr}\n    :prog_name: {command}\n" in page


def test_reports_index_lists_every_committed_report():
    page = docgen.reports_index(REPO)
    dirs = [d.name for d in (REPO / "reports").iterdir() if (d / "report.md").is_file() or (d / "README.md").is_file()]
    assert dirs
    for name in dirs:
        assert f"| [{name}]({name}/" in page, name
    assert set(docgen.report_pages(REPO)) == {f"reports/{r.page}" for r in docgen.committed_reports(REPO)}


def test_markers_expand_and_an_unknown_one_fails():
    text = "# Methods\n\n<!-- generated: methods -->\n"
    out = docgen.expand(text, REPO)
    assert "<!-- generated" not in out and sorted(sections(out)) == METHODS.names()
    with pytest.raises(ValueError, match="unknown generated section"):
        docgen.expand("<!-- generated: nope -->\n", REPO)


def test_every_page_with_a_marker_names_a_known_generator():
    found = {m for p in (REPO / "docs").rglob("*.md") for m in docgen.MARKER.findall(p.read_text())}
    assert found == set(docgen.GENERATORS)  # each generated section is on some page, and only known ones


def test_escape_keeps_code_spans_and_escapes_markdown_elsewhere():
    assert docgen.escape("a * b_c <d> `x*y_z` [e] |t|") == r"a \* b\_c \<d\> `x*y_z` \[e\] \|t\|"
    assert docgen.fmt("") == '`""`' and docgen.fmt(0.123456) == "`0.1235`"


def test_tidy_cli_html_shows_no_default_as_a_dash_and_keeps_real_defaults():
    row = "<tr>\n<td><code>--x</code></td>\n<td>text</td>\n<td>help</td>\n<td>{}</td>\n</tr>"
    html = "\n".join(row.format(d) for d in ("<code>Sentinel.UNSET</code>", "None", "<code>0</code>"))
    out = docgen.tidy_cli_html(html)
    assert "Sentinel" not in out and "<td>None</td>" not in out
    assert out.count("<td>-</td>") == 2 and "<td><code>0</code></td>" in out


def test_methods_page_explains_every_flag_and_links_reference_citations(tmp_path):
    """Every registry flag has its sentence (none is printed as its own name), the legend above the table lists
    them, and a docstring's citation of a reference document becomes a site link only where docs/reference has it."""
    flags = {c for n in METHODS.names() for c in METHODS.get(n).capabilities}
    assert flags <= set(docgen.CAPABILITIES)
    page = docgen.methods_page(REPO)
    assert "`reads_retain`: reads_retain" not in page and "`--retain reduced` applies" in page
    assert "../shared/reference" not in page
    (tmp_path / "docs" / "reference").mkdir(parents=True)
    (tmp_path / "docs" / "reference" / "here.md").write_text("# Here\n\n## 3. A section\n\n### 3.1 Sub\n")
    out = docgen.prose(
        "see ../shared/reference/here.md §3.1 and docs/reference/gone.md §2, `docs/reference/here.md`", tmp_path
    )
    assert (
        out
        == "see [reference/here.md §3.1](reference/here.md#31-sub) and docs/reference/gone.md §2, `docs/reference/here.md`"
    )


def test_reports_index_names_commands_as_their_console_script():
    """A report run under `python -c` recorded `-c reproduce ...` (click names the program by argv[0]), one run as
    `python -m experiments.cli` that: the index shows `experiments reproduce ...`, the same command, and new
    reports record it so (dcforget.provenance.command_line)."""
    from dcforget.provenance import argv_command, command_line

    page = docgen.reports_index(REPO)
    assert "`-c " not in page and "python -m experiments.cli" not in page
    assert command_line("-c reproduce dcu --preset cpu") == "experiments reproduce dcu --preset cpu"
    assert command_line("python -m experiments.cli tune x") == "experiments tune x"
    assert command_line("-c something else") == "-c something else"  # no way to tell which program
    assert argv_command([str(REPO / "experiments" / "cli.py"), "parity", "a b"]) == "experiments parity 'a b'"
