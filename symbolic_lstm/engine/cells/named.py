"""The cell a generated module's header names (``CELL_SPEC``): a built-in by name, or a cell file — read once
from a folder that could be no one else's and run from those bytes, or not run at all.  What ``check --stale``
and a gradient check of a module alone (``check_module(k)``) rebuild the module's cell with."""

from __future__ import annotations

from pathlib import Path

from ..cell import Cell
from . import get_cell, run_cell_file


class NotRunError(Exception):
    """The cell file a module's header names is not run (why: the message): named by a relative path, or one
    that could be another user's."""


def named_cell(spec: str) -> Cell:
    """The cell a module's header names: a built-in, or a cell file read once, checked, and run from those bytes.

    Raises:
        NotRunError: the cell file is named by a relative path, or could be another user's (not run).
        ValueError: no such cell, or the file is missing or broken."""
    from ...runtime.trust import UntrustedPathError, read_code

    if ":" not in spec:
        return get_cell(spec)
    cell_file, _, attribute = spec.rpartition(":")
    if not cell_file.endswith(".py"):
        raise ValueError(f"a cell file is given as path/to/file.py:NAME, got {spec!r}")
    if not Path(cell_file).is_absolute():
        raise NotRunError(f"its header names the cell file {cell_file!r} by a relative path, which is not run")
    try:
        data = read_code(cell_file, "cell file")
    except UntrustedPathError as e:
        raise NotRunError(str(e)) from None
    except OSError:
        raise ValueError(f"cannot read {cell_file}") from None  # reported as not found
    return run_cell_file(data, Path(cell_file), attribute)
