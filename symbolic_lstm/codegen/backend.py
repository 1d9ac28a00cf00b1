"""What a code backend is: a name, how it names a cell's module, how it renders one, and what its output is
made from (so a module records the hash of exactly the sources that could change it).

A backend is a sub-package of :mod:`symbolic_lstm.codegen.backends` whose ``__init__`` defines one
:class:`Backend` subclass, with its templates in ``templates/<backend.templates>/``; registering it is one line
in :data:`symbolic_lstm.codegen.backends.BACKENDS`.  Nothing else in the package compares backend names.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import importlib.util
import inspect
import marshal
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import sympy as sp

from ..engine.cell import Cell
from ..runtime.paths import PACKAGE_DIR, templates_dir
from ..runtime.version import __version__

#: The engine (what a cell's stages, derivatives, loss and heads are: ``engine/*.py``, not the built-in cells, whose
#: definitions a module's hash takes from the cell itself) and the shared code generator with the NumPy printer every
#: backend builds on.  A kernel is printed from these, so a change here can change every module; the LaTeX, the
#: notebooks and the checks are not among them.
ENGINE_DIR = PACKAGE_DIR / "engine"
CODEGEN_DIR = Path(__file__).resolve().parent
#: The modules of ``codegen/`` that read modules already written (judge them fresh, load them), render none.
NOT_RENDERING = ("loader.py", "stale.py")


@dataclass(frozen=True)
class Statement:
    """One printed statement of a module and the stage (node) whose expression it prints: how a smoke-run
    failure at a line is attributed to the cell's stage."""

    code: str
    stage: str


class Backend:
    """A code backend.  Subclasses set the class attributes and implement :meth:`render` and :meth:`statements`.

    Attributes:
        name: what ``--backend`` takes ("numpy", "array-api").
        summary: one line for ``generate --help``: the module's name and what it runs on.
        suffix: appended to the cell's name for the module's name ("" → ``lstm``, "_array_api").
        templates: its folder under ``templates/``.
        keeps_dtype: the module returns gradients in the forward pass's dtype (the smoke run checks it).
        trains: the module has the heads ``train`` needs (``init_head``, ``linear_mse_loss``, ``softmax_ce_loss``,
            ``predict``, ``predict_proba``): ``train --backend`` offers it.
        imports: the modules a generated module imports beyond NumPy (``array_api_compat``).
        needs: a line naming them and how to install them ("" for nothing).
        tensors: how another framework's tensors reach the module — ``"shared memory"`` (CPU arrays whose memory
            the module reads and writes in place: NumPy's buffer protocol), ``"dlpack"`` (CPU arrays handed over
            by DLPack, no copy) or ``"themselves"`` (the module runs on the tensors, on any device).
        elsewhere: the backend whose modules run this one's work on devices its own ``tensors`` cannot reach
            (NumPy → the array-API module on CUDA), or None: such tensors are refused.
    """

    name: ClassVar[str]
    summary: ClassVar[str]
    suffix: ClassVar[str] = ""
    templates: ClassVar[str]
    keeps_dtype: ClassVar[bool] = False
    trains: ClassVar[bool] = False
    imports: ClassVar[tuple[str, ...]] = ()
    needs: ClassVar[str] = ""
    tensors: ClassVar[str] = "themselves"
    elsewhere: ClassVar[str | None] = None

    def module_name(self, cell: Cell) -> str:
        """The generated module's name (and file stem) for ``cell``."""
        return f"{cell.name}{self.suffix}"

    def render(self, cell: Cell) -> str:
        """The module text for ``cell`` (byte-stable).

        Raises:
            CodegenError: the cell has a structure this backend cannot print (the message names the stage).
        """
        raise NotImplementedError

    def statements(self, cell: Cell) -> list[Statement]:
        """Every statement the module prints from a stage of ``cell``."""
        raise NotImplementedError

    def missing(self) -> str | None:
        """What must be installed before a module of this backend can run (:attr:`needs`), or None."""
        return self.needs if any(importlib.util.find_spec(m) is None for m in self.imports) else None

    def line_by_line(self) -> contextlib.AbstractContextManager[None]:
        """Context in which a module of this backend runs its own Python lines one by one (a smoke-run failure
        is attributed to the line and stage it came from): nothing to do unless a compiler would trace them."""
        return contextlib.nullcontext()

    def importing(self) -> contextlib.AbstractContextManager[None]:
        """Context in which a module of this backend is imported for its smoke run (a stand-in for an optional
        dependency, say)."""
        return contextlib.nullcontext()

    # -- what a module is made from ------------------------------------------------------------------------
    @property
    def folder(self) -> Path:
        """The backend's own package folder."""
        return Path(sys.modules[type(self).__module__].__file__ or "").resolve().parent

    def source_files(self) -> list[Path]:
        """What a module of this backend is rendered from, besides the cell: the engine, the shared code
        generator (``codegen/*.py``), the backend's own package and its templates — never the LaTeX, the
        notebooks or another backend."""
        files = sorted(ENGINE_DIR.glob("*.py"))
        files += sorted(p for p in CODEGEN_DIR.glob("*.py") if p.name not in NOT_RENDERING)
        files += sorted(self.folder.rglob("*.py"))
        files += sorted((templates_dir() / self.templates).glob("*.j2"))
        files += sorted((templates_dir() / "_shared").glob("*.j2"))  # the header every backend's modules share
        return files

    def source_hash(self, cell: Cell) -> str:
        """SHA-256 (first 16 hex digits) of what produces the cell's module: its definition, the text its header
        carries (description, ``--cell`` spec), the code of the cell's own functions (a ``sympy.Function``
        subclass prints itself: editing its ``_numpycode`` changes the module), the package version and
        :meth:`source_files` — every byte the module holds follows from these.  A module recording another hash
        is stale."""
        h = hashlib.sha256(cell.fingerprint())
        h.update(repr((cell.description, cell.spec)).encode())
        for f in own_functions(cell):
            h.update(function_code(f))
        h.update(__version__.encode())
        for path in self.source_files():
            h.update(path.read_bytes().replace(b"\r\n", b"\n"))
        return h.hexdigest()[:16]


def own_functions(cell: Cell) -> list[type]:
    """The function classes a cell's stages apply that neither SymPy nor this package defines: the user's own."""
    found = {
        type(f)
        for st in cell.stages
        if hasattr(st, "expr")
        for f in st.expr.atoms(sp.Function)
        if not type(f).__module__.startswith(("sympy", "symbolic_lstm"))
    }
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


def function_code(cls: type) -> bytes:
    """A user function class as bytes that change when its code does: the source of the module it is defined in
    (module-level constants its methods read included), and every method's marshalled code, defaults and closure
    values (a class made at run time has no source)."""
    out = [cls.__qualname__.encode()]
    with contextlib.suppress(OSError, TypeError, KeyError):
        out.append(inspect.getsource(sys.modules[cls.__module__]).encode())
    for name, member in sorted(vars(cls).items()):
        fn = getattr(member, "__func__", member)
        if getattr(fn, "__code__", None) is None:
            out.append(name.encode() + _stable(member))
            continue
        cells = [c.cell_contents for c in fn.__closure__ or () if c.cell_contents is not cls]
        out.append(name.encode() + b"".join(_stable(v) for v in (fn, *(fn.__defaults__ or ()), *cells)))
    return b"\0".join(out)


def _stable(value: object) -> bytes:
    """Bytes for a value that are the same in every process (no ``at 0x…`` addresses): code marshalled, plain data
    and SymPy expressions by ``repr``, anything else by its type."""
    code = getattr(getattr(value, "__func__", value), "__code__", None)
    if code is not None:
        return marshal.dumps(code)
    if value is None or isinstance(value, int | float | complex | str | bytes | sp.Basic):
        return repr(value).encode()
    if isinstance(value, tuple | list | frozenset):
        return b"(" + b",".join(_stable(v) for v in value) + b")"
    return type(value).__qualname__.encode()


class ExpressionBackend(Backend):
    """A backend whose package has a ``plan`` module printing one expression per stage
    (:mod:`symbolic_lstm.codegen.expressions`): ``plan.render(cell, source_hash)`` and ``plan.statements(cell)``
    (``target = code`` steps).  The plan is imported when first used: the registry is read by every command."""

    def _plan(self) -> ModuleType:
        return importlib.import_module(f"{type(self).__module__}.plan")

    def render(self, cell: Cell) -> str:
        return self._plan().render(cell, self.source_hash(cell))

    def statements(self, cell: Cell) -> list[Statement]:
        return [Statement(f"{st.target} = {st.code}", st.stage) for st in self._plan().statements(cell) if st.stage]
