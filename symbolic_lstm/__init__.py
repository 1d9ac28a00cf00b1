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

#: Public module paths → the module each names in its role's package: the paths the docs, README and notebooks
#: named before the package was laid out by role, and the modules whose classes pickles made then refer to
#: (a ``torch.save``'d layer holds ``symbolic_lstm.cell.Cell``, ``symbolic_lstm.functions.sigmoid`` …).
PUBLIC_PATHS = {
    "symbolic_lstm.torch": "symbolic_lstm.bridges.torch",
    "symbolic_lstm.jax": "symbolic_lstm.bridges.jax",
    "symbolic_lstm.loader": "symbolic_lstm.codegen.loader",
    "symbolic_lstm.gradcheck": "symbolic_lstm.check.gradcheck",
    "symbolic_lstm.cells": "symbolic_lstm.engine.cells",
    "symbolic_lstm.heads": "symbolic_lstm.engine.heads",
    "symbolic_lstm.notebook": "symbolic_lstm.document.notebook",
    "symbolic_lstm.emit_latex": "symbolic_lstm.document.emit_latex",
    "symbolic_lstm.proof_step": "symbolic_lstm.proof.step",
    "symbolic_lstm.threads": "symbolic_lstm.runtime.threads",
    "symbolic_lstm.trust": "symbolic_lstm.runtime.trust",
    "symbolic_lstm.run_code": "symbolic_lstm.runtime.run_code",
    "symbolic_lstm.heap": "symbolic_lstm.train.heap",
    "symbolic_lstm.cell": "symbolic_lstm.engine.cell",
    "symbolic_lstm.functions": "symbolic_lstm.engine.functions",
    "symbolic_lstm.notation": "symbolic_lstm.engine.notation",
}


def _home(name: str) -> str | None:
    """The module a public path (or a module below one: ``symbolic_lstm.cells.lstm``) names, else None."""
    for public, home in PUBLIC_PATHS.items():
        if name == public or name.startswith(public + "."):
            return home + name[len(public) :]
    return None


class _PublicPaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Imports a public path as the module it names: one module object under two names, never run twice.

    (While the alias is imported — a few bytecodes under the import lock — the module's ``__spec__`` is the
    alias's; :meth:`exec_module` puts its own back.)"""

    #: How a finder installed by an earlier import of this package (``importlib.reload``) is recognised.
    symbolic_lstm_public_paths = True

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


if not any(getattr(f, "symbolic_lstm_public_paths", False) for f in sys.meta_path):
    sys.meta_path.insert(0, _PublicPaths())


def __getattr__(name: str) -> ModuleType:
    """A public path as an attribute (``symbolic_lstm.loader.module_for`` after ``import symbolic_lstm``),
    imported on first use."""
    if f"symbolic_lstm.{name}" in PUBLIC_PATHS:
        return importlib.import_module(f"symbolic_lstm.{name}")
    raise AttributeError(f"module 'symbolic_lstm' has no attribute {name!r}")


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
