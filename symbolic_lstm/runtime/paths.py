"""Where the templates and the committed generated modules live.

In a source checkout they are the top-level ``templates/`` and ``generated/`` folders; an installed
package carries them as ``symbolic_lstm/templates`` and ``symbolic_lstm/generated`` (see setup.cfg).
"""

from __future__ import annotations

from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent.parent  # symbolic_lstm/, this file being in runtime/


def _find(name: str) -> Path:
    for candidate in (PACKAGE_DIR / name, PACKAGE_DIR.parent / name):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"cannot find the {name}/ folder next to {PACKAGE_DIR}; is the package installed whole?")


def templates_dir() -> Path:
    """Folder of the Jinja2 templates (one sub-folder per backend)."""
    return _find("templates")


def generated_dir() -> Path:
    """Folder of the committed generated kernel modules."""
    return _find("generated")


def is_checkout() -> bool:
    """Whether the package runs from a source checkout (its generated/ beside the package, committed), rather
    than from an installed copy whose generated/ ships inside the package."""
    return generated_dir() == PACKAGE_DIR.parent / "generated"


def data_dir() -> Path:
    """Folder of the datasets ``symbolic-lstm train`` uses (shipped, never downloaded)."""
    return _find("data")


def cache_home() -> Path:
    """``$XDG_CACHE_HOME/symbolic-lstm`` (``~/.cache/symbolic-lstm`` when XDG_CACHE_HOME is unset, empty or
    relative: the XDG Base Directory specification says a relative path there is invalid and to be ignored) — where
    the user cells' modules (:func:`symbolic_lstm.codegen.loader.cache_dir`) and the proofs' cache live."""
    import os

    base = os.environ.get("XDG_CACHE_HOME", "")
    if not os.path.isabs(base):
        base = str(Path.home() / ".cache")
    return Path(base) / "symbolic-lstm"
