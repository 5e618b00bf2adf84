"""Pages of the documentation site generated at build time (docs/hooks.py calls these from MkDocs), so they cannot
drift from the code: the methods page from the method registry and the tuned files, the CLI reference from the
console scripts that setup.py installs, and the committed reports with an index of them.

A hand-written page in docs/ asks for a generated section with a line ``<!-- generated: NAME -->`` (NAME a key of
GENERATORS: a function of the repository root returning Markdown); a new generated section is one more entry there.
Every function returns Markdown text or file lists and writes nothing; `mkdocs build` adds them to the site."""

from __future__ import annotations

import ast
import inspect
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dcforget.provenance import command_line

# what each registry flag means to a user (the field names of unlearn.methods.base.Method)
CAPABILITIES = {
    "needs_condensed": "needs a condensed file (`--from-condensed`): it trains on the reduced retain set",
    "needs_offline": "needs a checkpoint made by `unlearn offline` (it carries DC-U's remembrance set)",
    "trains_fresh": "trains a freshly initialised network (the others start from the original)",
    "zero_shot": "zero-shot: sees the forget set and the model only, never retain data (enforced by the request)",
    "auxiliary": "also reads held-out validation images (never trained on)",
    "class_only": "whole-class forgetting only: other forget specs are refused before any work",
    "reads_validation": (
        "reads the validation split inside the method, so its studies serve it one half of the split and choose on "
        "the other"
    ),
    "reads_retain": (
        "reads a retain set through the request (every method but the zero-shot ones, the correction methods and those "
        "that build their own set from a condensed file or DC-U's offline phase), so `--retain reduced` applies to it: it is then served "
        "the reduced retain set of a condensed file instead of the full one"
    ),
    "corrects": (
        "answers correction requests (`labels:FILE`, `features:EDIT:FILE`: the samples stay, corrected) and only "
        "those; removal requests are refused before any work, as correction requests are by every other method "
        "([Correcting features and labels](corrections.md))"
    ),
}

# the shorthand of the methods' one-line summaries, spelled out once above the table (a new abbreviation in a
# summary wants a line here)
SHORTHAND = [
    ("F, R", "the forget set and the retain set (the training images the request removes, and the rest)"),
    ("CE", "cross-entropy loss on the true labels"),
    (
        "KL, KL(T=4), KD",
        "Kullback-Leibler divergence between two models' softened outputs (at temperature T), as used in knowledge "
        "distillation (KD) from a teacher, usually the original model",
    ),
    (
        "DSA",
        "differentiable Siamese augmentation (the augmentation of dataset condensation, applied to real and "
        "condensed images alike)",
    ),
    (
        "kgltop1 to kgltop7",
        "Deep Unlearn's names for top entries of the NeurIPS 2023 Kaggle machine-unlearning challenge (kgltop1 won)",
    ),
    ("CF-k", "Catastrophic Forgetting-k: fine-tune only the last k blocks and the classifier (method `cf-k`)"),
    (
        "MU; Beginning, Intermediate, Final",
        "DC-U's modular unlearning, and the three modules it cuts the network into (early layers, middle layers, "
        "head); the remembrance set is the few held-out images per class DC-U fits the head to",
    ),
    ("MIA", "membership-inference attack"),
    ("PGD", "projected gradient descent (an adversarial attack)"),
    ("LRP", "layer-wise relevance propagation"),
    ("SSD", "Selective Synaptic Dampening (method `ssd`)"),
]

_SPECIAL = re.compile(r"([\\*_<>\[\]|])")


def escape(text: str) -> str:
    """Markdown-safe prose: characters that Markdown would read as emphasis, HTML or links are escaped outside
    code spans (docstrings are plain text with ``code``)."""
    parts = re.split(r"(``.+?``|`[^`]+`)", text)
    return "".join(p if p.startswith("`") else _SPECIAL.sub(r"\\\1", p) for p in parts)


# a citation of a reference document in a docstring: a file of docs/reference/, or the same name under
# ../shared/reference/ (the shared folder beside a checkout, outside the repository), optionally with a section
# (§3, §1.5)
_REFERENCE = re.compile(
    r"(?:\.\./shared/reference/|docs/reference/)(?P<name>[\w-]+)\.md(?: §(?P<section>\d+(?:\.\d+)*))?"
)


def _heading_anchor(page: Path, section: str) -> str | None:
    """The anchor the site gives the heading of ``page`` numbered ``section`` ("3" for "## 3. ARU ...", "1.5" for
    "### 1.5 ..."), slugged as mkdocs.yml's toc does (pymdownx lower-case slugify, duplicates numbered); None when
    there is no such heading."""
    try:
        from pymdownx.slugs import slugify
    except ImportError:  # the docs extras are not installed: link the page only
        return None
    slug = slugify(case="lower")
    seen: dict[str, int] = {}
    found = None
    in_fence = False
    for line in page.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_fence = not in_fence
        m = None if in_fence else re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        text = re.sub(r"[`*]", "", m.group(1))
        anchor = slug(text, "-")
        if anchor in seen:  # Python-Markdown's toc makes a repeated id unique with _1, _2, ...
            seen[anchor] += 1
            anchor = f"{anchor}_{seen[anchor]}"
        else:
            seen[anchor] = 0
        if found is None and re.match(rf"^{re.escape(section)}\.?\s", text):
            found = anchor
    return found


def prose(text: str, root: Path, page_dir: str = "") -> str:
    """:func:`escape`, with each citation of a reference document that the site has (a file of docs/reference/, or
    one of ../shared/reference/ whose name docs/reference/ holds too) rendered as a link to that page and its
    section; a citation of a document the site lacks stays plain text. ``page_dir``: the folder of the page the
    text goes on, relative to docs/ ("" for a top-level page)."""
    out = []
    for part in re.split(r"(``.+?``|`[^`]+`)", text):
        if part.startswith("`"):
            out.append(part)
            continue
        last = 0
        for m in _REFERENCE.finditer(part):
            target = root / "docs" / "reference" / f"{m['name']}.md"
            if not target.is_file():
                continue
            out.append(escape(part[last : m.start()]))
            href = ("../" * len(Path(page_dir).parts)) + f"reference/{m['name']}.md"
            label = f"reference/{m['name']}.md"
            if m["section"]:
                label += f" §{m['section']}"
                anchor = _heading_anchor(target, m["section"])
                href += f"#{anchor}" if anchor else ""
            out.append(f"[{label}]({href})")
            last = m.end()
        out.append(escape(part[last:]))
    return "".join(out)


def shorthand_legend() -> list[str]:
    """The legend above the methods table: the summaries' abbreviations and the flags of its third column."""
    lines = ["**Reading the table.** Shorthand in the summaries:", ""]
    lines += [f"- **{escape(k)}**: {v}" for k, v in SHORTHAND]
    lines += ["", "The *needs / does* column lists the method's registry flags:", ""]
    lines += [f"- `{k}`: {v}" for k, v in CAPABILITIES.items()]
    lines.append("")
    return lines


def first_paragraph(obj: Any) -> str:
    """The first paragraph of a module's or function's docstring, on one line ("" when it has none)."""
    doc = inspect.getdoc(obj) or ""
    return " ".join(doc.split("\n\n")[0].split())


def fmt(value: Any) -> str:
    """One option value as a code span (floats to 4 significant digits, as configs show them)."""
    if isinstance(value, float):
        value = f"{value:.4g}"
    elif isinstance(value, (dict, list, tuple)) or value == "":
        value = json.dumps(value)  # an empty string shows as "" (an empty code span would show nothing)
    return f"`{value}`"


def space_text(dim: Any) -> str:
    """A search-space dimension (dcforget.space) in words."""
    d = dim.to_dict() if hasattr(dim, "to_dict") else {"type": str(dim)}
    kind = d.get("type")
    if kind in ("float", "int"):
        scale = "log-uniform" if d.get("log") else "uniform"
        return f"{kind} {scale} in [{fmt(d['low'])}, {fmt(d['high'])}]"
    if kind == "epochs":
        return f"integer in [{d['low']}, ceil({d['fraction']:g} x the original's training epochs)]"
    if kind == "choice":
        return "one of " + ", ".join(fmt(v) for v in d["values"])
    if kind == "fixed":
        return f"fixed at {fmt(d['value'])}"
    return fmt(d)


@dataclass(frozen=True)
class TunedFile:
    path: str  # relative to the repository root
    doc: dict[str, Any]


def tuned_files(root: Path) -> list[TunedFile]:
    """Every tuned-options file under ROOT/configs/tuned (PRESET/DATASET-MODEL/METHOD[.KIND].json), sorted."""
    out = []
    for p in sorted((root / "configs" / "tuned").glob("*/*/*.json")):
        try:
            doc = json.loads(p.read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError):
            doc = {}
        out.append(TunedFile(str(p.relative_to(root)), doc if isinstance(doc, dict) else {}))
    return out


def _anchor(name: str) -> str:
    return "method-" + re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")


def _tuned_section(files: list[TunedFile], defaults: dict[str, Any]) -> list[str]:
    if not files:
        return ["**Tuned settings:** none committed; a request runs the registered defaults.", ""]
    lines = [
        (
            "**Tuned settings** (`experiments tune`, chosen on the validation split; a request on the same dataset, "
            "model and kind of forgetting uses them unless `--untuned`):"
        ),
        "",
    ]
    for t in files:
        d = t.doc
        setup, study, meta = d.get("setup") or {}, d.get("study") or {}, d.get("meta") or {}
        facts = [f"preset `{d.get('preset')}`", f"{d.get('dataset')} / {d.get('model')}"]
        if setup.get("forget"):
            facts.append(f"tuned on forget spec `{setup['forget']}`")
        if study.get("trials"):
            facts.append(f"{study['trials']} trials")
        if meta.get("seeds"):
            facts.append(f"{len(meta['seeds'])} seeds")
        git = meta.get("git_commit") or meta.get("git")
        if git:
            facts.append(f"code `{str(git)[:10]}`")
        lines += [f"- `{t.path}`: " + ", ".join(facts), ""]
        opts = d.get("options") or {}
        if opts:
            lines += ["    | option | tuned | registered default |", "    |---|---|---|"]
            lines += [
                f"    | `{k}` | {fmt(v)} | {fmt(defaults[k]) if k in defaults else '(not an option now)'} |"
                for k, v in sorted(opts.items())
            ]
            lines.append("")
    return lines


def methods_page(root: Path) -> str:
    """The methods page: every method of unlearn.methods.METHODS with its summary, source, capabilities, defaults,
    search space and the tuned files committed for it."""
    import sys

    from unlearn.methods import DEFAULT_METHOD, METHODS

    tuned = tuned_files(root)
    by_method: dict[str, list[TunedFile]] = {}
    for t in tuned:
        by_method.setdefault(str(t.doc.get("method")), []).append(t)
    names = METHODS.names()
    lines = [
        (
            "Generated when the site is built from the method registry (`unlearn.methods.METHODS`) and the tuned files "
            "under `configs/tuned/`; `unlearn methods` prints the same registry in the terminal. Choose one with "
            "`unlearn --method NAME` and set its options with `--option KEY=VALUE` (or a `--config` file). "
            f"The default method is [`{DEFAULT_METHOD}`](#{_anchor(DEFAULT_METHOD)}). How well each one forgets is "
            "measured in the [committed reports](./reports/index.md), not here."
        ),
        "",
        f"{len(names)} methods are registered.",
        "",
        *shorthand_legend(),
        "| method | what it does | needs / does | tuned files |",
        "|---|---|---|---|",
    ]
    for name in names:
        m = METHODS.get(name)
        caps = ", ".join(f"`{c}`" for c in m.capabilities) or "-"
        lines.append(
            f"| [`{name}`](#{_anchor(name)}) | {escape(m.summary)} | {caps} | {len(by_method.get(name, []))} |"
        )
    lines.append("")
    for name in names:
        m = METHODS.get(name)
        module = sys.modules.get(getattr(m.run, "__module__", ""), None)
        lines += [f"## `{name}` {{ #{_anchor(name)} }}", "", escape(m.summary) + ".", ""]
        source = first_paragraph(module) if module is not None else ""
        if source:
            where = module.__name__.replace(".", "/") + ".py"
            lines += [f"**Source** (`{where}`): {prose(source, root)}", ""]
        if m.reference:  # where the registered defaults come from (the registry's ``reference``)
            lines += [f"**Reference (its defaults):** {prose(m.reference, root)}", ""]
        if m.capabilities:
            lines += ["**Capabilities:**", ""]
            for c in m.capabilities:
                text = CAPABILITIES.get(c, c)
                if c == "reads_validation" and callable(m.reads_validation):
                    with_defaults = "yes" if m.reads_validation_with() else "no"
                    text += f" (depends on its options; with the defaults: {with_defaults})"
                lines.append(f"- `{c}`: {text}")
            lines.append("")
        if m.defaults:
            lines += ["| option | default | search space |", "|---|---|---|"]
            for k, v in m.defaults.items():
                dim = m.space.get(k)
                lines.append(f"| `{k}` | {fmt(v)} | {space_text(dim) if dim is not None else 'not searched'} |")
            lines.append("")
        else:
            lines += ["No options.", ""]
        lines += _tuned_section(by_method.get(name, []), m.defaults)
    orphans = sorted(set(by_method) - set(names))
    if orphans:
        lines += ["## Tuned files of methods not registered", ""]
        lines += [f"- `{t.path}` (method `{t.doc.get('method')}`)" for o in orphans for t in by_method[o]]
        lines.append("")
    return "\n".join(lines)


def console_scripts(setup_py: Path) -> list[tuple[str, str, str]]:
    """(command, module, attribute) of each console script setup.py installs, in its order (read from the file's
    syntax tree; nothing is executed)."""
    tree = ast.parse(setup_py.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            value = ast.literal_eval(node.value)
            out = []
            for entry in value.get("console_scripts", []):
                command, target = (s.strip() for s in entry.split("=", 1))
                module, attr = (s.strip() for s in target.split(":", 1))
                out.append((command, module, attr))
            return out
    return []


def cli_page(root: Path) -> str:
    """The CLI reference: one mkdocs-click block per console script, so every command, option and help text is the
    click command's own."""
    scripts = console_scripts(root / "setup.py")
    lines = [
        "Generated when the site is built from the click commands that `setup.py` installs as console scripts: "
        + ", ".join(f"[`{c}`](#{c}) (`{m}:{a}`)" for c, m, a in scripts)
        + ". Every command also answers `--help`. "
        "The options shared by every command that has the concept (`--data-dir`, `--per-class`, `--model`, "
        "`--checkpoint`, `--forget`, `--method`, `--seed`, `--device`, `--epochs`, `--config`, `--preset`, "
        "`--out`, `--force`, `--quiet`) mean the same everywhere; forget specs are described in "
        "[Concepts](concepts.md#forget-specs).",
        "",
    ]
    for command, module, attr in scripts:
        lines += [  # mkdocs-click writes the command's heading (level 2, id COMMAND) and its subcommands' (level 3)
            "::: mkdocs-click",
            f"    :module: {module}",
            f"    :command: {attr}",
            f"    :prog_name: {command}",
            "    :depth: 1",
            "    :style: table",
            "    :list_subcommands: true",
            "",
        ]
    return "\n".join(lines)


_NO_DEFAULT = re.compile(r"<td>(?:<code>Sentinel\.UNSET</code>|None)</td>(\s*</tr>)")


def tidy_cli_html(html: str) -> str:
    """The CLI reference's HTML with "no default" shown as "-": mkdocs-click's tables print an option without a
    default as ``None``, and, under click 8.2 or later, a flag's as click's internal ``Sentinel.UNSET``."""
    return _NO_DEFAULT.sub(r"<td>-</td>\1", html)


@dataclass(frozen=True)
class Report:
    name: str  # the folder under reports/
    page: str  # its Markdown file, relative to reports/
    title: str
    command: str | None
    code: str | None


def committed_reports(root: Path) -> list[Report]:
    """Every reports/NAME/ with a report.md (or a README.md), with the title, command and commit its header names."""
    out = []
    for d in sorted(p for p in (root / "reports").glob("*") if p.is_dir()):
        md = next((d / n for n in ("report.md", "README.md") if (d / n).is_file()), None)
        if md is None:
            continue
        text = md.read_text()
        title = next((ln.lstrip("# ").strip() for ln in text.splitlines() if ln.startswith("#")), d.name)
        command = re.search(r"^Command: `(.+?)`", text, re.MULTILINE)
        code = re.search(r"^Code: (\S+)", text, re.MULTILINE)
        out.append(Report(d.name, f"{d.name}/{md.name}", title, command and command.group(1), code and code.group(1)))
    return out


def report_assets(root: Path) -> list[tuple[str, Path]]:
    """(site path, source file) of the figures the committed reports show, and the JSON reports of a folder that
    has no Markdown page (`attacks ulira` reports: report.json, or another name given with --out), which generated
    tables link to."""
    out = [
        (str(j.relative_to(root)), j)
        for j in sorted((root / "reports").glob("*/*.json"))
        if not (j.parent / "report.md").is_file() and not (j.parent / "README.md").is_file()
    ]
    for d in sorted(p for p in (root / "reports").glob("*/figures") if p.is_dir()):
        for f in sorted(d.rglob("*")):
            if f.is_file() and f.suffix.lower() in (".png", ".svg", ".jpg", ".jpeg", ".pdf"):
                out.append((str(f.relative_to(root)), f))
    return out


def reports_index(root: Path) -> str:
    """The index of committed reports: each one's title, the command that made it and the commit it ran."""
    reports = committed_reports(root)
    lines = [
        (
            "Every figure the toolkit claims is in one of these reports, copied here verbatim from `reports/` when "
            "the site is built. Each report names the command that produced it and the commit of the code it ran; "
            "to reproduce one, check out that commit in a worktree and run its command there "
            "(see [Getting started](../getting-started.md#reproducing-a-report))."
        ),
        "",
        "| report | what | command | code |",
        "|---|---|---|---|",
    ]
    for r in reports:
        cmd = f"`{command_line(r.command)}`" if r.command else "-"  # `-c reproduce` is `experiments reproduce`
        code = f"`{r.code[:10]}{'+dirty' if r.code.endswith('+dirty') else ''}`" if r.code else "-"
        lines.append(f"| [{r.name}]({r.page}) | {escape(r.title)} | {cmd} | {code} |")
    others = other_results(root)
    if others:
        lines += [
            "",
            (
                "Results committed as data only (no Markdown report; the README or the scripts beside them say "
                "how they were made):"
            ),
            "",
        ]
        lines += [f"- `{p}`" for p in others]
    lines.append("")
    return "\n".join(lines)


def other_results(root: Path) -> list[str]:
    """Committed result files under reports/ that no report page shows: JSON files of folders without a report.md
    or README.md, and JSON files at the top of reports/."""
    shown = {r.name for r in committed_reports(root)}
    out = [str(p.relative_to(root)) for p in sorted((root / "reports").glob("*.json"))]
    for d in sorted(p for p in (root / "reports").glob("*") if p.is_dir() and p.name not in shown):
        out += [str(p.relative_to(root)) for p in sorted(d.glob("*.json"))]
    return out


def policy_section(root: Path) -> str:
    """The committed default policies (configs/policy/<preset>/<dataset>-<model>.json): per kind of request, the entry
    `unlearn` follows without --method, and every candidate study behind it (validation figures only)."""
    from unlearn.methods import METHODS

    files = sorted((root / "configs" / "policy").glob("*/*.json"))
    if not files:
        return "No policy is committed yet: `unlearn` without `--method` uses the fallback (`condensed`) and says so."
    lines: list[str] = []
    for f in files:
        doc = json.loads(f.read_text())
        for kind, e in sorted(doc.get("entries", {}).items()):
            on = e.get("tuned_on", {})
            meta = e.get("meta", {})
            ratio = e.get("time_ratio")
            reads = METHODS.get(e["method"]).reads_retain
            source = f" with the **{e['retain']}** retain set" if reads else " (it builds its own training set)"
            lines += [
                f"### {doc.get('dataset')} / {doc.get('model')}, {kind} requests (preset {doc.get('preset')})",
                "",
                f"`{f.relative_to(root)}`: **`{e['method']}`**{source}, chosen by "
                f"objective `{e.get('objective')}` (norm {fmt(e.get('norm'))}, time "
                f"{'n/a' if ratio is None else f'{ratio:.3f}x'} retraining's"
                f"{'' if e.get('feasible', True) else ', over the time bound: no candidate met it'}). Tuned on "
                f"{on.get('train_size')} training images ({on.get('images_per_class')} per class), originals trained "
                f"{on.get('epochs')} epochs, forgetting `{on.get('forget')}`; candidates: {escape(str(e.get('candidates_picked')))}. "
                f"Command `{escape(str(meta.get('command')))}`, commit `{str(meta.get('git'))[:10]}`, machine "
                f"{escape(str(meta.get('machine')))}, seeds {meta.get('seeds')}.",
                "",
                "| candidate | retain | norm | RA gap | FA gap | VA gap | val MIA gap | time ratio | within bound |",
                "|---|---|---|---|---|---|---|---|---|",
            ]
            for r in sorted(e.get("candidates", []), key=lambda r: r["norm"]):
                o = [r["objectives"].get(k) for k in ("retain_gap", "forget_gap", "val_gap", "val_mia_gap")]
                tr = r.get("time_ratio")
                lines.append(
                    f"| `{r['method']}` | {r['retain'] if METHODS.get(r['method']).reads_retain else 'its own set'} | "
                    f"{fmt(r['norm'])} | "
                    + " | ".join(fmt(v) for v in o)
                    + f" | {'n/a' if tr is None else f'{tr:.3f}'} | {'yes' if r.get('feasible', True) else 'no'} |"
                )
            lines.append("")
    return "\n".join(lines)


GENERATORS = {"methods": methods_page, "cli": cli_page, "reports": reports_index, "policy": policy_section}
MARKER = re.compile(r"^<!-- generated: ([\w-]+) -->$", re.MULTILINE)


def expand(markdown: str, root: Path) -> str:
    """A page's Markdown with each marker line (``<!-- generated: NAME -->``, NAME one of GENERATORS) replaced by
    that generator's output; an unknown NAME raises ValueError, so a typo fails the build."""

    def one(match: re.Match) -> str:
        name = match.group(1)
        if name not in GENERATORS:
            raise ValueError(f"unknown generated section {name!r}; known: {', '.join(sorted(GENERATORS))}")
        return GENERATORS[name](root)

    return MARKER.sub(one, markdown)


def report_pages(root: Path) -> dict[str, str]:
    """Site path (under reports/) -> Markdown of each committed report, verbatim."""
    return {f"reports/{r.page}": (root / "reports" / r.page).read_text() for r in committed_reports(root)}
