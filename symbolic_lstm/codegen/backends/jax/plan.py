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

from ....engine.cell import Cell, Linear
from ...expressions import ExpressionPlan, Step
from ...head_rules import head_code, regression_dz
from ...lines import uni_time, unpacking

TEMPLATE = "jax/cell_module.py.j2"


class JaxPlan(ExpressionPlan):
    """Forward and backward statements of one step for ``lax.scan``, in ``xp`` (``jax.numpy``)."""

    def register_names(self) -> None:
        """The weight blocks, products and stacks the scans name after the cell's operands and stages."""
        own = self.own
        for st in self.hoisted:
            own.add("XW", st.name)
            own.add("XW_all", st.name)
        for k in self.grouped:
            own.add("WT", k)
            own.add("WS", k)
            own.add("P", k)
        for st, k in self.single:
            own.add("WT_single", st.name, k, text=f"WT_{st.name}_{k}")
            own.add("WS_single", st.name, k, text=f"WS_{st.name}_{k}")
        for s in self.cell.states:
            own.add("all", f"{s}_prev")
        for v in self.cell.vectors:
            own.add("D", v)
        for i in self.cell.inputs:
            own.add("d_own", i)
        for operands in self._weight_groups().values():
            own.add("DW", *operands, text="DW_" + "_".join(operands))

    @property
    def hoisted(self) -> list[Linear]:
        """Linear stages that read an input: their input products (and bias) are taken over all steps at once."""
        return [st for st in self.cell.linear_stages if set(self.cell.inputs) & set(st.inputs)]

    def hoisted_code(self, st: Linear) -> str:
        """``_x_all`` (and every further input read) times the input's columns of W, plus the bias: (T, B, rows)."""
        terms = [
            f"{self.own('all', i)} @ xp.matrix_transpose({st.weight}[:, {self.columns(st, i)}])"
            for i in st.inputs
            if i in self.cell.inputs
        ]
        return " + ".join(terms) + (f" + {st.bias}" if st.bias else "")

    @property
    def hoisted_inputs(self) -> str:
        """The inputs a hoisted product reads, as the comment writes them: ``x`` or ``x, z``."""
        return ", ".join(self.cell.inputs)

    @cached_property
    def grouped(self) -> dict[str, list[Linear]]:
        """Previous states that two or more linear stages read: one product per step over all of them (their
        columns of every W side by side), sliced per stage — the NumPy backend's grouping by operand."""
        readers = {k: [st for st in self.cell.linear_stages if k in st.inputs] for k in self.cell.prev_states}
        return {k: sts for k, sts in readers.items() if len(sts) > 1}

    @staticmethod
    def _offsets(widths: list[str]) -> list[tuple[str, str]]:
        """(start, end) of each block of ``widths`` ("n_a", "n_x", "1") laid side by side, as code."""
        out: list[tuple[str, str]] = []
        seen: dict[str, int] = {}

        def code() -> str:
            return " + ".join(w if c == 1 else f"{c}*{w}" for w, c in seen.items()) or "0"

        for width in widths:
            start = code()
            seen[width] = seen.get(width, 0) + 1
            out.append((start, code()))
        return out

    def _stage_rows(self, stages: list[Linear]) -> list[tuple[Linear, str, str]]:
        """(stage, first row, end row) of each of ``stages`` when their rows lie side by side, as code."""
        rows = self._offsets([self.cell.width(st.name) for st in stages])
        return [(st, a, b) for st, (a, b) in zip(stages, rows, strict=True)]

    def _rows(self, k: str) -> list[tuple[Linear, str, str]]:
        """(stage, first row, end row) of each reader of ``k`` in the stacked product, as code."""
        return self._stage_rows(self.grouped[k])

    def stacked_forward(self, k: str) -> str:
        """``_WT_<k>``: the readers' columns for ``k``, transposed and side by side — (width of k, Σ rows)."""
        blocks = [f"xp.matrix_transpose({st.weight}[:, {self.columns(st, k)}])" for st in self.grouped[k]]
        return f"xp.concat([{', '.join(blocks)}], axis=1)"

    def stacked_backward(self, k: str) -> str:
        """``_WS_<k>``: the readers' columns for ``k``, stacked — (Σ rows, width of k)."""
        return f"xp.concat([{', '.join(f'{st.weight}[:, {self.columns(st, k)}]' for st in self.grouped[k])}], axis=0)"

    @property
    def single(self) -> list[tuple[Linear, str]]:
        """(stage, operand) of every per-step product that is not grouped: a state only one stage reads, or an
        inner node (MGU's Γ_f·a<t-1>)."""
        return [
            (st, k)
            for st in self.cell.linear_stages
            for k in st.inputs
            if k not in self.cell.inputs and k not in self.grouped
        ]

    def weights_forward(self) -> list[tuple[str, str]]:
        """(name, code) of every weight block the forward scan multiplies by, sliced and transposed once before
        it: XLA does not hoist a slice or transpose out of the loop's body (measured: MGU at batch 1, 26 %)."""
        out = [(self.own("WT", k), self.stacked_forward(k)) for k in self.grouped]
        cols = self.columns
        return out + [
            (self.own("WT_single", st.name, k), f"xp.matrix_transpose({st.weight}[:, {cols(st, k)}])")
            for st, k in self.single
        ]

    def weights_backward(self) -> list[tuple[str, str]]:
        """(name, code) of every weight block the backward scan multiplies by, sliced once before it."""
        out = [(self.own("WS", k), self.stacked_backward(k)) for k in self.grouped]
        return out + [
            (self.own("WS_single", st.name, k), f"{st.weight}[:, {self.columns(st, k)}]") for st, k in self.single
        ]

    def product(self, st: Linear, k: str) -> str:
        """A grouped operand's term is a slice of the step's one product; any other, its own product with the
        weight block sliced before the scan."""
        if k in self.cell.inputs:
            return super().product(st, k)
        if k not in self.grouped:
            return f"{k} @ {self.own('WT_single', st.name, k)}"
        start, stop = next((a, b) for s, a, b in self._rows(k) if s is st)
        return f"{self.own('P', k)}[:, {start}:{stop}]"

    def through_linear(self, v: str) -> list[str]:
        """δ of a grouped operand through its readers: one product, [δsum of each reader] · _WS_<v>; of another,
        a product per reader with the weight block sliced before the scan."""
        if v in self.cell.inputs:
            return super().through_linear(v)
        if v not in self.grouped:
            return [f"delta_{st.name} @ {self.own('WS_single', st.name, v)}" for st in self.d.graph.linear_consumers(v)]
        deltas = ", ".join(f"delta_{st.name}" for st in self.grouped[v])
        return [f"xp.concat([{deltas}], axis=1) @ {self.own('WS', v)}"]

    def forward(self) -> list[Step]:
        """The step's statements; a hoisted stage adds its precomputed input product (``_XW_<stage>``)."""
        out = [
            Step(
                self.own("P", k),
                f"{k} @ {self.own('WT', k)}",
                f"W_g^({uni_time(k)}) {uni_time(k)} of every gate that reads it, one product",
            )
            for k in self.grouped
        ]
        for step in super().forward():
            st = next((s for s in self.hoisted if s.name == step.target), None)
            if st is not None:
                terms = [self.product(st, k) for k in st.inputs if k not in self.cell.inputs]
                terms.append(self.own("XW", st.name))
                step = Step(step.target, " + ".join(terms), step.comment, step.stage)
            out.append(step)
        return out

    def backward(self) -> list[Step]:
        """δ statements; a state's own seed ∂E<t>/∂s<t> is always added (zeros when not given).  When a product
        back reads every linear stage's δsum side by side, they are put side by side once (``_D_step``), for it
        and for the weight gradients."""
        out = []
        for step in super().backward(seeds=False):
            out.append(step)
            if step.stage in self.cell.states and step.stage != self.cell.output:
                out.append(Step(step.target, f"{step.target} + d{step.stage}[t]", "+ ∂E<t>/∂" + uni_time(step.stage)))
        side_by_side = self._side_by_side
        first = next((i for i, step in enumerate(out) if side_by_side in step.code), None)
        if len(self.cell.linear_stages) == 1 or first is None:
            return out
        out = [Step(st.target, st.code.replace(side_by_side, "_D_step"), st.comment, st.stage) for st in out]
        comment = "every linear stage's δsum<t> side by side, for the product back and the weight gradients"
        return [*out[:first], Step("_D_step", side_by_side, comment), *out[first:]]

    @property
    def _side_by_side(self) -> str:
        return f"xp.concat([{', '.join(f'delta_{st.name}' for st in self.cell.linear_stages)}], axis=1)"

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
        return self.elementwise_of(self.input)

    def elementwise_of(self, inp: str) -> str | None:
        """∂E/∂inp<t>'s branches that are not products, per step; None when it has none."""
        value = self.schedule.elementwise_delta(inp)
        return None if value == 0 else self.p.doprint(value)

    @property
    def elementwise_inputs(self) -> list[str]:
        """The inputs whose δ has branches that are not products (stacked by the backward scan), in order."""
        return [i for i in self.cell.inputs if self.elementwise_of(i) is not None]

    @property
    def elementwise_code(self) -> str:
        """Every input's per-step branches that are not products, as code (what the scan's statements read)."""
        return " ".join(self.elementwise_of(i) or "" for i in self.cell.inputs)

    @cached_property
    def delta_rows(self) -> dict[str, tuple[str, str]]:
        """Each linear stage's columns in ``_D_all``, the backward scan's δsum of every linear stage side by side
        (T, B, Σ rows), as code."""
        return {st.name: (a, b) for st, a, b in self._stage_rows(self.cell.linear_stages)}

    @property
    def delta_stacked(self) -> str:
        """What each backward step stacks for the weight gradients: every linear stage's δsum side by side."""
        if len(self.cell.linear_stages) == 1:
            return f"delta_{self.cell.linear_stages[0].name}"
        return "_D_step" if any(step.target == "_D_step" for step in self.backward()) else self._side_by_side

    def delta_all(self, stages: list[Linear]) -> str | None:
        """``_D_all``'s columns of ``stages`` when they lie side by side in order, as code; None when they do not."""
        names = [st.name for st in self.cell.linear_stages]
        at = [names.index(st.name) for st in stages]
        if at != list(range(at[0], at[0] + len(at))):
            return None
        if len(at) == len(names):
            return "_D_all"
        return f"_D_all[..., {self.delta_rows[stages[0].name][0]}:{self.delta_rows[stages[-1].name][1]}]"

    def readers(self, k: str) -> list[Linear]:
        """The linear stages that read ``k``, in the cell's order."""
        return [st for st in self.cell.linear_stages if k in st.inputs]

    def weight_gradients(self) -> list[Step]:
        """After the backward scan, the weight gradients as the NumPy module's: operands read by the same stages
        are put side by side, and each such group is one product over all steps and rows (``_DW_<operands>``: the
        readers' δsum side by side, from ``_D_all``, times the operands, (Σ rows, Σ widths)); each weight's gradient
        is its block of rows and columns (the columns of its operands side by side), each bias's a slice of one
        sum of ``_D_all``."""
        out: list[Step] = []
        where: dict[str, tuple[str, str, str]] = {}  # operand -> (product, first column, end column)
        for operands in self._weight_groups().values():
            readers = self.readers(operands[0])
            name = self.own("DW", *operands)
            z = [self.operand_all(k) for k in operands]
            z_code = z[0] if len(z) == 1 else f"xp.concat([{', '.join(z)}], axis=-1)"
            seen = ", ".join(uni_time(k) for k in operands)
            seen = seen if len(operands) == 1 else f"[{seen}]"
            deltas = f"δ{readers[0].name}" if len(readers) == 1 else f"[δ{', δ'.join(st.name for st in readers)}]"
            comment = f"Σ_t {deltas}<t>ᵀ {seen}, one product"
            out.append(Step(name, f"_outer({self.delta_all(readers)}, {z_code})", comment))
            cols = self._offsets([self.operand_width(k) for k in operands])
            where |= {k: (name, a, b) for k, (a, b) in zip(operands, cols, strict=True)}
        if any(st.bias for st in self.cell.linear_stages):
            out.append(Step("_D_sums", "xp.sum(_D_all, axis=(0, 1))", "Σ_t Σ_rows δsum<t> of every linear stage"))
        for st in self.cell.linear_stages:
            comment = f"Σ_t δ{st.name}<t>ᵀ [{', '.join(uni_time(k) for k in st.inputs)}]"
            out.append(Step(f'_grads["{st.weight}"]', self._weight_gradient(st, where), comment))
            if st.bias:
                rows = "" if len(self.cell.linear_stages) == 1 else "[{}:{}]".format(*self.delta_rows[st.name])
                out.append(Step(f'_grads["{st.bias}"]', f"_D_sums{rows}", f"Σ_t Σ_rows δ{st.name}<t>"))
        return out

    def _weight_groups(self) -> dict[tuple[str, ...], list[str]]:
        """The operands of the weight gradients' group products, by the names of the stages that read them all (an
        operand whose readers do not lie side by side in ``_D_all`` is in none: a product per reader)."""
        groups: dict[tuple[str, ...], list[str]] = {}
        for k in dict.fromkeys(k for st in self.cell.linear_stages for k in st.inputs):
            readers = self.readers(k)
            if self.delta_all(readers) is not None:
                groups.setdefault(tuple(st.name for st in readers), []).append(k)
        return groups

    def operand_width(self, k: str) -> str:
        """The width of a linear stage's operand: a previous state's is its state's."""
        state = self.cell.state_of_prev(k)
        return self.cell.width(state if state is not None else k)

    def _weight_gradient(self, st: Linear, where: dict[str, tuple[str, str, str]]) -> str:
        """``st``'s weight gradient: its rows of each operand's group product (the operands' columns side by
        side; all of a product's columns need no slice), or a product of its own for an operand outside one."""
        blocks: list[tuple[str, str, list[str]]] = []  # (product, rows, operands)
        for k in st.inputs:
            if k not in where:
                blocks.append((f"_outer({self.delta_all([st])}, {self.operand_all(k)})", ":", [k]))
                continue
            name = where[k][0]
            readers = self.readers(k)
            r0, r1 = next((r0, r1) for s, r0, r1 in self._stage_rows(readers) if s is st)
            rows = ":" if len(readers) == 1 else f"{r0}:{r1}"
            last = blocks[-1] if blocks else None
            if last and last[0] == name and last[1] == rows and where[last[2][-1]][2] == where[k][1]:
                last[2].append(k)  # the next columns of the same product
            else:
                blocks.append((name, rows, [k]))
        code = []
        for name, rows, ks in blocks:
            whole = name.startswith("_outer(") or [k for k, w in where.items() if w[0] == name] == ks
            cols = "" if whole else f", {where[ks[0]][1]}:{where[ks[-1]][2]}"
            code.append(name if rows == ":" and whole else f"{name}[{rows}{cols}]")
        return code[0] if len(code) == 1 else f"xp.concat([{', '.join(code)}], axis=1)"

    @property
    def input_after_scan(self) -> str:
        """∂E/∂x over all steps (see :meth:`after_scan_of`)."""
        return self.after_scan_of(self.input)

    def after_scan_of(self, inp: str) -> str:
        """∂E/∂inp over all steps: the δsum of the stages that read the input times their input columns (one
        product when they lie side by side in ``_D_all``), plus the branches that are not products, stacked by
        the scan."""
        readers = self.readers(inp)
        both = self.delta_all(readers) if len(readers) > 1 else None
        if both is not None:
            columns = ", ".join(f"{st.weight}[:, {self.columns(st, inp)}]" for st in readers)
            terms = [f"{both} @ xp.concat([{columns}], axis=0)"]
        else:
            terms = [f"{self.delta_all([st])} @ {st.weight}[:, {self.columns(st, inp)}]" for st in readers]
        if self.elementwise_of(inp) is not None:
            terms.append(self.own("d_own", inp))
        return " + ".join(terms) if terms else f"xp.zeros_like({self.own('all', inp)})"

    def step_reads(self) -> list[tuple[str, str]]:
        """(name, code) of what one backward step reads of the sequences — the input, the previous states and the
        stored stages — only those its statements use (XLA would drop the rest; the reader need not see them)."""
        code = " ".join(step.code for step in self.backward()) + " " + self.elementwise_code
        names = [(i, f"{self.own('all', i)}[t]") for i in self.cell.inputs]
        names += [(f"{s}_prev", f"{self.own('all', f'{s}_prev')}[t]") for s in self.cell.states]
        names += [(n, f'_seq["{n}"][t]') for n in self.stored]
        return [(n, c) for n, c in names if re.search(rf"\b{re.escape(n)}\b", code)]

    @property
    def stored(self) -> list[str]:
        """What the forward scan keeps per step: the sequences forward returns, the states, the operands of the
        weight gradients, and the stages backward's statements read — nothing else (the array-API module keeps
        every stage)."""
        names = [st.name for st in self.cell.stages]
        needed = {*self.cell.returns, *self.cell.states}
        needed |= {k for st in self.cell.linear_stages for k in st.inputs if k in names}
        code = " ".join(step.code for step in self.backward()) + " " + self.elementwise_code
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
        if k in self.cell.inputs or self.cell.state_of_prev(k) is not None:
            return self.own("all", k)
        return f'_seq["{k}"]'

    @property
    def unit_deltas(self) -> list[str]:
        """The unit parameters, whose δ the backward scan stacks per step."""
        return list(self.cell.vectors)


def render(cell: Cell, source_hash: str) -> str:
    """The JAX module for ``cell``, as text (byte-stable)."""
    return JaxPlan(cell).render(TEMPLATE, "jax", source_hash)


def statements(cell: Cell) -> list[Step]:
    plan = JaxPlan(cell)
    return [*plan.forward(), *plan.backward()]
