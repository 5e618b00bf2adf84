"""Atomic, non-clobbering output.

Temporaries are hidden siblings of their output, ``.NAME.HOST-PID.RANDOM.tmp``: a run killed half-way leaves one
behind, and the next run writing the same output removes it (when its process is gone, or it is a day old)."""

from __future__ import annotations

import contextlib
import errno
import os
import re
import shutil
import socket
import tempfile
import time
from pathlib import Path
from typing import Iterator

from .errors import OutputExistsError

STALE_AFTER_S = 24 * 3600  # a temporary whose owner cannot be checked (another host, old format) is stale after this


def _token() -> str:
    host = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:24] or "host"
    return f"{host}-{os.getpid()}"


def _why(err: OSError) -> str:
    return err.strerror or str(err)


def _nearest_existing(p: Path) -> Path:
    q = p
    while not q.exists() and q != q.parent:
        q = q.parent
    return q


def _probe_dir(d: Path, name: str, target: Path) -> None:
    """Create and remove a file in directory ``d``: the only reliable test (read-only mounts, immutable dirs, ACLs)."""
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.{_token()}.", suffix=".tmp", dir=d)
    except OSError as err:
        raise OutputExistsError(f"cannot write {target}: {d} is not writable ({_why(err)})") from None
    os.close(fd)
    with contextlib.suppress(OSError):
        os.unlink(tmp)


def check_writable(path: str | os.PathLike, force: bool) -> Path:
    """Fail early (before any work) when ``path`` exists and ``force`` is off, or cannot be created: its parent must
    be a writable directory, or creatable inside one. Creates nothing that stays."""
    p = Path(path)
    if p.is_dir():
        raise OutputExistsError(f"{p} is a directory, not a file")
    if (p.exists() or p.is_symlink()) and not force:
        raise OutputExistsError(f"{p} already exists; pass --force to overwrite it")
    parent = p.parent if str(p.parent) else Path(".")
    base = _nearest_existing(parent)
    if not base.is_dir():
        raise OutputExistsError(f"cannot write {p}: {base} is not a directory")
    _probe_dir(base, p.name, p)
    return p


def check_writable_dir(path: str | os.PathLike) -> Path:
    """Fail early when directory ``path`` cannot be used for output (it is a file, or cannot be created/written)."""
    p = Path(path)
    if p.exists() and not p.is_dir():
        raise OutputExistsError(f"{p} exists and is not a directory")
    base = _nearest_existing(p)
    if not base.is_dir():
        raise OutputExistsError(f"cannot write {p}: {base} is not a directory")
    _probe_dir(base, p.name, p)
    return p


_TMP = re.compile(r"^(?:(?P<host>[A-Za-z0-9]*)-(?P<pid>\d+)\.)?[A-Za-z0-9_]{6,}$")  # between ".NAME." and ".tmp"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def clean_stale(directory: Path, name: str) -> None:
    """Remove the temporaries an interrupted earlier write of ``directory / name`` left behind (best effort)."""
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return
    host = _token().rsplit("-", 1)[0]
    for e in entries:
        head = f".{name}."
        if not (e.name.startswith(head) and e.name.endswith(".tmp")):
            continue
        m = _TMP.match(e.name[len(head) : -4])
        if not m:
            continue
        try:
            old = time.time() - e.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
            dead = m.group("pid") is None or (m.group("host") == host and not _alive(int(m.group("pid"))))
            if not (old or dead) or int(m.group("pid") or -1) == os.getpid():
                continue
            if e.is_dir(follow_symlinks=False):
                shutil.rmtree(e.path, ignore_errors=True)
            else:
                os.unlink(e.path)
        except OSError:
            continue


def _mkdirs(d: Path) -> list[Path]:
    """mkdir -p, returning the directories it created (outermost first), so a failure can take them back."""
    missing = []
    q = d
    while not q.exists() and q != q.parent:
        missing.append(q)
        q = q.parent
    created = []
    try:
        for m in reversed(missing):
            try:
                m.mkdir()
                created.append(m)
            except FileExistsError:
                if not m.is_dir():
                    raise
    except OSError as err:
        _rmdirs(created)
        raise OutputExistsError(f"cannot create directory {d}: {_why(err)}") from None
    return created


def _rmdirs(created: list[Path]) -> None:
    for d in reversed(created):
        try:
            d.rmdir()
        except OSError:  # not empty (someone else wrote there meanwhile) or gone
            break


def _fsync(path: Path, directory: bool = False) -> None:
    try:
        fd = os.open(path, os.O_RDONLY | (getattr(os, "O_DIRECTORY", 0) if directory else 0))
    except OSError:
        if directory:
            return
        raise
    try:
        os.fsync(fd)
    except OSError:
        if not directory:  # directories cannot be fsynced everywhere: best effort
            raise
    finally:
        os.close(fd)


def _usual_mode(path: Path, directory: bool = False) -> None:
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(path, (0o777 if directory else 0o666) & ~umask)  # mkstemp/mkdtemp make 0600/0700


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, force: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success fsync it and rename it over ``path``, on failure remove
    it (and any directory made for it).

    Readers never see a half-written file, and an existing file is only replaced when ``force`` is set."""
    p = check_writable(path, force)
    created = _mkdirs(p.parent)
    clean_stale(p.parent, p.name)
    ok = False
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{p.name}.{_token()}.", suffix=".tmp", dir=p.parent)
    except OSError as err:
        _rmdirs(created)
        raise OutputExistsError(f"cannot write {p}: {_why(err)}") from None
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        if p.exists() and not force:  # appeared while we worked
            raise OutputExistsError(f"{p} already exists; pass --force to overwrite it")
        _usual_mode(tmp_path)
        _fsync(tmp_path)
        os.replace(tmp_path, p)
        _fsync(p.parent, directory=True)
        ok = True
    finally:
        if tmp_path.exists():
            tmp_path.unlink()
        if not ok:
            _rmdirs(created)


@contextlib.contextmanager
def atomic_paths(paths: list[str | os.PathLike], force: bool = False) -> Iterator[list[Path]]:
    """Several outputs as one unit: yield one temporary path per output; either all of them appear or none.

    When their common directory does not exist yet, everything is written into a hidden sibling directory that is
    renamed into place (atomic even against a crash). Otherwise the files are renamed one by one, the earlier
    ones rolled back (and files they replaced restored) if a later one fails."""
    ps = [check_writable(q, force) for q in paths]
    parents = {q.parent for q in ps}
    if len(parents) == 1 and not next(iter(parents)).exists():
        d = next(iter(parents))
        created = _mkdirs(d.parent)
        clean_stale(d.parent, d.name)
        ok = False
        try:
            stage = Path(tempfile.mkdtemp(prefix=f".{d.name}.{_token()}.", suffix=".tmp", dir=d.parent))
        except OSError as err:
            _rmdirs(created)
            raise OutputExistsError(f"cannot write {d}: {_why(err)}") from None
        try:
            tmps = [stage / q.name for q in ps]
            yield tmps
            for t in tmps:
                _usual_mode(t)
                _fsync(t)
            _usual_mode(stage, directory=True)
            _fsync(stage, directory=True)
            try:
                os.rename(stage, d)  # replaces only an empty directory
            except OSError as err:
                if err.errno in (errno.ENOTEMPTY, errno.EEXIST):
                    raise OutputExistsError(
                        f"{d} appeared while we worked; run again (with --force to overwrite)"
                    ) from None
                raise
            _fsync(d.parent, directory=True)
            ok = True
        finally:
            if stage.exists():
                shutil.rmtree(stage, ignore_errors=True)
            if not ok:
                _rmdirs(created)
        return
    created = []
    for d in parents:
        created += _mkdirs(d)
    tmps: list[Path] = []
    ok = False
    try:
        for q in ps:
            clean_stale(q.parent, q.name)
            fd, tmp = tempfile.mkstemp(prefix=f".{q.name}.{_token()}.", suffix=".tmp", dir=q.parent)
            os.close(fd)
            tmps.append(Path(tmp))
        yield list(tmps)
        for q in ps:
            if q.exists() and not force:
                raise OutputExistsError(f"{q} already exists; pass --force to overwrite it")
        for t in tmps:
            _usual_mode(t)
            _fsync(t)
        backups: list[tuple[Path, Path]] = []
        done: list[Path] = []
        try:
            for q, t in zip(ps, tmps):
                if q.exists():
                    b = q.with_name(f".{q.name}.{_token()}.{os.urandom(4).hex()}.bak")
                    os.replace(q, b)
                    backups.append((q, b))
                os.replace(t, q)
                done.append(q)
        except BaseException:
            for q in done:
                with contextlib.suppress(OSError):
                    q.unlink()
            for q, b in backups:
                with contextlib.suppress(OSError):
                    os.replace(b, q)
            raise
        for _, b in backups:
            with contextlib.suppress(OSError):
                b.unlink()
        for d in parents:
            _fsync(d, directory=True)
        ok = True
    finally:
        for t in tmps:
            if t.exists():
                t.unlink()
        if not ok:
            _rmdirs(created)
