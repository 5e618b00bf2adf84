"""What every committed figure carries: the command, the code version, the machine and when."""

from __future__ import annotations

import platform
import re
import shlex
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

ROOT = Path(__file__).resolve().parents[1]


CODE_PATHS = ("dcforget", "condense", "unlearn", "attacks", "experiments", "configs", "setup.py")


def git_hash(root: Path = ROOT) -> str:
    """HEAD's hash, with ``+dirty`` when tracked code or config files (``CODE_PATHS``) differ from it; ``unknown``
    outside a checkout. Reports, docs and the README are not code: a run writing its own cells into a committed
    report folder, or an edited page, does not make the code it ran differ from HEAD."""
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no", "--", *CODE_PATHS],
            cwd=root,
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def cpu_info() -> dict[str, Any]:
    """The CPU's model name and the flags that change speed here (avx2, avx512f, avx512_bf16, amx_bf16), from
    /proc/cpuinfo where there is one; VMs of one kind differ in exactly these, so timings name them."""
    model, flags = platform.processor() or platform.machine(), []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return {"model": model, "flags": flags}
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "model name" and value.strip():
            model = value.strip()
        elif key.strip() == "flags":
            have = set(value.split())
            flags = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f in have]
            break
    return {"model": model, "flags": flags}


def machine(device: torch.device | None = None) -> str:
    """What timed a figure: host, the device (a GPU's name; a CPU's model and speed flags) and torch's threads."""
    if device is not None and device.type == "cuda":
        return f"{platform.node()}: {torch.cuda.get_device_name(device)}"
    cpu = cpu_info()
    flags = ", ".join(cpu["flags"]) or "no avx2"
    return f"{platform.node()}: CPU {cpu['model']} ({platform.machine()}; {flags}; {torch.get_num_threads()} threads)"


# the console scripts setup.py installs, by the package whose ``cli`` module runs them (``python -m PACKAGE.cli`` is
# the same program); `unlearn` is experiments.cli's second entry point, whose `reproduce` is `experiments reproduce`
SCRIPTS = {"experiments": "experiments", "condense": "condense", "attacks": "attacks"}
_MODULE_RUN = re.compile(r"^\S*python[\d.]* -m (?P<package>\w+)\.cli(?= |$)")


def command_line(command: str) -> str:
    """A recorded command as the console script that runs it, so a report names a command a reader can paste:
    click names a program run as ``python -m experiments.cli`` so, and one run under ``python -c`` as ``-c`` (its
    argv[0]); ``python -m experiments.cli ARGS`` is ``experiments ARGS``, and ``-c reproduce ARGS`` is
    ``experiments reproduce ARGS`` (`reproduce` is one click command under both `experiments` and `unlearn`, the
    only programs that have it). Any other command is returned unchanged."""
    m = _MODULE_RUN.match(command)
    if m and m["package"] in SCRIPTS:
        return SCRIPTS[m["package"]] + command[m.end() :]
    if command == "-c reproduce" or command.startswith("-c reproduce "):
        return "experiments" + command[len("-c") :]
    return command


def argv_command(argv: list[str] | None = None) -> str:
    """The command line of this process (``sys.argv``) with its program as the console script: a console script's
    own name, ``experiments`` for ``python -m experiments.cli`` (argv[0] is then the path of experiments/cli.py)."""
    argv = list(sys.argv if argv is None else argv) or [""]
    prog = Path(argv[0])
    if prog.name in ("cli.py", "__main__.py") and prog.parent.name in SCRIPTS:
        name = SCRIPTS[prog.parent.name]
    else:
        name = prog.name
    return command_line(" ".join([name, *(shlex.quote(a) for a in argv[1:])]))


def run_meta(device: torch.device | None = None, *, command: str | None = None, **extra: Any) -> dict[str, Any]:
    """The provenance block of a benchmark's JSON output."""
    return {
        "command": command_line(command) if command is not None else argv_command(),
        "git": git_hash(),
        "machine": machine(device),
        "torch": torch.__version__,
        "finished_utc": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        **extra,
    }
