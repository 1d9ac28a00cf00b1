"""symbolic_lstm: derivations you can read, kernels you can trust.

A recurrent cell written as functional stages (:mod:`symbolic_lstm.cell`) → the graph of one step with
its forks (:mod:`symbolic_lstm.graph`) → the chain rule over that graph (:mod:`symbolic_lstm.derivation`)
→ emitters: LaTeX (:mod:`symbolic_lstm.emit_latex`) and vectorised NumPy kernels
(:mod:`symbolic_lstm.codegen`, ``templates/``) → ``generated/``, which :func:`load` imports.
"""

from __future__ import annotations

from .cell import Cell, CellBuilder, CellError
from .cells import get_cell
from .derivation import derive
from .functions import logsigmoid, rsqrt, sigmoid, softsign
from .loader import load
from .version import __version__

__all__ = [
    "Cell",
    "CellBuilder",
    "CellError",
    "__version__",
    "derive",
    "get_cell",
    "load",
    "logsigmoid",
    "rsqrt",
    "sigmoid",
    "softsign",
]
