"""Built-in cells, by name."""

from __future__ import annotations

from collections.abc import Callable

from ..cell import Cell
from . import lstm

BUILTIN: dict[str, Callable[[], Cell]] = {"lstm": lstm.build}


def get_cell(name: str) -> Cell:
    """The built-in cell called ``name``; ValueError listing the choices otherwise."""
    try:
        factory = BUILTIN[name]
    except KeyError:
        raise ValueError(f"unknown cell {name!r}; built-in cells: {', '.join(sorted(BUILTIN))}") from None
    return factory()
