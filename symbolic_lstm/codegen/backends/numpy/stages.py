"""NumPy kernels stage by stage, for the cells the fused schedule does not take.

The fused kernels (:mod:`.fused`) lay every linear stage out as an n_a-wide block of one
gate buffer and read the input only through matrix products.  A cell with nodes of n_x units (the
Mogrifier's Q h and x¹ = 2σ(Q h) ⊙ x) or that reads its input unit by unit (SRU's highway (1 − r) ⊙ x)
does not fit that layout; it gets these kernels instead — the same module API (``init_params``,
``forward``, ``backward``, the losses and heads, ``release_buffers``), the same derivation:

* forward walks the stages in order, each written into a per-step buffer of its own width; a linear
  stage's product over the input is hoisted out of the loop (one product for all steps);
* backward prints the schedule's δ statements (:meth:`~symbolic_lstm.codegen.schedule.Schedule.deltas`) and
  ∂E/∂x<t> with its elementwise branches, keeps each linear stage's δsum per step, and takes every weight
  gradient as one product over all steps after the loop.

Simpler than the fused layout and a little slower (one product per stage and operand); as exact.
"""

from __future__ import annotations

from ....engine.cell import Cell
from ....engine.stages import Linear, Stage
from ...lines import Line, ModuleApi, OwnNames, matrix_symbol, stage_text, template_env, uni, uni_time
from ...printer_numpy import KernelPrinter, StageCode
from ...schedule import Schedule
from .api import LossCode, api_context

TEMPLATE = "numpy/stages_module.py.j2"


def stages_reason(cell: Cell) -> str | None:
    """Why ``cell`` needs the stage-by-stage kernels (None: the fused ones take it)."""
    nx = [n for n in cell.widths if cell.width(n) not in ("n_a", "1") and n not in cell.inputs]
    if nx:
        widths = sorted({cell.width(n) for n in nx})
        return f"has nodes of {' and '.join(widths)} units ({', '.join(nx)})"
    elementwise = [st.name for st in cell.stages if st.expressions and set(st.reads) & set(cell.inputs)]
    if elementwise:
        return f"reads its input unit by unit (stage {', '.join(elementwise)})"
    unread = [i for i in cell.inputs if not any(i in st.inputs for st in cell.linear_stages)]
    if unread:
        return f"reads its input {', '.join(unread)} through no linear stage"
    return None


class StagePlan(ModuleApi):
    """Forward and backward statements of one step, stage by stage, printed for NumPy.

    Holds the schedule (``s``: the δ statements), its own names (``own``, every one registered here), the kernel
    printer and the losses (``losses``, a :class:`~.api.LossCode`); the module API (returns, parameter shapes) is
    :class:`~symbolic_lstm.codegen.lines.ModuleApi`'s.
    """

    layout = "stages"

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.s = Schedule(cell)
        self.d = self.s.d
        self.input = cell.inputs[0]
        self.printer = KernelPrinter()
        self.code = StageCode(self.printer)
        self.own: OwnNames = self.s.own
        for i in cell.inputs:
            self.own.add("all", i)
            self.own.add("d_all", i)
        for st in cell.linear_stages:
            for k in st.inputs:
                self.own.add("Wk", st.name, k, text=f"Wk_{st.name}_{k}")
            self.own.add("dsum", st.name)
        for n in (*cell.states, *self.stored):
            self.own.add("seq", n)
        for v in cell.vectors:
            self.own.add("grad", v)
        self.losses = LossCode(cell, self.d, self.printer)

    def seq(self, name: str) -> str:
        """The per-step buffer of a stage (``_c_seq``)."""
        return self.own("seq", name)

    @property
    def all_inputs(self) -> str:
        """The inputs' every-step arrays, in order, as code: ``_x_all`` or ``_x_all, _z_all``."""
        return ", ".join(self.own("all", i) for i in self.cell.inputs)

    @property
    def why(self) -> str:
        return stages_reason(self.cell) or "asked for them"

    @property
    def params_doc(self) -> str:
        return "; ".join(f"{k} {v}" for k, v in self.param_shapes.items())

    @property
    def stored(self) -> list[str]:
        """Every stage but the states (those have (T + 1)-step buffers of their own), in order."""
        return [st.name for st in self.cell.stages if st.name not in self.cell.states]

    def stage_text(self, st: Stage) -> str:
        return stage_text(st, self.cell.vectors)

    def columns(self, st: Linear, operand: str) -> str:
        start, stop = self.s.columns(st, operand)
        lo = "" if start == "0" else start
        hi = "" if stop == self.s.weight_width(st) else stop
        return f"{lo}:{hi}"

    def block(self, st: Linear, operand: str) -> str:
        """Name of the operand's columns of the stage's weight (``_Wk_<stage>_<operand>``)."""
        return self.own("Wk", st.name, operand)

    @property
    def blocks(self) -> list[Line]:
        """Each linear stage's weight, split by operand (views), once per call."""
        out = []
        for st in self.cell.linear_stages:
            for k in st.inputs:
                cols = self.columns(st, k)
                view = f'_arrays["{st.weight}"]' + ("" if cols == ":" else f"[:, {cols}]")
                out.append(Line(f"{self.block(st, k)} = {view}", f"{st.weight}'s {uni_time(k)} columns"))
        return out

    # -- forward --------------------------------------------------------------------------------------
    def hoisted(self) -> list[Line]:
        """Every linear stage's products over the inputs, for all steps at once, into the stage's buffer."""
        lines = []
        for st in self.cell.linear_stages:
            read = [i for i in self.cell.inputs if i in st.inputs]
            for n, inp in enumerate(read):
                rows, width = st.units, self.width(inp)
                product = f"{self.own('all', inp)}.reshape(T * B, {width}) @ {self.block(st, inp)}.T"
                comment = f"{st.weight}^({inp}) {inp}<t> for every t in one product"
                if n:
                    lines.append(Line(f"{self.seq(st.name)} += ({product}).reshape(T, B, {rows})", comment))
                    continue
                lines.append(
                    Line(
                        f"np.matmul({self.own('all', inp)}.reshape(T * B, {width}), {self.block(st, inp)}.T, "
                        f"out={self.seq(st.name)}.reshape(T * B, {rows}))",
                        comment,
                    )
                )
            if read:
                if st.bias is not None:
                    lines.append(Line(f'{self.seq(st.name)} += _arrays["{st.bias}"]'))
        return lines

    def forward_lines(self) -> list[Line]:
        cell, out = self.cell, []
        for st in cell.stages:
            buf = f"{self.seq(st.name)}[t + 1]" if st.name in cell.states else f"{self.seq(st.name)}[t]"
            out.append(Line(f"{st.name} = {buf}"))
            if not st.expressions:  # a product: its matmuls, the inputs' hoisted out of the loop
                text = self.stage_text(st)
                rest = [k for k in st.inputs if k not in cell.inputs]
                hoisted = any(k in cell.inputs for k in st.inputs)
                for i, k in enumerate(rest):
                    product = f"{k} @ {self.block(st, k)}.T"
                    if i == 0 and not hoisted:
                        out.append(
                            Line(
                                f"np.matmul({k}, {self.block(st, k)}.T, out={st.name})",
                                f"{uni_time(st.name)} = {text}",
                                stage=st.name,
                            )
                        )
                    else:
                        out.append(Line(f"{st.name} += {product}", "" if hoisted or i else text, stage=st.name))
                if st.bias is not None and not hoisted:
                    out.append(Line(f'{st.name} += _arrays["{st.bias}"]', stage=st.name))
                continue
            code = st.compose(self.code)
            out.append(Line(f"{st.name}[...] = {code}", f"{uni_time(st.name)} = {self.stage_text(st)}", stage=st.name))
        return out

    # -- backward -------------------------------------------------------------------------------------
    def through_linear(self, v: str) -> list[str]:
        """δsum · (v's columns of W) for every linear stage that reads v: the stage's reverse rule (matrix
        calculus, :attr:`~symbolic_lstm.engine.derivation.StepDerivation.rules`)."""
        out = []
        for st in self.d.graph.linear_consumers(v):
            r = self.d.rules[st.name]
            bind = {r.D: matrix_symbol(f"delta_{st.name}"), r.W[v]: matrix_symbol(self.block(st, v))}
            out.append(self.printer.doprint(r.operand[v].xreplace(bind)))
        return out

    def backward_lines(self) -> list[Line]:
        lines = []
        for delta in self.s.deltas():
            v = delta.node
            terms = ([] if delta.value == 0 else [self.printer.doprint(delta.value)]) + self.through_linear(v)
            # δ identically 0: an array, since the products and weight gradients take δv as a matrix
            code = " + ".join(terms) if terms else f"np.zeros_like({self.s.zero_like(v)})"
            fork = "  (fork: branches added)" if self.d.graph.is_fork(v) else ""
            lines.append(Line(f"{delta.target} = {code}", f"δ{uni_time(v)}{fork}", stage=v))
            if delta.optional:
                lines.append(
                    Line(
                        f"{delta.target} = {delta.target} + d{v}[t]",
                        f"+ ∂E<t>/∂{uni(v)}<t> given by the caller",
                        guard=f"d{v} is not None",
                    )
                )
            if self.d.graph.is_linear(v):
                lines.append(Line(f"{self.own('dsum', v)}[t] = delta_{v}", "kept for the weight gradient"))
        for inp in self.cell.inputs:
            value = self.s.elementwise_delta(inp)
            terms = ([] if value == 0 else [self.printer.doprint(value)]) + self.through_linear(inp)
            target = f"{self.own('d_all', inp)}[t]"
            lines.append(Line(f"{target} = {' + '.join(terms)}", f"∂E/∂{uni_time(inp)}", stage=inp))
        return lines

    def operand_all(self, k: str) -> str:
        """The operand's value at every step, as (T·B, width)."""
        w = self.width(k)
        state = self.cell.state_of_prev(k)
        if state:
            return f"{self.seq(state)}[:-1].reshape(T * B, {w})"
        if k in self.cell.inputs:
            return f"{self.own('all', k)}.reshape(T * B, {w})"
        if k in self.cell.states:  # read after its update within the step: steps 1 … T
            return f"{self.seq(k)}[1:].reshape(T * B, {w})"
        return f"{self.seq(k)}.reshape(T * B, {w})"

    def weight_gradient(self, st: Linear) -> str:
        """∂E/∂W = Σ_t δsum<t>ᵀ [operands<t>]: each operand's columns by the stage's reverse rule, all steps at once."""
        r = self.d.rules[st.name]
        D = matrix_symbol(f"{self.own('dsum', st.name)}.reshape(T * B, {st.units})")
        blocks = [
            self.printer.doprint(r.weight[k].xreplace({r.D: D, r.Z[k]: matrix_symbol(self.operand_all(k))}))
            for k in st.inputs
        ]
        return blocks[0] if len(blocks) == 1 else f"np.concatenate([{', '.join(blocks)}], axis=1)"

    def bias_gradient(self, st: Linear) -> str:
        r = self.d.rules[st.name]
        D = matrix_symbol(f"{self.own('dsum', st.name)}.reshape(T * B, {st.units})")
        code = self.printer.doprint(r.bias.xreplace({r.D: D}))
        return f"({code}).reshape(-1)"


def render(cell: Cell, source_hash: str) -> str:
    """The stage-by-stage module for ``cell``, as text (byte-stable)."""
    plan = StagePlan(cell)
    return (
        template_env()
        .get_template(TEMPLATE)
        .render(**api_context(plan, source_hash), template=TEMPLATE, uni=uni, uni_time=uni_time, own=plan.own)
    )


def statements(cell: Cell) -> list[Line]:
    """Every statement the stage-by-stage module prints from a stage (for the smoke run's attribution)."""
    plan = StagePlan(cell)
    return [*plan.forward_lines(), *plan.backward_lines()]
