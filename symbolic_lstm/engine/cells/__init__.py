"""Built-in cells, by name, and user cells from a Python file (``path/to/mycell.py:NAME``)."""

from __future__ import annotations

import importlib.util
import traceback
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

from ..cell import Cell, CellError
from . import cifg, gru, gru_torch, layernorm, lstm, peephole, rnn

BUILTIN: dict[str, Callable[[], Cell]] = {
    "lstm": lstm.build,
    "cifg": cifg.build,
    "rnn": rnn.build,
    "gru": gru.build,
    "gru_torch": gru_torch.build,
    "peephole": peephole.build,
    "layernorm": layernorm.build,
}


def get_cell(spec: str) -> Cell:
    """The cell ``spec`` names: a built-in name (``"lstm"``) or ``"path/to/file.py:NAME"``.

    In a file, ``NAME`` is a :class:`~symbolic_lstm.engine.cell.Cell` or a function of no arguments returning one.

    Raises:
        ValueError: unknown built-in name, missing file or attribute, a file that fails to import, an
            attribute that is not a cell, or a cell definition the engine rejects (CellError, naming the stage).
    """
    if not isinstance(spec, str):
        raise TypeError(f"a cell is named by a str such as 'lstm' or 'mycell.py:NAME', got {type(spec).__name__}")
    if ":" in spec or spec.endswith(".py"):
        path, sep, name = spec.rpartition(":")
        if not sep or not path.endswith(".py"):
            raise ValueError(f"a cell file is given as path/to/file.py:NAME, got {spec!r}")
        return load_cell_file(path, name)
    try:
        factory = BUILTIN[spec]
    except KeyError:
        raise ValueError(
            f"unknown cell {spec!r}; built-in cells: {', '.join(sorted(BUILTIN))} (or a file: path/to/file.py:NAME)"
        ) from None
    return factory()


def as_cell(cell: str | Cell) -> Cell:
    """A cell given by name (``"lstm"``), by file (``"path/to/file.py:NAME"``) or as itself: how every front end
    (the torch and JAX bridges, the notebook helpers) takes one.

    Raises:
        TypeError: ``cell`` is neither a str nor a Cell.
        ValueError: as :func:`get_cell`, for a name that does not resolve.
    """
    if isinstance(cell, Cell):
        return cell
    if isinstance(cell, str):
        return get_cell(cell)
    raise TypeError(f"cell must be a cell name, 'path/file.py:NAME' or a Cell, got {type(cell).__name__}")


def load_cell_file(path: str | Path, name: str) -> Cell:
    """Run the Python file at ``path`` and return its cell ``name`` (a Cell, or a function returning one).

    The file is read once and those bytes run (:func:`run_cell_file`): what runs is what was read."""
    file = Path(path)
    if not name.isidentifier():
        raise ValueError(f"cell name after ':' must be a Python identifier, got {name!r} in {path}:{name}")
    if "\x00" in str(path):
        raise ValueError(f"cell file {str(path)!r} holds a NUL byte, which no file name can")
    try:
        data = file.read_bytes()
    except (FileNotFoundError, NotADirectoryError):
        raise ValueError(f"cell file {file} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"cell file {file} is a folder; expected a Python file such as mycell.py") from None
    except OSError as e:
        raise ValueError(f"cannot read cell file {file}: {e.strerror}") from None
    return run_cell_file(data, file, name)


def run_cell_file(data: bytes, file: Path, name: str) -> Cell:
    """The cell ``name`` of the cell file whose bytes ``data`` were read from ``file``: those bytes are run."""
    from ...runtime.run_code import run_module

    if not name.isidentifier():
        raise ValueError(f"cell name after ':' must be a Python identifier, got {name!r} in {file}:{name}")
    module_name = f"_symbolic_lstm_user_cell_{abs(hash(str(file.resolve())))}"
    try:  # its own encoding declaration, as Python reads a file it imports; registered for dataclasses, pickling
        module = run_module(importlib.util.decode_source(data), module_name, file, register=True)
    except CellError as e:
        raise CellError(f"{file}: {e}") from None
    except SystemExit as e:  # sys.exit() or exit() in the file: a cell that never loaded is no success
        raise ValueError(
            f"cell file {file} called sys.exit({'' if e.code is None else repr(e.code)}) while it was loading; "
            "a cell file must define the cell, not exit"
        ) from None
    except Exception as e:  # the user's code: report where it failed, not our stack
        frames = [f for f in traceback.extract_tb(e.__traceback__) if f.filename == str(file)]
        where = f" (line {frames[-1].lineno})" if frames else ""
        raise ValueError(f"importing cell file {file} failed{where}: {type(e).__name__}: {e}") from None
    if not hasattr(module, name):
        found = [k for k, v in vars(module).items() if isinstance(v, Cell) or (callable(v) and k.startswith("build"))]
        raise ValueError(f"{file} defines no {name!r}" + (f"; it defines: {', '.join(found)}" if found else ""))
    obj = getattr(module, name)
    if callable(obj) and not isinstance(obj, Cell):
        try:
            obj = obj()
        except CellError as e:
            raise CellError(f"{file}:{name}: {e}") from None
        except SystemExit as e:
            raise ValueError(
                f"{file}:{name}() called sys.exit({'' if e.code is None else repr(e.code)}) instead of returning a cell"
            ) from None
        except Exception as e:
            raise ValueError(f"{file}:{name}() failed: {type(e).__name__}: {e}") from None
    if not isinstance(obj, Cell):
        raise ValueError(
            f"{file}:{name} is a {type(obj).__name__}; expected a Cell (CellBuilder(...).build()) "
            "or a function of no arguments returning one"
        )
    return replace(obj, origin=f"{file.resolve()}:{name}")
