"""Stage 4d: kernels written against the Python array API standard (``templates/array_api/``).

The same schedule as :mod:`symbolic_lstm.emit_numpy` (:mod:`symbolic_lstm.schedule`: its backward
statements, the same validation), printed without NumPy's in-place ``out=`` calls, item assignment or
gate blocks — the standard has none of them for every library (JAX arrays are immutable) — so the module
runs on whatever arrays it is given: NumPy, PyTorch tensors, CuPy, JAX, through
``array_api_compat.array_namespace``.  One matrix product per gate and operand, each stage an expression,
per-step values kept in lists and stacked.  The NumPy backend stays the fast one; this one is portable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sympy as sp

from . import __version__
from .cell import Cell, Linear, Reduce
from .codegen import (
    ModuleApi,
    check_names,
    template_env,
    uni,
    uni_expr,
    uni_time,
)
from .derivation import StepDerivation
from .paths import PACKAGE_DIR, templates_dir
from .printer_numpy import KernelPrinter, heaviside_at_zero
from .schedule import Schedule

TEMPLATE = "array_api/cell_module.py.j2"
#: The kernels' own variables (a node may not take one of these names; see :func:`~.codegen.check_names`).
LOCALS = frozenset({"p", "t", "T", "B", "n_a", "n_x", "initial", "steps", "seq", "cache", "grads", "name", "values"})
BACKEND = "array-api"


class ArrayAPIPrinter(KernelPrinter):
    """The kernel printer with ``xp.`` (the arrays' namespace) in place of ``np.``."""

    def _module_format(self, fqn: str, register: bool = True) -> str:
        out = super()._module_format(fqn, register)
        return "xp." + out[len("np.") :] if out.startswith("np.") else out

    def _print_Heaviside(self, expr: sp.Expr) -> str:
        """The standard has no heaviside: H(x) = (x > 0) as the arrays' dtype, H(0) = 0 unless the cell says."""
        x = self._print(expr.args[0])
        step = f"xp.astype(xp.greater({x}, 0), ({x}).dtype)"
        h0 = heaviside_at_zero(expr)
        return step if h0 == 0 else f"xp.where(xp.equal({x}, 0), xp.full_like({x}, {self._print(h0)}), {step})"


@dataclass(frozen=True)
class Step:
    """One statement of the per-step code: ``target = code`` and the derivation step it implements."""

    target: str
    code: str
    comment: str = ""
    stage: str = ""  # the node whose expression this prints


class ArrayAPIPlan(ModuleApi):
    """Forward and backward statements of one step, as expressions in ``xp``."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.schedule = Schedule(cell)
        self.input = self.schedule.input
        self.d: StepDerivation = self.schedule.d
        self.p = ArrayAPIPrinter()
        inp = self.input
        ours = LOCALS | {f"{inp}_all", f"d{inp}"} | {f"d{s}_next" for s in cell.states}
        check_names(cell, ours | {n for n in (*cell.widths, *cell.vectors) if n.startswith("delta_")}, "array-API")

    def columns(self, st: Linear, operand: str) -> str:
        """The columns of W that multiply ``operand``, as a slice (operands in order, n_a or n_x wide)."""
        start, stop = self.schedule.columns(st, operand)
        return f"{start}:{stop}"

    def forward(self) -> list[Step]:
        out = []
        for st in self.cell.stages:
            if isinstance(st, Linear):
                terms = [f"{k} @ xp.matrix_transpose({st.weight}[:, {self.columns(st, k)}])" for k in st.inputs]
                if st.bias is not None:
                    terms.append(st.bias)
                text = f"{st.weight} [{', '.join(uni_time(k) for k in st.inputs)}]" + (
                    f" + {st.bias}" if st.bias else ""
                )
                out.append(Step(st.name, " + ".join(terms), f"{uni_time(st.name)} = {text}", st.name))
            elif isinstance(st, Reduce):
                code = f"xp.mean({self.p.doprint(st.expr)}, axis=-1, keepdims=True)"
                comment = f"{uni_time(st.name)} = mean_i({uni_expr(st.expr, self.cell.vectors)})"
                out.append(Step(st.name, code, comment, st.name))
            else:
                comment = f"{uni_time(st.name)} = {uni_expr(st.expr, self.cell.vectors)}"
                out.append(Step(st.name, self.p.doprint(st.expr), comment, st.name))
        return out

    def backward(self) -> list[Step]:
        """δ of every materialised node, in backward order (the schedule's statements); linear stages' δ feed
        the matrix products."""
        d = self.d
        out = []
        for delta in self.schedule.deltas():
            v = delta.node
            terms = ([] if delta.value == 0 else [self.p.doprint(delta.value)]) + self.through_linear(v)
            target = delta.target
            code = " + ".join(terms) if terms else "0.0"
            fork = "  (fork: branches added)" if d.graph.is_fork(v) else ""
            out.append(Step(target, code, f"δ{uni_time(v)}{fork}", v))
            if delta.optional:
                out.append(Step(target, f"{target} + d{v}[t] if d{v} is not None else {target}", "+ ∂E<t>/∂" + uni(v)))
        return out

    def through_linear(self, v: str) -> list[str]:
        """The branches of δv through the linear stages that read v: δsum · (v's columns of W), one per stage."""
        return [f"delta_{st.name} @ {st.weight}[:, {self.columns(st, v)}]" for st in self.d.graph.linear_consumers(v)]

    @property
    def input_delta(self) -> str:
        """∂E/∂x<t>: its elementwise branches (SRU's highway (1 − r) ⊙ x, the Mogrifier's 2σ(Q h) ⊙ x), then the
        products of every linear stage that reads the input."""
        value = self.schedule.elementwise_delta(self.input)
        terms = ([] if value == 0 else [self.p.doprint(value)]) + self.through_linear(self.input)
        return " + ".join(terms) if terms else f"xp.zeros_like({self.input})"

    def weight_width(self, st: Linear) -> str:
        return self.schedule.weight_width(st)

    @property
    def unpack(self) -> str:
        names = list(self.cell.params)
        return f"{', '.join(names)}{',' if len(names) == 1 else ''} = (p[k] for k in PARAMS)"

    @property
    def stored(self) -> list[str]:
        """Every per-step node backward may read (the array-API module keeps them all; simple and portable)."""
        return [st.name for st in self.cell.stages]


def source_hash(cell: Cell) -> str:
    """As :func:`symbolic_lstm.emit_numpy.source_hash`, over this backend's emitter and templates."""
    from .emit_numpy import source_hash as numpy_hash  # the cell and the shared stages of the generator

    h = hashlib.sha256(numpy_hash(cell).encode())
    h.update((PACKAGE_DIR / "emit_array_api.py").read_bytes().replace(b"\r\n", b"\n"))
    for path in sorted(templates_dir().glob("array_api/*.j2")):
        h.update(path.read_bytes().replace(b"\r\n", b"\n"))
    return h.hexdigest()[:16]


def module_name(cell: Cell) -> str:
    return f"{cell.name}_array_api"


def render(cell: Cell) -> str:
    """The array-API module for ``cell``, as text (byte-stable)."""
    plan = ArrayAPIPlan(cell)
    return (
        template_env()
        .get_template(TEMPLATE)
        .render(
            version=__version__,
            template=TEMPLATE,
            cell=cell,
            plan=plan,
            source_hash=source_hash(cell),
            backend=BACKEND,
        )
    )
