"""Atomic file writes: a temporary file in the target folder, then ``os.replace``.

An interrupted run never leaves a half-written module or document behind.  A new file gets the mode the
umask gives (``0o666 & ~umask``), a replaced one keeps its mode, and a symlink at a document's name is
written through (the link stays, its target is replaced); one at a module's name is replaced.  Code
(``code=True``: generated modules) is never writable by group or others, whatever the umask.  Temporary files
are named ``.<name>.<random>.tmp``: :func:`clean_temporaries` removes those a killed writer left.
"""

from __future__ import annotations

import os
import secrets
import stat
from collections.abc import Callable
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


def write_atomic(
    path: str | os.PathLike[str],
    text: str | bytes,
    *,
    code: bool = False,
    follow: bool | None = None,
    folder_check: Callable[[os.stat_result], None] | None = None,
) -> Path:
    """Write ``text`` (UTF-8, '\\n' newlines; or raw bytes) to ``path`` atomically; return the path.

    The file's mode: an existing file's own, else what the umask gives; ``code=True`` also takes away
    group and other write (a module someone else could edit would run their code).  A symlink at ``path``
    is followed (its target is replaced and the link kept) for documents; for code, and with ``follow=False``,
    the link itself is replaced by the file and nothing is written where it pointed.

    Everything happens through one descriptor of the folder: ``folder_check`` (if given) sees ``fstat`` of
    that descriptor and raises to refuse it, and the temporary file is created in it (``O_EXCL|O_NOFOLLOW``)
    and renamed in it — so the file lands in the very folder that was checked.
    """
    path = Path(path)
    follow = not code if follow is None else follow
    real = target(path) if follow else path
    folder_fd = os.open(real.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        if folder_check is not None:
            folder_check(os.fstat(folder_fd))
        try:
            st = os.stat(real.name, dir_fd=folder_fd, follow_symlinks=False)
            mode = stat.S_IMODE(st.st_mode) if stat.S_ISREG(st.st_mode) else 0o666 & ~umask()
        except FileNotFoundError:
            mode = 0o666 & ~umask()
        if code:
            mode &= ~0o022
        data = text if isinstance(text, bytes) else text.encode("utf-8")
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
        while True:
            tmp = f".{real.name}.{secrets.token_hex(4)}.tmp"
            try:
                fd = os.open(tmp, flags, 0o600, dir_fd=folder_fd)
                break
            except FileExistsError:  # pragma: no cover - 32 random bits taken
                continue
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fchmod(f.fileno(), mode)
                os.fsync(f.fileno())
            os.replace(tmp, real.name, src_dir_fd=folder_fd, dst_dir_fd=folder_fd)
        except BaseException:
            try:
                os.unlink(tmp, dir_fd=folder_fd)
            except FileNotFoundError:
                pass
            raise
    finally:
        os.close(folder_fd)
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
