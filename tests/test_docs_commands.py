"""The commands the documentation site shows are real: every line of a ```bash block in docs/ that runs one of the
console scripts parses with that command's own click definition (subcommands, options, choices, required values),
so a renamed or removed option fails here and not in a reader's terminal."""

import importlib
import re
import shlex
from pathlib import Path

import click
import pytest

from experiments import docgen

REPO = Path(__file__).resolve().parents[1]
SCRIPTS = {c: (m, a) for c, m, a in docgen.console_scripts(REPO / "setup.py")}


def split(line: str) -> list[str]:
    """Shell words of LINE, a trailing ``# comment`` dropped (a comment may hold an apostrophe)."""
    lex = shlex.shlex(line, posix=True, punctuation_chars=False)
    lex.whitespace_split, lex.commenters = True, "#"
    return list(lex)


def documented_commands() -> list[tuple[str, str]]:
    """(page, command line) of every console-script line in the docs' bash blocks (continuations joined)."""
    out = []
    for md in sorted((REPO / "docs").rglob("*.md")):
        for block in re.findall(r"```bash\n(.*?)```", md.read_text(), re.DOTALL):
            for line in re.sub(r"\\\n\s*", " ", block).splitlines():
                line = line.strip()
                words = split(line) if line else []
                if words and words[0].removeprefix(".venv/bin/") in SCRIPTS:
                    out.append((str(md.relative_to(REPO)), line))
    return out


def parse(line: str) -> None:
    """Parse LINE as its console script would, down to the subcommand; raises click's error when it does not."""
    words = split(line)
    name = words[0].removeprefix(".venv/bin/")
    module, attr = SCRIPTS[name]
    cmd, args = getattr(importlib.import_module(module), attr), words[1:]
    while True:
        ctx = cmd.make_context(name, list(args))
        rest = [*getattr(ctx, "_protected_args", []), *ctx.args]
        if isinstance(cmd, click.Group) and rest and rest[0] in cmd.commands:
            cmd, name, args = cmd.commands[rest[0]], rest[0], rest[1:]
            continue
        return


def test_the_docs_show_commands_of_every_stage():
    shown = {split(line)[0].removeprefix(".venv/bin/") for _, line in documented_commands()}
    assert {"unlearn", "condense", "attacks", "experiments"} <= shown


@pytest.mark.parametrize("page,line", documented_commands())
def test_documented_command_parses(page, line):
    parse(line)


@pytest.mark.parametrize(
    "line",
    [
        "unlearn train cifar10 --no-such-option",
        "condense build",
        "experiments reproduce dcu --preset nope --out x",
        "attacks mia --data-dir data",
    ],
)
def test_a_wrong_command_is_caught(line):
    with pytest.raises(click.ClickException):
        parse(line)
