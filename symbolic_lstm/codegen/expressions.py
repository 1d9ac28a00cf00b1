"""Stages and δ statements as expressions in ``xp`` (an array namespace): the plan of every backend that prints one
expression per stage instead of NumPy's in-place calls — the array-API backend (a Python loop over steps) and
the JAX backend (two ``lax.scan`` loops).  The statements are the schedule's (:mod:`.schedule`); the printer is
the kernels' NumPy printer with ``xp.`` for ``np.``.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

from ..engine.cell import Cell
from ..engine.derivation import StepDerivation
from ..engine.stages import Linear, Stage
from .lines import ModuleApi, OwnNames, stage_text, template_env, uni, uni_time, unpacking
from .printer_numpy import KernelPrinter, heaviside_at_zero
from .schedule import Schedule


class ExpressionPrinter(KernelPrinter):
    """The kernel printer with ``xp.`` (the arrays' namespace) in place of ``np.``, and only the standard's
    functions: every rule prints a call, which binds tighter than any operator."""

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


class ExpressionPlan(ModuleApi):
    """Forward and backward statements of one step, as expressions in ``xp``.  The kernels' own names begin with
    ``_`` (:attr:`own`: the input at every step ``_x_all``, ∂E/∂x ``_dx`` …); a backend registers its others in
    :meth:`register_names`."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.schedule = Schedule(cell)
        self.input = self.schedule.input
        self.d: StepDerivation = self.schedule.d
        self.p = ExpressionPrinter()
        self.own: OwnNames = self.schedule.own
        for i in cell.inputs:
            self.own.add("all", i)
            self.own.add("d", i)
        self.register_names()

    def register_names(self) -> None:
        """Register the backend's own names that stand for something of the cell (none here)."""

    def render(self, template: str, backend: str, source_hash: str) -> str:
        """The module, rendered from ``template`` (byte-stable)."""
        from ..runtime.version import __version__

        return (
            template_env()
            .get_template(template)
            .render(
                version=__version__,
                template=template,
                cell=self.cell,
                plan=self,
                source_hash=source_hash,
                backend=backend,
                own=self.own,
            )
        )

    def columns(self, st: Linear, operand: str) -> str:
        """The columns of W that multiply ``operand``, as a slice (operands in order, n_a or n_x wide)."""
        start, stop = self.schedule.columns(st, operand)
        return f"{start}:{stop}"

    def product(self, st: Linear, k: str) -> str:
        """``k @ W[:, k's columns]ᵀ``: the operand ``k``'s term of the linear stage ``st``."""
        return f"{k} @ xp.matrix_transpose({st.weight}[:, {self.columns(st, k)}])"

    def forward_comments(self) -> list[str]:
        """Each stage as the derivation writes it (for the module's docstring)."""
        return [step.comment for step in ExpressionPlan.forward(self)]

    def forward(self) -> list[Step]:
        out = []
        for st in self.cell.stages:
            text = stage_text(st, self.cell.vectors)
            out.append(Step(st.name, st.compose(_ArrayCode(self)), f"{uni_time(st.name)} = {text}", st.name))
        return out

    def backward(self, seeds: bool = True) -> list[Step]:
        """δ of every materialised node, in backward order (the schedule's statements); linear stages' δ feed
        the matrix products.  ``seeds``: add a state's optional seed ``d<s>[t]`` when the caller gave one."""
        d = self.d
        out = []
        for delta in self.schedule.deltas():
            v = delta.node
            terms = ([] if delta.value == 0 else [self.p.doprint(delta.value)]) + self.through_linear(v)
            target = delta.target
            # δ identically 0: an array, since the products and weight gradients take δv as a matrix
            code = " + ".join(terms) if terms else f"xp.zeros_like({self.schedule.zero_like(v)})"
            fork = "  (fork: branches added)" if d.graph.is_fork(v) else ""
            out.append(Step(target, code, f"δ{uni_time(v)}{fork}", v))
            if delta.optional and seeds:
                out.append(Step(target, f"{target} + d{v}[t] if d{v} is not None else {target}", "+ ∂E<t>/∂" + uni(v)))
        return out

    def through_linear(self, v: str) -> list[str]:
        """The branches of δv through the linear stages that read v: δsum · (v's columns of W), one per stage."""
        return [f"delta_{st.name} @ {st.weight}[:, {self.columns(st, v)}]" for st in self.d.graph.linear_consumers(v)]

    @property
    def input_delta(self) -> str:
        """∂E/∂x<t> of the first input (see :meth:`delta_of`)."""
        return self.delta_of(self.input)

    def delta_of(self, inp: str) -> str:
        """∂E/∂inp<t>: its elementwise branches (SRU's highway (1 − r) ⊙ x, the Mogrifier's 2σ(Q h) ⊙ x), then the
        products of every linear stage that reads the input."""
        value = self.schedule.elementwise_delta(inp)
        terms = ([] if value == 0 else [self.p.doprint(value)]) + self.through_linear(inp)
        return " + ".join(terms) if terms else f"xp.zeros_like({inp})"

    @property
    def all_inputs(self) -> str:
        """The inputs' every-step arrays, in order, as code: ``_x_all`` or ``_x_all, _z_all``."""
        return ", ".join(self.own("all", i) for i in self.cell.inputs)

    def all_inputs_after(self, middle: str) -> str:
        """The first input's every-step array, ``middle``, then the further inputs' (``_x_all, p, _initial, _z_all``):
        the traceable cores take the further inputs last."""
        return ", ".join([self.own("all", self.input), middle, *(self.own("all", i) for i in self.cell.inputs[1:])])

    @property
    def widths_args(self) -> str:
        """The further inputs' widths as trailing arguments (``, n_z``; "" for one input)."""
        return "".join(f", {w}" for w in self.cell.extra_widths)

    def weight_width(self, st: Linear) -> str:
        return self.schedule.weight_width(st)

    @property
    def unpack(self) -> str:
        names = list(self.cell.params)
        return f"{unpacking(names)} = (p[_k] for _k in PARAMS)"

    @property
    def stored(self) -> list[str]:
        """Every per-step node backward may read (the array-API module keeps them all; simple and portable)."""
        return [st.name for st in self.cell.stages]


@dataclass(frozen=True)
class _ArrayCode:
    """A stage as one array-API expression (its :class:`~..engine.stages.StageOps` in code): the product's terms
    summed, an expression printed, a mean over the units as ``xp.mean(…, axis=-1, keepdims=True)``."""

    plan: ExpressionPlan

    def product(self, st: Linear) -> str:
        return " + ".join([self.plan.product(st, k) for k in st.inputs] + ([st.bias] if st.bias is not None else []))

    def unitwise(self, st: Stage, expr: sp.Expr) -> str:
        return self.plan.p.doprint(expr)

    def mean(self, st: Stage, value: str) -> str:
        return f"xp.mean({value}, axis=-1, keepdims=True)"
