"""Stage 4b: vectorised NumPy kernels — the schedule (:mod:`symbolic_lstm.schedule`) printed in place.

What comes from the engine, printed by :class:`~symbolic_lstm.printer_numpy.KernelPrinter`: every
forward stage, every δ of the backward pass (forks, seeds, the gradient from the next step), the
reverse rules of the linear stages (matrix calculus), the loss and its derivative.  What the schedule
decides (which products over which gates, which buffers) and this module spells in NumPy:

* one matrix product per operand over every gate that reads it: the input's hoisted out of the time loop
  (one product for all steps), each previous state's once per step (skipped at t = 1 when the initial
  state is zero), an inner node's once it is computed;
* each step's sums are regrouped gate by gate, so every activation is one ufunc call over one contiguous
  (B, n_a) block per gate, applied in place — pre-activations are kept only where backward reads them;
* weight gradients are one product per operand over all steps after the loop; so is ∂E/∂x;
* the forward cache holds exactly what backward reads (the engine says which), plus function values
  backward needs again, such as tanh(c<t>), computed once.
"""

from __future__ import annotations

import re
from functools import cached_property

import sympy as sp

from ....cell import Cell, Elementwise, Linear, Reduce
from ....notation import Partial, node
from ....timeline import Timeline
from ...lines import (
    CodegenError,
    CommentPrinter,
    Line,
    check_names,
    matrix_symbol,
    template_env,
    uni,
    uni_expr,
    uni_time,
)
from ...printer import KernelPrinter
from ...schedule import Gate, Group, Product, Schedule
from .api import LossCode, api_context
from .inplace import SIGMOID_INNER, inplace, sigmoid_of_scaled

__all__ = ["KernelPlan", "render", "statements"]

TEMPLATE = "numpy/cell_module.py.j2"
#: Names of the (B, n_a) scratch buffers in-place statements may use.
SCRATCH = [f"tmp{i}" for i in range(8)]
RESERVED = {
    "np", "x", "p", "t", "T", "B", "n_a", "n_x", "S", "SW", "SX", "dS", "dSr", "dS2", "b_gates", "cache", "gates",
    "dgates", "fold", "by_gate", "pre", "dtype", "b_by_gate", "keep_cache", "check_finite", "db", "db_by_gate",
    "SW_by_gate", "SX_by_gate", "dSr_by_gate", "dW", "dW_by_gate",
}  # fmt: skip
#: Prefixes of the generated code's own variables (δ buffers, gradients, per-product weights and scratch).
RESERVED_PREFIXES = ("delta_", "grad_", "S_", "W_", "WT_", "SW_", "dW_", "dSr_")


class KernelPlan(LossCode):
    """The schedule of ``cell``, spelled as NumPy for the template (slices, statements, buffer names)."""

    layout = "fused"

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.s = Schedule(cell)
        self.d = self.s.d
        self.gates: list[Gate] = self.s.gates
        self.products: list[Product] = self.s.products
        self.groups: list[Group] = self.s.groups
        self.aux = self.s.aux
        self.backward_reads = self.s.backward_reads
        self.printer = KernelPrinter()
        self._check_names()

    def _check_names(self) -> None:
        """No node or unit parameter may share a name with a variable of the generated code."""
        ours = set(RESERVED) | set(SCRATCH)
        ours |= {self.slice(g) for g in self.gates} | {f"{grp.name}_" for grp in self.groups}
        for pr in self.products:
            ours |= {f"W_{pr.operand}", f"WT_{pr.operand}", f"SW_{pr.operand}", f"dW_{pr.operand}"}
            ours |= {f"{pr.operand}_rows", f"{pr.operand}_gates", f"dSr_{pr.operand}"}
        check_names(self.cell, ours | {"p", "t"}, "NumPy")
        for name in [*self.d.graph.nodes, *self.cell.vectors]:
            if name in self.cell.inputs or self.cell.state_of_prev(name):
                continue
            clash = name.startswith(RESERVED_PREFIXES) and name not in self._parameter_names
            if name in ours or clash or name.endswith(("_seq", "_prime", "_rows", "_gates")):
                raise CodegenError(
                    f"cell {self.cell.name!r}: the name {name!r} clashes with a variable of the generated kernels; "
                    "rename that stage or parameter"
                )

    @property
    def _parameter_names(self) -> set[str]:
        """Weights and biases: never locals of the kernels (unit parameters are)."""
        return {n for st in self.cell.linear_stages for n in (st.weight, st.bias) if n is not None}

    # -- names --------------------------------------------------------------------------------------
    @staticmethod
    def slice(g: Gate) -> str:
        """The gate's index variable in a step's gate-major block (G, B, n_a)."""
        return f"{g.short}_"

    @property
    def G(self) -> int:
        return len(self.gates)

    @property
    def GN(self) -> str:
        return "n_a" if self.G == 1 else f"{self.G} * n_a"

    @property
    def regroup(self) -> bool:
        """Whether a step's sums are regrouped gate by gate: with one gate the two layouts are the same."""
        return self.G > 1

    def gate_index(self, pr: Product) -> str:
        """The gates a product feeds, indexing the gate-major block: one gate's name, or a range / list."""
        if pr.count == 1:
            return self.slice(self.gates[pr.start])
        return f"{pr.operand}_gates"

    def rows(self, pr: Product) -> str:
        """The product's columns of a row-major (…, G·n_a) array: ``:`` for every gate, else ``op_rows``."""
        return ":" if pr.all_gates else f"{pr.operand}_rows"

    def width(self, pr: Product) -> str:
        return "n_a" if pr.count == 1 else f"{pr.count} * n_a"

    def by_gate(self, pr: Product, rows: str) -> str:
        """A row-major (B, k·n_a) array of a product's gates as gate-major (k, B, n_a) (a view)."""
        return rows if pr.count == 1 else f"{rows}.reshape(B, {pr.count}, n_a).transpose(1, 0, 2)"

    @property
    def slice_code(self) -> str:
        """Gate indices, and for products over some gates their columns (row-major) and their gates."""
        names = ", ".join(self.slice(g) for g in self.gates)
        code = [f"{names} = range({self.G})" if self.G > 1 else f"{names} = 0"]
        for pr in self.products:
            if pr.all_gates:
                continue
            if pr.contiguous:
                code.append(f"{pr.operand}_rows = slice({pr.start} * n_a, {pr.stop} * n_a)")
                if pr.count > 1:
                    code.append(f"{pr.operand}_gates = slice({pr.start}, {pr.stop})")
            else:
                code.append(f"{pr.operand}_gates = [{', '.join(map(str, pr.gates))}]  # not adjacent in any gate order")
        return "\n    ".join(code)

    @property
    def group_slice_code(self) -> str:
        """Slices of the gate block, one per activation run (forward applies each in place); "" if none."""
        if not self.groups:
            return ""
        comma = "," if len(self.groups) == 1 else ""
        names = ", ".join(f"{grp.name}_" for grp in self.groups)
        slices = ", ".join(  # one gate: its index, so the view is that gate's (B, n_a) block
            str(grp.start) if grp.stop - grp.start == 1 else f"slice({grp.start}, {grp.stop})" for grp in self.groups
        )
        return f"{names}{comma} = {slices}{comma}"

    # -- documentation --------------------------------------------------------------------------------
    @property
    def weights_doc(self) -> str:
        """Each weight's shape over its operands: ``W_f (n_a, n_a + n_x) over [a<t-1> | x<t>]``."""
        out = []
        for st in self.cell.linear_stages:
            out.append(f"{st.weight} (n_a, {self.s.weight_width(st)}) over [{' | '.join(map(uni_time, st.inputs))}]")
        return "; ".join(out)

    @property
    def params_doc(self) -> str:
        doc = [
            f"{st.weight} (n_a, {self.s.weight_width(st)})" + (f", {st.bias} (n_a,)" if st.bias else "")
            for st in self.cell.linear_stages
        ]
        return "; ".join(doc + [f"{v} (n_a,)" for v in self.cell.vectors])

    @property
    def keep_pre(self) -> bool:
        return any(grp.keeps_pre for grp in self.groups)

    @property
    def cache_doc(self) -> str:
        """Size of the forward cache per step and batch row, in words for the docstring."""
        n_a = self.G * (2 if self.keep_pre else 1) + len(self.aux) + len(self.stored_stages) + len(self.cell.states)
        return f"about (n_x + {n_a}·n_a)·T·B"

    def stage_text(self, st: Elementwise | Reduce) -> str:
        text = uni_expr(st.expr, self.cell.vectors)
        return f"mean_i({text})" if isinstance(st, Reduce) else text

    def seq_width(self, name: str) -> str:
        """Columns of a stored node's per-step buffer: 1 for a row scalar, n_a otherwise."""
        return "1" if name in self.cell.scalars else "n_a"

    @property
    def has_bias(self) -> bool:
        return self.s.has_bias

    @property
    def stored_stages(self) -> list[str]:
        return self.s.stored_stages

    @property
    def forward_prev_states(self) -> list[str]:
        return self.s.forward_prev_states

    @property
    def read_names(self) -> set[str]:
        return self.s.read_names

    @property
    def early_groups(self) -> list[Group]:
        return [grp for grp in self.groups if grp.phase is None]

    @property
    def early_gates(self) -> list[Gate]:
        return [g for g in self.gates if g.phase is None]

    def gate_of(self, stage: str) -> Gate:
        return self.s.gate_of(stage)

    # -- weights ------------------------------------------------------------------------------------
    def block_code(self, pr: Product) -> str:
        """The product's weight (k·n_a, size): the operand's columns of each gate's W, stacked (a copy)."""
        parts = []
        for gi, (start, stop) in zip(pr.gates, pr.columns, strict=True):
            st = self.gates[gi].stage
            if start == "0" and stop == self.s.weight_width(st):
                parts.append(f'arrays["{st.weight}"]')
            else:
                lo = "" if start == "0" else start
                hi = "" if stop == self.s.weight_width(st) else stop
                parts.append(f'arrays["{st.weight}"][:, {lo}:{hi}]')
        return f"np.concatenate([{', '.join(parts)}])"

    def fold_of(self, pr: Product) -> str:
        """`` * fold`` (or its rows) for a product's forward weights when they include folded σ columns."""
        if not any(grp.start < pr.stop and pr.start < grp.stop for grp in self.s.folds):
            return ""
        if pr.all_gates:
            return " * fold"
        if pr.contiguous:
            return f" * fold[{pr.operand}_rows]"
        return f" * fold.reshape({self.G}, n_a)[{pr.operand}_gates].reshape(-1)"

    @property
    def folds(self) -> list[Group]:
        return self.s.folds

    # -- forward --------------------------------------------------------------------------------------
    @property
    def input_product(self) -> Product:
        return self.s.input_product

    def hoisted_lines(self) -> list[Line]:
        """The input's product for every step at once, into the row-major gate buffer (zeros elsewhere)."""
        pr, inp, G = self.input_product, self.s.input, self.G
        fold = self.fold_of(pr)
        lhs = f"{inp}.reshape(T * B, n_x)"
        comment = f"the {inp}<t> half for every t in one product"
        if pr.all_gates:
            return [Line(f"np.matmul({lhs}, W_{inp}.T{fold}, out=gates.reshape(T * B, {self.GN}))", comment)]
        rm = f"gates.reshape(T * B, {self.GN})"
        if pr.contiguous:
            lines = [Line(f"np.matmul({lhs}, W_{inp}.T{fold}, out={rm}[:, {inp}_rows])", comment)]
            if pr.start > 0:
                lines.append(Line(f"{rm}[:, :{pr.start} * n_a] = 0", f"gates that do not read {inp}<t>"))
            if pr.stop < G:
                lines.append(Line(f"{rm}[:, {pr.stop} * n_a:] = 0", f"gates that do not read {inp}<t>"))
            return lines
        others = [i for i in range(G) if i not in pr.gates]
        by = f"gates.reshape(T * B, {G}, n_a)"
        return [
            Line(f"{by}[:, {inp}_gates] = ({lhs} @ W_{inp}.T{fold}).reshape(T * B, {pr.count}, n_a)", comment),
            Line(f"{by}[:, {others}] = 0", f"gates that do not read {inp}<t>"),
        ]

    @property
    def state_products(self) -> list[Product]:
        return self.s.state_products

    @property
    def recurrent_products(self) -> list[Product]:
        """Products taken inside the loop (previous states and inner nodes): their forward weights and scratch."""
        return [pr for pr in self.products if pr.kind != "input"]

    def scratch(self, pr: Product) -> str:
        return "SW" if pr.all_gates else f"SW_{pr.operand}"

    @property
    def full_product_first(self) -> bool:
        """One state product over every gate, and the input product over every gate too: the state's product
        writes the step's row-major sums (out=) and the input half is added."""
        states = self.state_products
        return len(states) == 1 and states[0].all_gates and self.input_product.all_gates

    def step_sums(self) -> list[Line]:
        """The step's sums: the hoisted input half plus each previous state's product, row-major, then
        regrouped gate by gate (+ b) into the step's block ``S``; one gate needs no regrouping."""
        lines: list[Line] = []
        inp = self.s.input

        def guard(pr: Product) -> str:
            s = self.cell.state_of_prev(pr.operand)
            return f"t > 0 or {s}0 is not None  # (nothing to add at t = 1 when {s}<0> = 0)"

        def product(pr: Product, out: str) -> Line:
            s = self.cell.state_of_prev(pr.operand)
            comment = f"W_g^({uni(pr.operand)}) {uni_time(pr.operand)}"
            return Line(f"np.matmul({s}_seq[t], WT_{pr.operand}, out={out})", comment, guard=guard(pr))

        if not self.regroup:
            lines.append(Line("S = by_gate[t]"))
            for pr in self.state_products:
                lines.append(product(pr, self.scratch(pr)))
                lines.append(Line(f"S[0] += {self.scratch(pr)}", guard=guard(pr)))
            return lines
        if self.full_product_first:
            pr = self.state_products[0]
            lines.append(product(pr, "SW"))
            lines.append(Line("SW += gates[t]", f"+ the {inp}<t> half", guard=guard(pr)))
            lines.append(Line("np.copyto(SW, gates[t])", guard="else"))
            sums = "SW"
        else:
            lines.append(Line("np.copyto(SX, gates[t])", f"the {inp}<t> half"))
            for pr in self.state_products:
                lines.append(product(pr, self.scratch(pr)))
                if pr.contiguous:
                    add = f"SX[:, {self.rows(pr)}] += {self.scratch(pr)}"
                else:
                    add = f"SX_by_gate[{pr.operand}_gates] += {self.by_gate(pr, self.scratch(pr))}"
                lines.append(Line(add, guard=guard(pr)))
            sums = "SX"
        lines.append(Line("S = by_gate[t]"))
        if self.has_bias:
            lines.append(
                Line(
                    f"np.add({sums}_by_gate, b_by_gate, out=S)",
                    "the sums + b_g, gate by gate: each gate's (B, n_a) block contiguous",
                )
            )
        else:
            lines.append(
                Line(f"np.copyto(S, {sums}_by_gate)", "the sums gate by gate: each gate's (B, n_a) block contiguous")
            )
        return lines

    @property
    def sums_name(self) -> str:
        return "SW" if self.full_product_first else "SX"

    def activation_lines(self, grp: Group) -> list[Line]:
        """One activation run in place on its view of the block (its pre-activations stored first if read)."""
        view = f"S_{grp.name}"
        members = self.gates[grp.start : grp.stop]
        values, sums = ", ".join(uni(g.value) for g in members), ", ".join(uni(g.stage.name) for g in members)
        comment = f"{values} = {grp.function}({sums})"
        lines = [Line(f"{view} = S[{grp.name}_]", f"{comment}, in place")]
        if grp.keeps_pre:
            lines.append(Line(f"np.copyto(pre[t, {grp.name}_], {view})", "pre-activations, read by backward"))
        if grp.folded:  # the block already holds ½·sum (forward scaled these columns of W and b)
            code = sigmoid_of_scaled(view)
        else:
            g = members[0]
            expr = g.act.expr.xreplace({node(g.stage.name): sp.Symbol(view)})  # type: ignore[union-attr]
            code = inplace(expr, view, SCRATCH, self.printer)
            if len(members) > 1 and any(tmp in c for c in code for tmp in SCRATCH):
                # the scratch buffers are (B, n_a): an activation that needs one runs gate by gate
                code = []
                for m in members:
                    one = f"{view}_{m.short}"
                    code.append(f"{one} = S[{self.slice(m)}]")
                    code += inplace(expr.xreplace({sp.Symbol(view): sp.Symbol(one)}), one, SCRATCH, self.printer)
        stage = members[0].value
        return lines + [Line(c, stage=stage) for c in code]

    def gate_aliases(self, gates: list[Gate]) -> Line:
        values = ", ".join(g.value for g in gates)
        views = ", ".join(f"S[{self.slice(g)}]" for g in gates)
        return Line(f"{values} = {views}")

    def forward_lines(self) -> list[Line]:
        """Elementwise stages not fused into the block, in order, writing into their buffers."""
        in_block = {g.act.name for g in self.gates if g.act is not None}
        lines: list[Line] = []
        for g in self.early_gates:  # a gate complete at the step's start that a later product reads
            lines += self._late_lines(g.value)
        written_aux: set[sp.Expr] = set()
        for st in self.cell.stages:
            if isinstance(st, Linear) or st.name in in_block:
                continue
            expr = st.expr
            for f, name in self.aux.items():
                if f in expr.atoms(sp.Function) and f not in written_aux:
                    lines += self._aux_lines(f, name)
                    written_aux.add(f)
            expr = expr.xreplace({f: sp.Symbol(n) for f, n in self.aux.items()})
            comment = f"{uni(st.name)}<t> = {self.stage_text(st)}"
            if st.name in self.cell.scalars:  # one number per row: a small (B, 1) array, allocated
                code = self.printer.doprint(expr)
                if isinstance(st, Reduce):
                    code = f"{self.printer._module_format('numpy.mean')}({code}, axis=-1, keepdims=True)"
                lines.append(Line(f"{st.name} = {code}", comment, stage=st.name))
                if st.name in self.stored_stages:
                    lines.append(Line(f"{st.name}_seq[t] = {st.name}"))
            elif st.name in self.cell.states:
                lines.append(Line(f"{st.name} = {st.name}_seq[t + 1]"))
                lines += self._inplace(expr, st.name, comment)
            elif st.name in self.stored_stages:
                lines.append(Line(f"{st.name} = {st.name}_seq[t]"))
                lines += self._inplace(expr, st.name, comment)
            else:
                lines.append(Line(f"{st.name} = {self.printer.doprint(expr)}", comment, stage=st.name))
            # an auxiliary of this stage's output (tanh(c) after c) is computed right after it
            for f, name in self.aux.items():
                if f not in written_aux and set(map(str, f.args)) <= self.s.defined_after(st.name):
                    lines += self._aux_lines(f, name)
                    written_aux.add(f)
            lines += self._late_lines(st.name)
        return lines

    def _late_lines(self, k: str) -> list[Line]:
        """Once the inner node ``k`` is computed: its copy for backward if it is a gate's value, its product
        into the gates that read it, then the activation of the gates it completes — and so on for those gates
        (a linear stage that reads a linear stage: MinimalRNN's U [h<t-1>, z<t>])."""
        lines: list[Line] = []
        if k in self.stored_stages and k in {g.value for g in self.gates}:
            lines.append(Line(f"np.copyto({k}_seq[t], {k})", f"{uni(k)}<t>, kept for the weight gradient"))
        for pr in self.s.inner_products(k):
            names = ", ".join(uni(self.gates[i].stage.name) for i in pr.gates)
            lines.append(
                Line(f"np.matmul({k}, WT_{k}, out={self.scratch(pr)})", f"{names} += W^({uni(k)}) {uni_time(k)}")
            )
            lines.append(Line(f"S[{self.gate_index(pr)}] += {self.by_gate(pr, self.scratch(pr))}"))
        for grp in self.groups:
            if grp.phase == k:
                lines += self.activation_lines(grp)
        done = [g for g in self.gates if g.phase == k]
        if done:
            lines.append(self.gate_aliases(done))
        for g in done:
            lines += self._late_lines(g.value)
        return lines

    def _aux_lines(self, f: sp.Expr, name: str) -> list[Line]:
        """Compute an auxiliary (tanh(c<t>) …) into its buffer."""
        comment = f"{uni_expr(f, self.cell.vectors)}, stored for backward"
        return [Line(f"{name} = {name}_seq[t]"), *self._inplace(f, name, comment)]

    def _inplace(self, expr: sp.Expr, dest: str, comment: str) -> list[Line]:
        """``dest = expr`` as ufunc calls writing into ``dest`` (scratch: tmp0, tmp1 …); comment on the first."""
        code = inplace(expr, dest, SCRATCH, self.printer)
        return [Line(c, comment if i == 0 else "", stage=dest) for i, c in enumerate(code)]

    # -- backward -----------------------------------------------------------------------------------
    @cached_property
    def sigmoid_primes(self) -> list[Group]:
        """σ runs of two or more gates: backward takes σ'(sum_g) = Γ_g(1 − Γ_g) for all of them in two
        passes over the run's columns, where each gate's δ would otherwise take two of its own."""
        return [grp for grp in self.groups if grp.function == "sigmoid" and grp.stop - grp.start > 1]

    def prime_of(self, g: Gate) -> str:
        """Name of the (B, n_a) view holding σ'(sum_g) = Γ_g(1 − Γ_g) during a backward step."""
        return f"{g.value}_prime"

    def _with_sigmoid_primes(self, value: sp.Expr) -> sp.Expr:
        for grp in self.sigmoid_primes:
            for g in self.gates[grp.start : grp.stop]:
                G = sp.Symbol(g.value)
                value = value.subs(G * (1 - G), sp.Symbol(self.prime_of(g)))
        return value

    @property
    def delta_buffers(self) -> list[str]:
        return self.s.delta_buffers

    @property
    def full_copy(self) -> bool:
        """Whether a step's backward copies all of dS to the row-major dSr (for a product over every gate)."""
        return self.regroup and any(pr.all_gates for pr in self.recurrent_products)

    @property
    def split_products(self) -> list[Product]:
        """Recurrent products whose gates are not adjacent: their δsum gets a row-major scratch of its own."""
        return [pr for pr in self.recurrent_products if not pr.contiguous]

    def _delta_in(self, pr: Product) -> tuple[str, list[Line]]:
        """The row-major δsum (B, k·n_a) of the product's gates, and the copies that make it."""
        if pr.count == 1:  # one gate: its block of dS, contiguous
            return f"dS[{self.gate_index(pr)}]", []
        if pr.all_gates:  # every gate: the row-major copy of dS that BLAS reads as one (B, G·n_a) matrix
            return "dSr", [Line("np.copyto(dSr_by_gate, dS)", "δsum_g<t> into the row-major dSr")]
        if pr.contiguous:
            idx = self.gate_index(pr)
            return f"dSr[:, {self.rows(pr)}]", [Line(f"np.copyto(dSr_by_gate[{idx}], dS[{idx}])")]
        view = f"dSr_{pr.operand}.reshape(B, {pr.count}, n_a).transpose(1, 0, 2)"
        return f"dSr_{pr.operand}", [Line(f"np.copyto({view}, dS[{pr.operand}_gates])")]

    def backward_lines(self) -> list[Line]:
        d, lines = self.d, []
        aux = self.s.aux_names()
        for delta in self.s.deltas():
            v = delta.node
            value = self._with_sigmoid_primes(delta.value.xreplace(aux))
            comment = self.comment(v)
            target_var = delta.target
            if delta.products:
                (pr,) = delta.products
                D, copies = self._delta_in(pr)
                lines += copies
                rules = d.rules[self.gates[pr.start].stage.name]
                rule = rules.operand[v].xreplace({rules.D: matrix_symbol(D), rules.W[v]: matrix_symbol(f"W_{v}")})
                if not isinstance(rule, sp.MatMul) or len(rule.args) != 2:
                    raise CodegenError(f"cell {self.cell.name!r}: unexpected reverse rule {rule} for {v!r}")
                lhs, rhs = (self.printer.doprint(a) for a in rule.args)
                if value == 0:
                    lines.append(Line(f"np.matmul({lhs}, {rhs}, out={target_var})", comment, stage=v))
                else:
                    lines += self._inplace(value, target_var, comment)
                    lines.append(Line(f"{target_var} += {lhs} @ {rhs}", stage=v))
            elif v in self.cell.scalars:  # δ of a row scalar: a (B, 1) array
                lines.append(Line(f"{target_var} = {self.printer.doprint(value)}", comment, stage=v))
            else:
                lines += self._inplace(value, target_var, comment)
            if delta.optional:
                lines.append(
                    Line(
                        f"{target_var} += d{v}[t]",
                        f"+ ∂E<t>/∂{uni(v)}<t> given by the caller",
                        guard=f"d{v} is not None",
                    )
                )
        return lines

    def end_of_step(self) -> str:
        """Step t's δsum into the row-major gradient buffer the weight products read after the loop."""
        if not self.regroup:
            return "dgates[t] = dS[0]"
        if self.full_copy:
            return "dgates[t] = dSr"
        return f"np.copyto(dgates[t].reshape(B, {self.G}, n_a).transpose(1, 0, 2), dS)"

    def _all_steps(self, pr: Product) -> str:
        """The product's operand for every step, stacked as (T·B, size)."""
        k = pr.operand
        state = self.cell.state_of_prev(k)
        if state:
            return f"{state}_seq[:-1].reshape(T * B, n_a)"
        if pr.kind == "input":
            return f"{k}.reshape(T * B, n_x)"
        if k in self.cell.states:  # a state read after its update in the same step: steps 1 … T
            return f"{k}_seq[1:].reshape(T * B, n_a)"
        return f"{k}_seq.reshape(T * B, n_a)"

    def _delta_all_steps(self, pr: Product) -> str:
        if pr.all_gates:
            return "dS2"
        if pr.contiguous:
            return f"dS2[:, {self.rows(pr)}]"
        return f"dS2.reshape(T * B, {self.G}, n_a)[:, {pr.operand}_gates].reshape(T * B, -1)"

    @property
    def uniform(self) -> bool:
        """Every gate reads the same operands in the same order (the LSTM family): their weight gradients
        share one (G·n_a, width) array, each product writing its columns in place, each gate's a view."""
        return len({g.stage.inputs for g in self.gates}) == 1

    def after_loop(self) -> list[Line]:
        """Weight, bias and input gradients: one product over all steps each."""
        lines = []
        if self.uniform:
            width = self.s.weight_width(self.gates[0].stage)
            lines.append(Line(f"dW = np.empty(({self.GN}, {width}), dtype)", "every gate's ∂E/∂W_g, gate by gate"))
        for pr in self.products:
            rules = self.d.rules[self.gates[pr.start].stage.name]
            k = pr.operand
            D, Z = matrix_symbol(self._delta_all_steps(pr)), matrix_symbol(self._all_steps(pr))
            rule = rules.weight[k].xreplace({rules.D: D, rules.Z[k]: Z})
            comment = f"∂E/∂W_g^({uni(k)}) = Σ_t δsum_g<t>ᵀ {uni_time(k)}"
            if self.uniform and isinstance(rule, sp.MatMul) and len(rule.args) == 2:
                lhs, rhs = (self.printer.doprint(a) for a in rule.args)
                lo, hi = pr.columns[0]
                cols = f"{'' if lo == '0' else lo}:{'' if hi == width else hi}"
                lines.append(Line(f"np.matmul({lhs}, {rhs}, out=dW[:, {cols}])", comment))
                continue
            lines.append(Line(f"dW_{k} = {self.printer.doprint(rule)}", comment))
            if pr.count > 1:
                lines.append(Line(f"dW_{k}_by_gate = dW_{k}.reshape({pr.count}, n_a, {pr.size})"))
        if self.uniform:
            lines.append(Line(f"dW_by_gate = dW.reshape({self.G}, n_a, -1)"))
        if self.has_bias:
            rules = self.d.rules[self.gates[0].stage.name]
            code = self.printer.doprint(rules.bias.xreplace({rules.D: matrix_symbol("dS2")}))
            lines.append(Line(f"db = {code}", "∂E/∂b_g = Σ_t δsum_g<t>"))
        pr = self.input_product
        k = pr.operand
        rules = self.d.rules[self.gates[pr.start].stage.name]
        bind = {rules.D: matrix_symbol(self._delta_all_steps(pr)), rules.W[k]: matrix_symbol(f"W_{k}")}
        code = self.printer.doprint(rules.operand[k].xreplace(bind))
        comment = f"∂E/∂{k}<t> = Σ_g δsum_g<t>·∂sum_g<t>/∂{k}<t>, every t at once"
        lines.append(Line(f"d{k} = ({code}).reshape(T, B, n_x)", comment))
        return lines

    def weight_gradient(self, g: Gate) -> str:
        """∂E/∂W_g: the gate's block of each product's weight gradient, side by side in its columns' order."""
        if self.uniform:
            return f"dW_by_gate[{self.slice(g)}]"
        blocks = []
        for pr in self.s.products_of(g):
            if pr.count == 1:
                blocks.append(f"dW_{pr.operand}")
            else:
                at = self.slice(g) if pr.all_gates else str(pr.local(g.index))
                blocks.append(f"dW_{pr.operand}_by_gate[{at}]")
        return blocks[0] if len(blocks) == 1 else f"np.concatenate([{', '.join(blocks)}], axis=1)"

    # -- comments -----------------------------------------------------------------------------------
    def comment(self, v: str) -> str:
        """The derivation step a backward line implements, in the article's notation."""
        tl = Timeline(self.d)
        chain = tl.chain(self.d.chain[v])
        lhs = f"∂E/∂{uni_time(v)}" if (v in self.cell.leaves or self.d.graph.is_linear(v)) else f"δ{uni(v)}<t>"
        terms = sp.Add.make_args(chain) if chain.is_Add else [chain]
        # branches through linear stages are one fused product; say so instead of listing every gate
        linear = {f"{st.name}<t>" for st in self.d.graph.linear_consumers(v)}
        through = [
            t for t in terms if any(isinstance(f, Partial) and str(f.num) in linear for f in sp.Mul.make_args(t))
        ]
        shown = [CommentPrinter().doprint(t) for t in terms if t not in through]
        if len(through) > 2:
            shown.insert(0, f"{CommentPrinter().doprint(through[0])} + … ({len(through)} gates, fused)")
        else:
            shown[:0] = [CommentPrinter().doprint(t) for t in through]
        text = " + ".join(shown)
        fork = "  (fork: branches added)" if self.d.graph.is_fork(v) else ""
        return f"{lhs} = {text}{fork}"

    @property
    def recycled(self) -> list[str]:
        """Cache entries backward consumes (keep_cache=False) and the next forward may reuse."""
        names = ["gates"] + (["pre"] if self.keep_pre else [])
        return names + [f"{n}_seq" for n in self.aux.values()] + [f"{n}_seq" for n in self.stored_stages]

    @property
    def cache_keys(self) -> list[str]:
        keys = [self.s.input, *(f"W_{pr.operand}" for pr in self.products), *self.cell.vectors, "gates"]
        keys += ["pre"] if self.keep_pre else []
        keys += [f"{s}_seq" for s in self.cell.states]
        return keys + [f"{n}_seq" for n in self.aux.values()] + [f"{n}_seq" for n in self.stored_stages]

    # -- input checks ---------------------------------------------------------------------------------
    def gate_of_weight(self, weight: str) -> Linear:
        return next(st for st in self.cell.linear_stages if st.weight == weight)

    def gate_names(self, pr: Product) -> str:
        """The weights a product's block stacks, in gate order: ``W_f, W_u, W_o, W_c``."""
        return ", ".join(self.gates[i].stage.weight for i in pr.gates)

    @property
    def x_weight(self) -> tuple[str, str]:
        """A weight that reads the input, and its non-input columns as code (to name n_x in messages)."""
        g = self.gates[self.input_product.start]
        rest = [self.s.width_of(k) for k in g.stage.inputs if k not in self.cell.inputs]
        return g.stage.weight, (" + ".join(rest) or "0")


def _scratch_in(code: list[str]) -> list[str]:
    """The scratch buffers (tmp0, tmp1 …) these statements name; they are taken in order, so a prefix."""
    used = [s for s in SCRATCH if any(re.search(rf"\b{s}\b", c) for c in code)]
    return SCRATCH[: len(used)]


def render(cell: Cell, source_hash: str) -> str:
    """The fused gate-buffer module for ``cell``, as text (byte-stable)."""
    plan = KernelPlan(cell)
    env = template_env()
    env.filters["add_prefix"] = lambda s, prefix: prefix + s
    env.filters["prime_of"] = plan.prime_of
    forward_lines, backward_lines = plan.forward_lines(), plan.backward_lines()
    early = [ln for grp in plan.early_groups for ln in plan.activation_lines(grp)]
    forward_code = [ln.code for ln in (*early, *forward_lines)]
    context = {
        **api_context(plan, source_hash),
        "template": TEMPLATE,
        "gates": plan.gates,
        "inner": SIGMOID_INNER,
        "hoisted": plan.hoisted_lines(),
        "step_sums": plan.step_sums(),
        "early_activation": early,
        "forward_lines": forward_lines,
        "backward_lines": backward_lines,
        "after_loop": plan.after_loop(),
        "forward_scratch": _scratch_in(forward_code),
        "backward_scratch": _scratch_in([ln.code for ln in backward_lines]),
        "uni": uni,
        "uni_time": uni_time,
    }
    return env.get_template(TEMPLATE).render(**context)


def statements(cell: Cell) -> list[Line]:
    """Every statement the fused module prints from a stage (for the smoke run's attribution)."""
    kp = KernelPlan(cell)
    lines = [*kp.forward_lines(), *kp.backward_lines()]
    return lines + [ln for grp in kp.groups for ln in kp.activation_lines(grp)]
