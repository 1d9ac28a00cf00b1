"""What may run as code: modules this user's own runs wrote, and nothing another user could have put there.

* **The user cache** (``$XDG_CACHE_HOME/symbolic-lstm``) is created 0700 and refused, with the reason and the
  fix, when another user owns it or group or others may write it (as SSH and pip refuse such folders).  Every
  module written there gets a digest beside it (``<module>.py.sha256``); a module whose file is not this
  user's, or whose content no longer matches its digest (truncated, edited), is regenerated, never imported.
* **A folder the user names** (``load(name, folder)``, ``--dir``): its module must belong to this user (or
  root) and be writable by no one else, in a folder no one else may write (a sticky folder such as /tmp
  excepted: others cannot replace a file there).
* **A cell file** named inside something else (a module's header) is run only when it passes the same test.

On systems without user ids (Windows) the ownership checks are skipped.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path

from .files import write_atomic

_POSIX = hasattr(os, "geteuid")


class UntrustedPathError(PermissionError):
    """A folder or file that could hold another user's code: owned by them, or writable by others."""


def _owner(uid: int) -> str:
    try:
        import pwd

        return f"{pwd.getpwuid(uid).pw_name} (uid {uid})"
    except (ImportError, KeyError):
        return f"uid {uid}"


def _writable_by(mode: int) -> str | None:
    who = [w for w, bit in (("group", stat.S_IWGRP), ("others", stat.S_IWOTH)) if mode & bit]
    return " and ".join(who) or None


def check_private_folder(folder: str | os.PathLike[str], what: str, fix: str) -> None:
    """Refuse ``folder`` (UntrustedPathError naming why and ``fix``) when another user owns it or group or
    others may write it."""
    if not _POSIX:
        return
    folder = Path(folder)
    st = os.stat(folder)
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


def check_code_file(path: str | os.PathLike[str], what: str = "module") -> None:
    """Refuse to run ``path`` (UntrustedPathError) when it, or its folder, could be someone else's: a file
    owned by another user than you or root, or writable by group or others; a folder writable by group or
    others without the sticky bit."""
    if not _POSIX:
        return
    path = Path(path)
    st = os.stat(path)
    if st.st_uid not in (os.geteuid(), 0):
        raise UntrustedPathError(
            f"{path} belongs to {_owner(st.st_uid)}, not to you: symbolic-lstm does not run another user's "
            f"{what}; copy it to a folder of your own if you trust it"
        )
    others = _writable_by(st.st_mode)
    if others:
        raise UntrustedPathError(
            f"{path} is writable by {others} (mode {stat.S_IMODE(st.st_mode):04o}): anyone there could change "
            f"the {what} symbolic-lstm would run; fix: chmod go-w {path}"
        )
    folder = os.stat(path.parent)
    others = _writable_by(folder.st_mode)
    if others and not folder.st_mode & stat.S_ISVTX:
        raise UntrustedPathError(
            f"the folder {path.parent} is writable by {others} (mode {stat.S_IMODE(folder.st_mode):04o}): anyone "
            f"there could replace the {what} symbolic-lstm would run; fix: chmod go-w {path.parent}"
        )


# -- digests of the cache's modules ---------------------------------------------------------------------------
def _digest_file(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def record_digest(path: str | os.PathLike[str]) -> None:
    """Write ``<path>.sha256``: the SHA-256 of the module's bytes as this run wrote them."""
    path = Path(path)
    # a link planted at the digest's name is replaced, never written through (as root it once overwrote the
    # file it pointed to)
    write_atomic(_digest_file(path), hashlib.sha256(path.read_bytes()).hexdigest() + "\n", code=True, follow=False)


def why_not_intact(path: str | os.PathLike[str]) -> str | None:
    """None when the cached module at ``path`` is this user's and matches its digest; otherwise why not (it
    is then regenerated, not imported)."""
    path = Path(path)
    digest = _digest_file(path)
    for p in (path, digest):
        if p.is_symlink():
            return f"{p.name} is a symbolic link"
        if _POSIX and p.exists() and os.stat(p).st_uid != os.geteuid():
            return f"{p.name} belongs to {_owner(os.stat(p).st_uid)}"
    if not digest.is_file():
        return "no digest was recorded when it was written"
    want = digest.read_text(encoding="ascii", errors="replace").strip()
    if hashlib.sha256(path.read_bytes()).hexdigest() != want:
        return "its content no longer matches the digest recorded when it was written (truncated or edited)"
    return None
