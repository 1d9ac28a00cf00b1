"""symbolic_lstm: derivations you can read, kernels you can trust.

A recurrent cell written as functional stages (:mod:`symbolic_lstm.cell`) → the graph of one step with
its forks (:mod:`symbolic_lstm.graph`) → the chain rule over that graph (:mod:`symbolic_lstm.derivation`)
→ emitters: LaTeX (:mod:`symbolic_lstm.emit_latex`) and vectorised NumPy kernels
(:mod:`symbolic_lstm.emit_numpy`, ``templates/``) → ``generated/``, which :func:`load` imports.
"""

from __future__ import annotations

__version__ = "0.1.0"

from .cell import Cell, CellBuilder, CellError
from .cells import get_cell
from .derivation import derive
from .functions import sigmoid, softsign

__all__ = ["Cell", "CellBuilder", "CellError", "__version__", "derive", "get_cell", "load", "sigmoid", "softsign"]


def load(name: str = "lstm", directory: str | None = None, *, warn_stale: bool = True):  # type: ignore[no-untyped-def]
    """Import the generated kernel module ``name`` (default: the committed ``generated/`` folder).

    See :func:`symbolic_lstm.loader.load`: only files written by ``symbolic-lstm generate`` are imported, and a
    module made from other sources than the current ones is imported with a ``StaleModuleWarning``.
    """
    from .loader import load as _load

    return _load(name, directory, warn_stale=warn_stale)
