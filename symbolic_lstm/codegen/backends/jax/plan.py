"""The JAX backend's plan: the cell's stages and δ statements as expressions (:mod:`..expressions`), arranged
for two ``lax.scan`` loops.

* forward: every linear stage's product over the input (with its bias) is hoisted out of the loop — one
  product over all steps — and the scan carries the states, multiplies each previous state once by the
  columns of every stage that reads it (grouped by operand), and stacks per step only what backward reads;
* backward: a reverse scan over t runs the derived δ statements, carrying δ of the previous states and
  stacking each linear stage's δsum (and each unit parameter's δ); after it, every weight gradient is one
  product per operand over all steps, and so is ∂E/∂x.
"""

from __future__ import annotations

import re
from functools import cached_property

from ....cell import Cell, Linear
from ....version import __version__
from ...expressions import ExpressionPlan, Step
from ...head_rules import head_code, regression_dz
from ...lines import template_env, uni_time, unpacking

TEMPLATE = "jax/cell_module.py.j2"
#: The kernels' own variables: a node may not take one (:func:`~symbolic_lstm.codegen.lines.check_names`).
LOCALS = frozenset({
    "p", "t", "T", "B", "n_a", "n_x", "initial", "seq", "cache", "grads", "carry", "ys", "dtype", "jax", "lax",
    "scan_forward", "scan_backward", "prev", "seeds", "name", "values", "step",
})  # fmt: skip


class JaxPlan(ExpressionPlan):
    """Forward and backward statements of one step for ``lax.scan``, in ``xp`` (``jax.numpy``)."""

    backend_label = "JAX"
    locals_ = LOCALS

    @property
    def hoisted(self) -> list[Linear]:
        """Linear stages that read the input: their input product (and bias) is taken over all steps at once."""
        return [st for st in self.cell.linear_stages if self.input in st.inputs]

    def hoisted_code(self, st: Linear) -> str:
        """``x_all`` times the input's columns of W, plus the bias: (T, B, rows)."""
        code = f"{self.input}_all @ xp.matrix_transpose({st.weight}[:, {self.columns(st, self.input)}])"
        return code + (f" + {st.bias}" if st.bias else "")

    @cached_property
    def grouped(self) -> dict[str, list[Linear]]:
        """Previous states that two or more linear stages read: one product per step over all of them (their
        columns of every W side by side), sliced per stage — the NumPy backend's grouping by operand."""
        readers = {k: [st for st in self.cell.linear_stages if k in st.inputs] for k in self.cell.prev_states}
        return {k: sts for k, sts in readers.items() if len(sts) > 1}

    def _rows(self, k: str) -> list[tuple[Linear, str, str]]:
        """(stage, first row, end row) of each reader of ``k`` in the stacked product, as code."""
        out: list[tuple[Linear, str, str]] = []
        seen: dict[str, int] = {}

        def code() -> str:
            return " + ".join(w if c == 1 else f"{c}*{w}" for w, c in seen.items()) or "0"

        for st in self.grouped[k]:
            start = code()
            width = self.cell.width(st.name)
            seen[width] = seen.get(width, 0) + 1
            out.append((st, start, code()))
        return out

    def stacked_forward(self, k: str) -> str:
        """``WT_<k>``: the readers' columns for ``k``, transposed and side by side — (width of k, Σ rows)."""
        blocks = [f"xp.matrix_transpose({st.weight}[:, {self.columns(st, k)}])" for st in self.grouped[k]]
        return f"xp.concat([{', '.join(blocks)}], axis=1)"

    def stacked_backward(self, k: str) -> str:
        """``WS_<k>``: the readers' columns for ``k``, stacked — (Σ rows, width of k)."""
        return f"xp.concat([{', '.join(f'{st.weight}[:, {self.columns(st, k)}]' for st in self.grouped[k])}], axis=0)"

    @property
    def single(self) -> list[tuple[Linear, str]]:
        """(stage, operand) of every per-step product that is not grouped: a state only one stage reads, or an
        inner node (MGU's Γ_f·a<t-1>)."""
        return [
            (st, k) for st in self.cell.linear_stages for k in st.inputs if k != self.input and k not in self.grouped
        ]

    def weights_forward(self) -> list[tuple[str, str]]:
        """(name, code) of every weight block the forward scan multiplies by, sliced and transposed once before
        it: XLA does not hoist a slice or transpose out of the loop's body (measured: MGU at batch 1, 26 %)."""
        out = [(f"WT_{k}", self.stacked_forward(k)) for k in self.grouped]
        cols = self.columns
        return out + [
            (f"WT_{st.name}_{k}", f"xp.matrix_transpose({st.weight}[:, {cols(st, k)}])") for st, k in self.single
        ]

    def weights_backward(self) -> list[tuple[str, str]]:
        """(name, code) of every weight block the backward scan multiplies by, sliced once before it."""
        out = [(f"WS_{k}", self.stacked_backward(k)) for k in self.grouped]
        return out + [(f"WS_{st.name}_{k}", f"{st.weight}[:, {self.columns(st, k)}]") for st, k in self.single]

    def product(self, st: Linear, k: str) -> str:
        """A grouped operand's term is a slice of the step's one product; any other, its own product with the
        weight block sliced before the scan."""
        if k == self.input:
            return super().product(st, k)
        if k not in self.grouped:
            return f"{k} @ WT_{st.name}_{k}"
        start, stop = next((a, b) for s, a, b in self._rows(k) if s is st)
        return f"P_{k}[:, {start}:{stop}]"

    def through_linear(self, v: str) -> list[str]:
        """δ of a grouped operand through its readers: one product, [δsum of each reader] · WS_<v>; of another,
        a product per reader with the weight block sliced before the scan."""
        if v == self.input:
            return super().through_linear(v)
        if v not in self.grouped:
            return [f"delta_{st.name} @ WS_{st.name}_{v}" for st in self.d.graph.linear_consumers(v)]
        deltas = ", ".join(f"delta_{st.name}" for st in self.grouped[v])
        return [f"xp.concat([{deltas}], axis=1) @ WS_{v}"]

    def forward(self) -> list[Step]:
        """The step's statements; a hoisted stage adds its precomputed input product (``XW_<stage>``)."""
        out = [
            Step(
                f"P_{k}", f"{k} @ WT_{k}", f"W_g^({uni_time(k)}) {uni_time(k)} of every gate that reads it, one product"
            )
            for k in self.grouped
        ]
        for step in super().forward():
            st = next((s for s in self.hoisted if s.name == step.target), None)
            if st is not None:
                terms = [self.product(st, k) for k in st.inputs if k != self.input] + [f"XW_{st.name}"]
                step = Step(step.target, " + ".join(terms), step.comment, step.stage)
            out.append(step)
        return out

    def backward(self) -> list[Step]:
        """δ statements; a state's own seed ∂E<t>/∂s<t> is always added (zeros when not given)."""
        out = []
        for step in super().backward(seeds=False):
            out.append(step)
            if step.stage in self.cell.states and step.stage != self.cell.output:
                out.append(Step(step.target, f"{step.target} + d{step.stage}[t]", "+ ∂E<t>/∂" + uni_time(step.stage)))
        return out

    @property
    def carried(self) -> str:
        """The forward scan's carry: the previous states, unpacked."""
        return unpacking([f"{s}_prev" for s in self.cell.states])

    @property
    def carried_back(self) -> str:
        """The backward scan's carry: δ of the previous states (from step t+1), unpacked."""
        return unpacking([f"d{s}_next" for s in self.cell.states])

    @property
    def input_elementwise(self) -> str | None:
        """∂E/∂x<t>'s branches that are not products (SRU's highway), per step; None when it has none."""
        value = self.schedule.elementwise_delta(self.input)
        return None if value == 0 else self.p.doprint(value)

    @property
    def input_after_scan(self) -> str:
        """∂E/∂x over all steps: each linear stage's δsum times the input's columns of its W (one product each),
        plus the branches that are not products, stacked by the scan."""
        inp = self.input
        terms = [f"D_{st.name} @ {st.weight}[:, {self.columns(st, inp)}]" for st in self.d.graph.linear_consumers(inp)]
        if self.input_elementwise is not None:
            terms.append(f"d{inp}_own")
        return " + ".join(terms) if terms else f"xp.zeros_like({inp}_all)"

    @property
    def stored(self) -> list[str]:
        """What the forward scan keeps per step: the sequences forward returns, the states, the operands of the
        weight gradients, and the stages backward's statements read — nothing else (the array-API module keeps
        every stage)."""
        names = [st.name for st in self.cell.stages]
        needed = {*self.cell.returns, *self.cell.states}
        needed |= {k for st in self.cell.linear_stages for k in st.inputs if k in names}
        code = " ".join(step.code for step in self.backward()) + " " + (self.input_elementwise or "")
        needed |= {n for n in names if re.search(rf"\b{re.escape(n)}\b", code)}
        return [n for n in names if n in needed]

    @property
    def head(self) -> dict[str, str]:
        """The softmax head's statements, printed from its derivation in ``xp``."""
        return head_code(self.p)

    @property
    def regression_dz(self) -> str:
        return regression_dz(self.p)

    def operand_all(self, k: str) -> str:
        """The sequence (T, B, ·) of a linear stage's operand over all steps."""
        if k == self.input:
            return f"{k}_all"
        state = self.cell.state_of_prev(k)
        return f"{state}_prev_all" if state is not None else f'seq["{k}"]'

    @property
    def unit_deltas(self) -> list[str]:
        """The unit parameters, whose δ the backward scan stacks per step."""
        return list(self.cell.vectors)


def render(cell: Cell, source_hash: str) -> str:
    """The JAX module for ``cell``, as text (byte-stable)."""
    plan = JaxPlan(cell)
    return (
        template_env()
        .get_template(TEMPLATE)
        .render(version=__version__, template=TEMPLATE, cell=cell, plan=plan, source_hash=source_hash, backend="jax")
    )


def statements(cell: Cell) -> list[Step]:
    plan = JaxPlan(cell)
    return [*plan.forward(), *plan.backward()]
