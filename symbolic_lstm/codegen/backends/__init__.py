"""Every code backend, by the name ``--backend`` takes: the only place a backend is named.

A new backend is a sub-package here (a :class:`~symbolic_lstm.codegen.backend.Backend` subclass in its
``__init__``, its plan and printer beside it, its templates in ``templates/<name>/``) and one line below.
"""

from __future__ import annotations

from ..backend import Backend
from .array_api import ArrayApiBackend
from .jax import JaxBackend
from .numpy import NumPyBackend

__all__ = ["BACKENDS", "DEFAULT", "ArrayApiBackend", "Backend", "JaxBackend", "NumPyBackend", "get", "of_module"]

BACKENDS: dict[str, Backend] = {b.name: b for b in (NumPyBackend(), ArrayApiBackend(), JaxBackend())}
#: The backend a command uses unless told otherwise: NumPy only, the fast one.
DEFAULT = "numpy"


def get(name: str | Backend) -> Backend:
    """The backend called ``name`` (a backend given as itself is returned as is).

    Raises:
        ValueError: no backend has that name (the message lists those that exist).
        TypeError: ``name`` is not a string.
    """
    if isinstance(name, Backend):
        return name
    if not isinstance(name, str):
        raise TypeError(f"backend must be a str such as {DEFAULT!r}, got {type(name).__name__}")
    if name not in BACKENDS:
        raise ValueError(f"backend must be one of {', '.join(map(repr, BACKENDS))}, got {name!r}")
    return BACKENDS[name]


def of_module(stem: str) -> tuple[str, Backend]:
    """The cell name and backend a module's file stem would stand for (``lstm_array_api`` → lstm, array-API): the
    backend with the longest matching suffix.  A guess from a name, used only to advise on a module that does not
    exist (which command writes it); a module that exists says its backend on its own ``BACKEND`` line."""
    for b in sorted(BACKENDS.values(), key=lambda b: -len(b.suffix)):
        if b.suffix and stem.endswith(b.suffix):
            return stem[: -len(b.suffix)], b
    return stem, BACKENDS[DEFAULT]
