"""From a cell to a file: render with a backend, smoke-run, write atomically — so a module that cannot run or
computes wrong gradients is never written (into ``generated/``, a user's folder or the user cache).

Every path that writes a generated module goes through :func:`write_checked`: ``generate``, the user-module
cache (:func:`symbolic_lstm.loader.module_for`), ``train``, the bridges.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from pathlib import Path

import sympy as sp

from ..engine.cell import Cell
from ..runtime.files import write_atomic
from .backend import Backend
from .backends import get
from .lines import CodegenError
from .printer_numpy import printable_functions
from .smoke import smoke_run


def backend_of(backend: str | Backend) -> Backend:
    """A backend given by name (``"numpy"``, ``"array-api"``) or as itself."""
    return get(backend)


def module_name(cell: Cell, backend: str | Backend = "numpy") -> str:
    """``lstm`` (NumPy) or ``lstm_array_api``: the module's name and file stem."""
    return backend_of(backend).module_name(cell)


def source_hash(cell: Cell, backend: str | Backend = "numpy") -> str:
    """The hash a module of ``cell`` made now records (see :meth:`~.backend.Backend.source_hash`)."""
    return backend_of(backend).source_hash(cell)


def render(cell: Cell, backend: str | Backend = "numpy") -> str:
    """The module text for ``cell`` and ``backend``.

    Raises:
        CodegenError: the cell has a structure the kernels cannot take, or a stage uses a function no printer
            knows (the message names the stage and the function).
        ValueError: no backend has that name.
    """
    from sympy.printing.codeprinter import PrintMethodNotImplementedError

    b = backend_of(backend)
    try:
        return b.render(cell)
    except PrintMethodNotImplementedError as e:
        raise CodegenError(_unprintable(cell, b, e)) from None


def write_checked(
    cell: Cell,
    backend: str | Backend,
    folder: str | Path,
    text: str | None = None,
    *,
    folder_check: Callable[[os.stat_result], None] | None = None,
) -> Path:
    """Render ``cell`` (unless ``text`` is given), smoke-run it, and write ``<folder>/<module>.py`` atomically
    (``folder_check``: see :func:`~symbolic_lstm.runtime.files.write_atomic`; a link at the module's name is replaced).

    Raises:
        CodegenError: the cell cannot be printed, or the printed module fails its smoke run (nothing written).
        OSError: the file cannot be written.
    """
    b = backend_of(backend)
    text = render(cell, b) if text is None else text
    smoke_run(cell, b, text)
    return write_atomic(Path(folder) / f"{b.module_name(cell)}.py", text, code=True, folder_check=folder_check)


def generate(cells: Sequence[Cell], out_dir: str | Path, backend: str | Backend = "numpy") -> list[Path]:
    """Write ``<out_dir>/<module>.py`` for every cell, atomically (creating ``out_dir``), each smoke-run first;
    return the paths written."""
    out = Path(out_dir)
    # a folder of code: never writable by others, whatever the umask (under umask 000 it was 0777, a folder
    # ``check --dir`` and ``load`` then rightly refuse); the umask may still take more away
    out.mkdir(mode=0o755, parents=True, exist_ok=True)
    return [write_checked(cell, backend, out) for cell in cells]


def _unprintable(cell: Cell, backend: Backend, e: Exception) -> str:
    """Which stage uses the function the printer does not know (in its expression or its derivative)."""
    from ..engine.derivation import derive

    what = str(e).split(":", 1)[-1].split("\n", 1)[0].strip()

    def uses(expr: sp.Expr) -> bool:
        return any(type(f).__name__ == what for f in expr.atoms(sp.Function))

    stage = next((st.name for st in cell.stages if any(uses(e) for e in st.expressions)), None)
    if stage is None:  # only a derivative uses it: the stage whose local partial it appears in
        stage = next((str(p.num) for p, v in derive(cell).partials.items() if uses(v)), None)
    where = f"stage {stage!r}" if stage else "a stage"
    return (
        f"cell {cell.name!r}: {where} uses {what}, which the {backend.name} printer cannot print (it knows "
        f"{', '.join(printable_functions())}; a sympy.Function of your own needs a _numpycode method); "
        "nothing was written"
    )
