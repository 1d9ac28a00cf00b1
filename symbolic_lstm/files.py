"""Atomic file writes: a temporary file in the target folder, then ``os.replace``.

An interrupted run never leaves a half-written module or document behind.  A new file gets the mode the
umask gives (``0o666 & ~umask``), a replaced one keeps its mode, and a symlink is written through (the
link stays, its target is replaced).  Code (``code=True``: generated modules) is never writable by group
or others, whatever the umask.  Temporary files are named ``.<name>.<random>.tmp``: :func:`clean_temporaries`
removes those a killed writer left.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path


def umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    old = os.umask(0o022)
    os.umask(old)
    return old


def target(path: str | os.PathLike[str]) -> Path:
    """The file a write to ``path`` replaces: a symlink's target (the link stays), else ``path`` itself."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def write_atomic(path: str | os.PathLike[str], text: str | bytes, *, code: bool = False, follow: bool = True) -> Path:
    """Write ``text`` (UTF-8, '\\n' newlines; or raw bytes) to ``path`` atomically; return the path.

    The file's mode: an existing file's own, else what the umask gives; ``code=True`` also takes away
    group and other write (a module someone else could edit would run their code).  A symlink at ``path``
    is followed: its target is replaced and the link kept — unless ``follow=False`` (what the package keeps
    for itself, such as a cached module's digest): then the link itself is replaced by the file, and nothing
    is written where it pointed.
    """
    path = Path(path)
    real = target(path) if follow else path
    try:
        mode = stat.S_IMODE(os.stat(real).st_mode) if follow or not real.is_symlink() else 0o666 & ~umask()
    except FileNotFoundError:
        mode = 0o666 & ~umask()
    if code:
        mode &= ~0o022
    fd, tmp = tempfile.mkstemp(prefix=f".{real.name}.", suffix=".tmp", dir=real.parent)
    try:
        binary = isinstance(text, bytes)
        with os.fdopen(fd, "wb" if binary else "w", **({} if binary else {"encoding": "utf-8", "newline": "\n"})) as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, real)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    return path


def temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """The temporary files :func:`write_atomic` leaves beside ``path`` when it is killed mid-write."""
    real = target(path)
    return sorted(p for p in real.parent.glob(f".{real.name}.*.tmp") if p.is_file() and not p.is_symlink())


def clean_temporaries(path: str | os.PathLike[str]) -> list[Path]:
    """Remove what a killed writer of ``path`` left (call it while holding the file's lock); return them."""
    removed = []
    for p in temporaries(path):
        try:
            p.unlink()
            removed.append(p)
        except OSError:  # another user's, or gone already: not ours to clean
            pass
    return removed
