"""Kernels written against the Python array API standard (``templates/array_api/``).

The same schedule as the NumPy backend (:mod:`symbolic_lstm.codegen.schedule`: its backward
statements, the same validation), printed without NumPy's in-place ``out=`` calls, item assignment or
gate blocks — the standard has none of them for every library (JAX arrays are immutable) — so the module
runs on whatever arrays it is given: NumPy, PyTorch tensors, CuPy, JAX, through
``array_api_compat.array_namespace``.  One matrix product per gate and operand, each stage an expression,
per-step values kept in lists and stacked.  The NumPy backend stays the fast one; this one is portable.
"""

from __future__ import annotations

from dataclasses import dataclass

from ....cell import Cell, Linear, Reduce
from ....derivation import StepDerivation
from ....version import __version__
from ...lines import (
    ModuleApi,
    check_names,
    template_env,
    uni,
    uni_expr,
    uni_time,
)
from ...schedule import Schedule
from .printer import ArrayAPIPrinter

TEMPLATE = "array_api/cell_module.py.j2"
#: The kernels' own variables: a node may not take one (:func:`~symbolic_lstm.codegen.lines.check_names`).
LOCALS = frozenset({"p", "t", "T", "B", "n_a", "n_x", "initial", "steps", "seq", "cache", "grads", "name", "values"})
BACKEND = "array-api"


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


def render(cell: Cell, source_hash: str) -> str:
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
            source_hash=source_hash,
            backend=BACKEND,
        )
    )


def statements(cell: Cell) -> list[Step]:
    """Every statement the module prints from a stage, as ``target = code`` (for the smoke run's attribution)."""
    plan = ArrayAPIPlan(cell)
    return [*plan.forward(), *plan.backward()]
