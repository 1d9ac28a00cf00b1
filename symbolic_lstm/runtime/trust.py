"""What may run as code: modules this user's own runs wrote, and nothing another user could have put there.

* **The user cache** (``$XDG_CACHE_HOME/symbolic-lstm``) is created 0700 and refused, with the reason and the
  fix, when another user owns it or group or others may write it (as SSH and pip refuse such folders).  Every
  module written there gets a digest beside it (``<module>.py.sha256``); a module whose file is not this
  user's, or whose content no longer matches its digest (truncated, edited), is regenerated, never imported.
* **A folder the user names** (``load(name, folder)``, ``--dir``): its module must belong to this user (or
  root) and be writable by no one else, in a folder that belongs to this user (or root) and that no one else
  may write (a sticky folder such as /tmp excepted: others cannot replace a file there).
* **A cell file** named inside something else (a module's header) is run only when it passes the same test.
* **Read once** (:func:`read_code`): every test above is made with ``fstat`` on the descriptors the bytes are
  read from (the file opened with ``O_NOFOLLOW`` inside the folder's own descriptor), and those bytes are what
  runs (:mod:`symbolic_lstm.runtime.run_code`) — a path is never opened a second time, so nothing can be swapped in
  between the check and the run.

On systems without user ids (Windows) the ownership checks are skipped.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Callable
from pathlib import Path

from .files import write_atomic

_POSIX = hasattr(os, "geteuid")


class UntrustedPathError(PermissionError):
    """A folder or file that could hold another user's code: owned by them, or writable by others.

    ``short``: the reason in a few words (``"mgu.py is a symbolic link"``), for a message that says more."""

    def __init__(self, message: str, short: str | None = None) -> None:
        super().__init__(message)
        self.short = short or message


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _writable_by(mode: int) -> str | None:
    who = [w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit]
    return " and ".join(who) or None


def _refuse_private(st: os.stat_result, folder: Path, what: str, fix: str) -> None:
    if st.st_uid != os.geteuid():
        raise UntrustedPathError(
            f"{what} {folder} belongs to {_owner(st.st_uid)}, not to you: modules there could be someone else's "
            f"code, and symbolic-lstm imports them; {fix}"
        )
    others = _writable_by(st.st_mode)
    if others:
        raise UntrustedPathError(
            f"{what} {folder} is writable by {others} (mode {stat.S_IMODE(st.st_mode):04o}): another user could "
            f"put a module there that symbolic-lstm would run; fix: chmod go-w {folder} — or {fix}"
        )


def check_private_folder(folder: str | os.PathLike[str], what: str, fix: str) -> None:
    """Refuse ``folder`` (UntrustedPathError naming why and ``fix``) when another user owns it or group or
    others may write it."""
    if _POSIX:
        _refuse_private(os.stat(folder), Path(folder), what, fix)


def private_folder(folder: str | os.PathLike[str], what: str, fix: str, *, tighten: bool = False) -> Path:
    """``folder``, created 0700 if it is missing (its parents as the umask says), after
    :func:`check_private_folder`.  ``tighten``: an existing folder of this user's that others may write is made
    0700 first — for a folder inside one already checked private (a cache folder an older version made under
    umask 002), where no one else can have written since."""
    folder = Path(folder)
    folder.parent.mkdir(parents=True, exist_ok=True)
    try:
        folder.mkdir(mode=0o700)
    except FileExistsError:
        st = os.stat(folder)
        if tighten and _POSIX and st.st_uid == os.geteuid() and _writable_by(st.st_mode):
            os.chmod(folder, 0o700)
    check_private_folder(folder, what, fix)
    return folder


def private_folder_check(folder: str | os.PathLike[str], what: str, fix: str) -> Callable[[os.stat_result], None]:
    """The test :func:`check_private_folder` makes, as a check of an open folder's ``fstat`` (for
    :func:`symbolic_lstm.runtime.files.write_atomic`'s ``folder_check``)."""
    return lambda st: _refuse_private(st, Path(folder), what, fix) if _POSIX else None


# -- code read once, checked on its descriptors -----------------------------------------------------------------
def _refuse_folder(st: os.stat_result, folder: Path, what: str) -> None:
    if st.st_uid not in (os.geteuid(), 0):
        raise UntrustedPathError(
            f"the folder {folder} belongs to {_owner(st.st_uid)}, not to you: its owner can replace the {what} "
            f"between any check and its use; copy it to a folder of your own if you trust it"
        )
    others = _writable_by(st.st_mode)
    if others and not st.st_mode & stat.S_ISVTX:
        raise UntrustedPathError(
            f"the folder {folder} is writable by {others} (mode {stat.S_IMODE(st.st_mode):04o}): anyone "
            f"there could replace the {what} symbolic-lstm would run; fix: chmod go-w {folder}"
        )


def _refuse_file(st: os.stat_result, path: Path, what: str, owners: tuple[int, ...]) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise UntrustedPathError(f"{path} is not a regular file: symbolic-lstm runs a {what} only from one")
    if st.st_uid not in owners:
        raise UntrustedPathError(
            f"{path} belongs to {_owner(st.st_uid)}, not to you: symbolic-lstm does not run another user's "
            f"{what}; copy it to a folder of your own if you trust it",
            f"{path.name} belongs to {_owner(st.st_uid)}",
        )
    others = _writable_by(st.st_mode)
    if others:
        raise UntrustedPathError(
            f"{path} is writable by {others} (mode {stat.S_IMODE(st.st_mode):04o}): anyone there could change "
            f"the {what} symbolic-lstm would run; fix: chmod go-w {path}"
        )


#: Opens nothing but a regular file's bytes: no link followed at the last step, no FIFO to block on.
READ_FLAGS = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0)


def read_code(
    path: str | os.PathLike[str],
    what: str = "module",
    *,
    own: bool = False,
    trusted: str | os.PathLike[str] | None = None,
) -> bytes:
    """The bytes of the file at ``path``, read once, with every check made on the descriptors they are read
    from — so what was checked is what is returned, and the caller runs those bytes, never the path again.

    The folder is opened and ``fstat``-ed: it must belong to you or root and be writable by no one else (a
    sticky folder such as /tmp excepted: others cannot replace a file there).  The file is opened inside that
    descriptor with ``O_NOFOLLOW`` (a symbolic link is refused, not followed) and ``fstat``-ed: a regular file
    of yours or root's (``own``: yours only), writable by no one else.  ``trusted``: a folder whose files are
    trusted as the package's code is (its own ``generated/``) — when the folder opened *is* that one (the same
    device and inode as the descriptor, not the same name), the owners are not checked; descriptors and
    ``O_NOFOLLOW`` stay.

    Raises:
        UntrustedPathError: the folder or file could be another user's, or the file is a link or no regular file.
        FileNotFoundError: there is no such file.
    """
    path = Path(path)
    folder_fd = os.open(path.parent, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        folder = os.fstat(folder_fd)
        check = _POSIX and not (trusted is not None and _same_inode(folder, trusted))
        if check:
            _refuse_folder(folder, path.parent, what)
        try:
            fd = os.open(path.name, READ_FLAGS, dir_fd=folder_fd)
        except OSError as e:
            if e.errno in (errno.ELOOP, getattr(errno, "EMLINK", errno.ELOOP)):  # Linux, the BSDs
                raise UntrustedPathError(
                    f"{path} is a symbolic link: symbolic-lstm runs a {what} only from a file itself, never "
                    "through a link someone could point elsewhere",
                    f"{path.name} is a symbolic link",
                ) from None
            raise
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                _refuse_file(st, path, what, ())
            if check:
                _refuse_file(st, path, what, (os.geteuid(),) if own else (os.geteuid(), 0))
            chunks = []
            while chunk := os.read(fd, 1 << 20):
                chunks.append(chunk)
            return b"".join(chunks)
        finally:
            os.close(fd)
    finally:
        os.close(folder_fd)


def _same_inode(st: os.stat_result, folder: str | os.PathLike[str]) -> bool:
    try:
        other = os.stat(folder)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) == (other.st_dev, other.st_ino)


def check_code_file(path: str | os.PathLike[str], what: str = "module") -> None:
    """Refuse ``path`` (UntrustedPathError) where :func:`read_code` would: a file not yours or root's, a link,
    writable by others, or in a folder another user owns or may write (a sticky one excepted).  Only a check:
    code that runs is read with :func:`read_code` and run from those bytes."""
    read_code(path, what)


# -- digests of the cache's modules ---------------------------------------------------------------------------
def _digest_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def record_digest(path: str | os.PathLike[str], data: bytes | None = None) -> None:
    """Write ``<path>.sha256``: the SHA-256 of the module's bytes as this run wrote them (``data``; read back
    from ``path`` when not given)."""
    path = Path(path)
    data = read_code(path, "cached module", own=True) if data is None else data
    # a link planted at the digest's name is replaced, never written through (as root it once overwrote the
    # file it pointed to); the folder is checked on the descriptor the digest is written through
    check = private_folder_check(path.parent, "the cache folder", "set XDG_CACHE_HOME to a folder only you can write")
    write_atomic(_digest_file(path), hashlib.sha256(data).hexdigest() + "\n", code=True, folder_check=check)


def why_not_intact(path: str | os.PathLike[str], data: bytes | None = None) -> str | None:
    """None when the cached module at ``path`` — ``data``, its bytes as read once with :func:`read_code` — is
    this user's and matches its digest; otherwise why not (it is then regenerated, not imported)."""
    path = Path(path)
    if data is None:
        try:
            data = read_code(path, "cached module", own=True)
        except UntrustedPathError as e:
            return e.short
    try:
        recorded = read_code(_digest_file(path), "digest", own=True)
    except FileNotFoundError:
        return "no digest was recorded when it was written"
    except UntrustedPathError as e:
        return e.short
    want = recorded.decode("ascii", errors="replace").strip()
    if hashlib.sha256(data).hexdigest() != want:
        return "its content no longer matches the digest recorded when it was written (truncated or edited)"
    return None
