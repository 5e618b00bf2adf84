"""Atomic, non-clobbering output."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Iterator

from .errors import OutputExistsError


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) when ``path`` exists and ``force`` is off, or cannot be created."""
    p = Path(path)
    if p.exists() and not force:
        raise OutputExistsError(f"{p} already exists; pass --force to overwrite it")
    if p.exists() and p.is_dir():
        raise OutputExistsError(f"{p} is a directory, not a file")
    parent = p.parent if str(p.parent) else Path(".")
    if parent.exists() and not parent.is_dir():
        raise OutputExistsError(f"cannot write {p}: {parent} is not a directory")
    return p


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success rename it over ``path``, on failure remove it.

    Readers never see a half-written file, and an existing file is only replaced when ``force`` is set."""
    p = check_writable(path, force)
    p.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.", suffix=".tmp", dir=p.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if p.exists() and not force:  # appeared while we worked
            raise OutputExistsError(f"{p} already exists; pass --force to overwrite it")
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp_path, 0o666 & ~umask)  # mkstemp makes 0600 files; outputs get the usual permissions
        os.replace(tmp_path, p)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
