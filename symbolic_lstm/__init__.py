"""symbolic_lstm: derivations you can read, kernels you can trust.

The house by role, data flowing one way:

* :mod:`symbolic_lstm.engine` — a recurrent cell written as functional stages, the graph of one step with its forks,
  the chain rule over that graph (SymPy only); the built-in cells in ``engine.cells``;
* :mod:`symbolic_lstm.proof` — the symbolic proof that the engine's backward is the derivative, for every T;
* :mod:`symbolic_lstm.codegen` — vectorised kernels printed from the derivation (``templates/`` → ``generated/``),
  judged fresh or stale and loaded (:func:`load`);
* :mod:`symbolic_lstm.check` — the numeric judge of a module: shares no code with ``codegen``;
* :mod:`symbolic_lstm.document` — LaTeX, Graphviz and notebook documents of a derivation;
* :mod:`symbolic_lstm.runtime` — what all of them stand on: paths, atomic files, code read once and verified;
* :mod:`symbolic_lstm.bridges` — PyTorch and JAX layers over the kernels;
* :mod:`symbolic_lstm.train`, :mod:`symbolic_lstm.distributed`, :mod:`symbolic_lstm.cli`.

The documented public paths that name a module in its role's package stay importable (:data:`PUBLIC_PATHS`):
``symbolic_lstm.torch`` is ``symbolic_lstm.bridges.torch``, the same module object.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
from importlib.machinery import ModuleSpec
from types import ModuleType
from typing import ClassVar

#: Public module paths → the module each names in its role's package.
PUBLIC_PATHS = {
    "symbolic_lstm.torch": "symbolic_lstm.bridges.torch",
    "symbolic_lstm.jax": "symbolic_lstm.bridges.jax",
    "symbolic_lstm.loader": "symbolic_lstm.codegen.loader",
    "symbolic_lstm.gradcheck": "symbolic_lstm.check.gradcheck",
    "symbolic_lstm.cells": "symbolic_lstm.engine.cells",
    "symbolic_lstm.heads": "symbolic_lstm.engine.heads",
}


def _home(name: str) -> str | None:
    """The module a public path (or a module below one: ``symbolic_lstm.cells.lstm``) names, else None."""
    for public, home in PUBLIC_PATHS.items():
        if name == public or name.startswith(public + "."):
            return home + name[len(public) :]
    return None


class _PublicPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a public path as the module it names: one module object under two names, never run twice."""

    #: importlib sets the alias's spec on the module it is handed; :meth:`exec_module` puts the module's own back.
    _specs: ClassVar[dict[int, ModuleSpec | None]] = {}

    def find_spec(self, name: str, path: object = None, target: object = None) -> ModuleSpec | None:
        return importlib.util.spec_from_loader(name, self) if _home(name) else None

    def create_module(self, spec: ModuleSpec) -> ModuleType:
        module = importlib.import_module(_home(spec.name) or spec.name)
        self._specs[id(module)] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        module.__spec__ = self._specs.pop(id(module), module.__spec__)


if not any(isinstance(f, _PublicPaths) for f in sys.meta_path):
    sys.meta_path.insert(0, _PublicPaths())

from .codegen.loader import load  # noqa: E402
from .engine.cell import Cell, CellBuilder, CellError  # noqa: E402
from .engine.cells import get_cell  # noqa: E402
from .engine.derivation import derive  # noqa: E402
from .engine.functions import logsigmoid, rsqrt, sigmoid, softsign  # noqa: E402
from .runtime.version import __version__  # noqa: E402

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
