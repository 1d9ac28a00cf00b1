"""The fused layout's forward pass: the input's product hoisted over all steps, each step's sums (one product per
operand over the gates that read it, regrouped gate by gate), each activation one ufunc call in place, the
stages after the gates, and what forward keeps for backward.
"""

from __future__ import annotations

import sympy as sp

from ....engine.notation import node
from ...lines import (
    Line,
    uni,
    uni_expr,
    uni_time,
    unpacking,
)
from ...printer_numpy import KernelPrinter, StageCode
from ...schedule import Gate, Group, Product
from .inplace import SCRATCH, inplace, inplace_lines, sigmoid_of_scaled
from .names import FusedNames


class ForwardLines:
    """The forward statements of one step (and the hoisted products and buffers before the loop), in the fused
    layout's ``names``, printed by ``printer`` (the kernel printer that prints the own names' symbols)."""

    def __init__(self, names: FusedNames, printer: KernelPrinter) -> None:
        self.names = names
        self.cell = names.cell
        self.s = names.s
        self.own = names.own
        self.printer = printer
        self.code = StageCode(printer)

    def hoisted_lines(self) -> list[Line]:
        """The first input's product for every step at once, into the row-major gate buffer (zeros elsewhere);
        every further input's product added to its gates' columns."""
        lines = self._first_input_lines()
        G = self.names.G
        for pr in self.s.input_products[1:]:
            k = pr.operand
            lhs = f"{k}.reshape(T * B, {self.cell.width(k)}) @ {self.own('W', k)}.T{self.names.fold_of(pr)}"
            comment = f"+ the {k}<t> product for every t in one product"
            rm = f"_gates.reshape(T * B, {self.names.GN})"
            if pr.all_gates:
                lines.append(Line(f"{rm}[:] += {lhs}", comment))
            elif pr.contiguous:
                lines.append(Line(f"{rm}[:, {self.names.rows(pr)}] += {lhs}", comment))
            else:
                by = f"_gates.reshape(T * B, {G}, n_a)"
                add = f"{by}[:, {self.names.gate_index(pr)}] += ({lhs}).reshape(T * B, {pr.count}, n_a)"
                lines.append(Line(add, comment))
        return lines

    def _first_input_lines(self) -> list[Line]:
        """The first input's product for every step at once, into the row-major gate buffer (zeros elsewhere)."""
        pr, G = self.s.input_product, self.names.G
        inp = pr.operand
        fold, W = self.names.fold_of(pr), self.own("W", inp)
        lhs = f"{inp}.reshape(T * B, {self.cell.width(inp)})"
        comment = f"the {inp}<t> half for every t in one product"
        if pr.all_gates:
            return [Line(f"np.matmul({lhs}, {W}.T{fold}, out=_gates.reshape(T * B, {self.names.GN}))", comment)]
        rm = f"_gates.reshape(T * B, {self.names.GN})"
        if pr.contiguous:
            lines = [Line(f"np.matmul({lhs}, {W}.T{fold}, out={rm}[:, {self.names.rows(pr)}])", comment)]
            if pr.start > 0:
                lines.append(Line(f"{rm}[:, :{pr.start} * n_a] = 0", f"gates that do not read {inp}<t>"))
            if pr.stop < G:
                lines.append(Line(f"{rm}[:, {pr.stop} * n_a:] = 0", f"gates that do not read {inp}<t>"))
            return lines
        others = [i for i in range(G) if i not in pr.gates]
        by = f"_gates.reshape(T * B, {G}, n_a)"
        return [
            Line(
                f"{by}[:, {self.names.gate_index(pr)}] = ({lhs} @ {W}.T{fold}).reshape(T * B, {pr.count}, n_a)", comment
            ),
            Line(f"{by}[:, {others}] = 0", f"gates that do not read {inp}<t>"),
        ]

    def scratch(self, pr: Product) -> str:
        return "_SW" if pr.all_gates else self.own("SW", pr.operand)

    @property
    def full_product_first(self) -> bool:
        """One state product over every gate, and the input product over every gate too: the state's product
        writes the step's row-major sums (out=) and the input half is added."""
        states = self.s.state_products
        return len(states) == 1 and states[0].all_gates and self.s.input_product.all_gates

    def loop_buffers(self, scratch: list[str]) -> list[Line]:
        """What the time loop writes into, made once per call: the bias (added to the hoisted product, or as each
        step's sums are regrouped), the step blocks, the transposed weights of each recurrent product and its
        scratch, the row-major sums and the in-place ufuncs' ``scratch``."""
        G, fold = len(self.s.gates), " * _fold" if self.s.folds else ""
        lines: list[Line] = []
        if self.s.has_bias and self.names.regroup:
            comment = "+ b_g as each step's sums are regrouped (no pass of its own)"
            lines.append(Line(f"_b_by_gate = (_b_gates{fold}).reshape({G}, 1, n_a)", comment))
        elif self.s.has_bias:
            lines.append(Line(f"_gates += _b_gates{fold}"))
        lines.append(
            Line(
                f"_by_gate = _gates.reshape(T, {G}, B, n_a)",
                "step t's block, gate by gate (written once its sums are in)",
            )
        )
        if self.names.keep_pre:
            lines.append(Line('_pre = _buffer("_pre", _by_gate.shape, _dtype)', "pre-activations, read by backward"))
        for pr in self.names.recurrent_products:
            k, width = pr.operand, self.names.width(pr).replace(" * ", " ")
            comment = f"(n_a, {width}): W_g^({uni(k)})ᵀ of the gates that read {uni_time(k)}, contiguous for BLAS"
            code = f"{self.own('WT', k)} = np.ascontiguousarray({self.own('W', k)}.T){self.names.fold_of(pr)}"
            lines.append(Line(code, comment))
        for pr in self.names.recurrent_products:
            then = ", then the step's sums" if pr.all_gates and self.full_product_first else ""
            comment = f"scratch: the {uni_time(pr.operand)} product{then}"
            lines.append(Line(f"{self.scratch(pr)} = np.empty((B, {self.names.width(pr)}), _dtype)", comment))
        if self.names.regroup:
            if not self.full_product_first:
                comment = "the step's sums, row-major as the products give them"
                lines.append(Line(f"_SX = np.empty((B, {self.names.GN}), _dtype)", comment))
            sums = self.sums_name
            lines.append(Line(f"{sums}_by_gate = {sums}.reshape(B, {G}, n_a).transpose(1, 0, 2)"))
        if scratch:
            names = unpacking(scratch)
            code = f"{names} = (np.empty((B, n_a), _dtype) for _ in range({len(scratch)}))"
            lines.append(Line(code, "scratch for in-place ufuncs"))
        return lines

    def step_sums(self) -> list[Line]:
        """The step's sums: the hoisted input half plus each previous state's product, row-major, then
        regrouped gate by gate (+ b) into the step's block ``_S``; one gate needs no regrouping."""
        lines: list[Line] = []
        inp = self.s.input

        def guard(pr: Product) -> str:
            s = self.cell.state_of_prev(pr.operand)
            return f"t > 0 or {s}0 is not None  # (nothing to add at t = 1 when {s}<0> = 0)"

        def product(pr: Product, out: str) -> Line:
            s = self.cell.state_of_prev(pr.operand)
            comment = f"W_g^({uni(pr.operand)}) {uni_time(pr.operand)}"
            code = f"np.matmul({self.names.seq(s)}[t], {self.own('WT', pr.operand)}, out={out})"
            return Line(code, comment, guard=guard(pr))

        if not self.names.regroup:
            lines.append(Line("_S = _by_gate[t]"))
            for pr in self.s.state_products:
                lines.append(product(pr, self.scratch(pr)))
                lines.append(Line(f"_S[0] += {self.scratch(pr)}", guard=guard(pr)))
            return lines
        if self.full_product_first:
            pr = self.s.state_products[0]
            lines.append(product(pr, "_SW"))
            lines.append(Line("_SW += _gates[t]", f"+ the {inp}<t> half", guard=guard(pr)))
            lines.append(Line("np.copyto(_SW, _gates[t])", guard="else"))
            sums = "_SW"
        else:
            lines.append(Line("np.copyto(_SX, _gates[t])", f"the {inp}<t> half"))
            for pr in self.s.state_products:
                lines.append(product(pr, self.scratch(pr)))
                if pr.contiguous:
                    add = f"_SX[:, {self.names.rows(pr)}] += {self.scratch(pr)}"
                else:
                    add = f"_SX_by_gate[{self.names.gate_index(pr)}] += {self.names.by_gate(pr, self.scratch(pr))}"
                lines.append(Line(add, guard=guard(pr)))
            sums = "_SX"
        lines.append(Line("_S = _by_gate[t]"))
        if self.s.has_bias:
            lines.append(
                Line(
                    f"np.add({sums}_by_gate, _b_by_gate, out=_S)",
                    "the sums + b_g, gate by gate: each gate's (B, n_a) block contiguous",
                )
            )
        else:
            lines.append(
                Line(f"np.copyto(_S, {sums}_by_gate)", "the sums gate by gate: each gate's (B, n_a) block contiguous")
            )
        return lines

    @property
    def sums_name(self) -> str:
        return "_SW" if self.full_product_first else "_SX"

    def activation_lines(self, grp: Group) -> list[Line]:
        """One activation run in place on its view of the block (its pre-activations stored first if read)."""
        view, index = self.own("S", grp), self.names.group_slice(grp)
        members = self.s.gates[grp.start : grp.stop]
        values, sums = ", ".join(uni(g.value) for g in members), ", ".join(uni(g.stage.name) for g in members)
        comment = f"{values} = {grp.function}({sums})"
        lines = [Line(f"{view} = _S[{index}]", f"{comment}, in place")]
        if grp.keeps_pre:
            lines.append(Line(f"np.copyto(_pre[t, {index}], {view})", "pre-activations, read by backward"))
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
                    one = self.own("S_gate", grp, m)
                    code.append(f"{one} = _S[{self.names.slice(m)}]")
                    code += inplace(expr.xreplace({sp.Symbol(view): sp.Symbol(one)}), one, SCRATCH, self.printer)
        stage = members[0].value
        return lines + [Line(c, stage=stage) for c in code]

    def gate_aliases(self, gates: list[Gate]) -> Line:
        values = ", ".join(g.value for g in gates)
        views = ", ".join(f"_S[{self.names.slice(g)}]" for g in gates)
        return Line(f"{values} = {views}")

    def forward_lines(self) -> list[Line]:
        """Elementwise stages not fused into the block, in order, writing into their buffers."""
        in_block = {g.act.name for g in self.s.gates if g.act is not None}
        lines: list[Line] = []
        for g in self.names.early_gates:  # a gate complete at the step's start that a later product reads
            lines += self._late_lines(g.value)
        written_aux: set[sp.Expr] = set()
        for st in self.cell.stages:
            if not st.expressions or st.name in in_block:  # products are the block's; so are its activations
                continue
            for f, name in self.s.aux.items():
                if f in st.expr.atoms(sp.Function) and f not in written_aux:
                    lines += self._aux_lines(f, name)
                    written_aux.add(f)
            rewritten = st.map_expressions(lambda e: e.xreplace(self.s.aux_names()))  # tanh(c) read as _tanh_c
            expr = rewritten.expr
            comment = f"{uni(st.name)}<t> = {self.names.stage_text(st)}"
            if st.name in self.cell.scalars:  # one number per row: a small (B, 1) array, allocated
                code = rewritten.compose(self.code)
                lines.append(Line(f"{st.name} = {code}", comment, stage=st.name))
                if st.name in self.s.stored_stages:
                    lines.append(Line(f"{self.names.seq(st.name)}[t] = {st.name}"))
            elif st.name in self.cell.states:
                lines.append(Line(f"{st.name} = {self.names.seq(st.name)}[t + 1]"))
                lines += inplace_lines(expr, st.name, comment, self.printer)
            elif st.name in self.s.stored_stages:
                lines.append(Line(f"{st.name} = {self.names.seq(st.name)}[t]"))
                lines += inplace_lines(expr, st.name, comment, self.printer)
            else:
                lines.append(Line(f"{st.name} = {self.printer.doprint(expr)}", comment, stage=st.name))
            # an auxiliary of this stage's output (tanh(c) after c) is computed right after it
            for f, name in self.s.aux.items():
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
        if k in self.s.stored_stages and k in {g.value for g in self.s.gates}:
            lines.append(Line(f"np.copyto({self.names.seq(k)}[t], {k})", f"{uni(k)}<t>, kept for the weight gradient"))
        for pr in self.s.inner_products(k):
            names = ", ".join(uni(self.s.gates[i].stage.name) for i in pr.gates)
            code = f"np.matmul({k}, {self.own('WT', k)}, out={self.scratch(pr)})"
            lines.append(Line(code, f"{names} += W^({uni(k)}) {uni_time(k)}"))
            lines.append(Line(f"_S[{self.names.gate_index(pr)}] += {self.names.by_gate(pr, self.scratch(pr))}"))
        for grp in self.s.groups:
            if grp.phase == k:
                lines += self.activation_lines(grp)
        done = [g for g in self.s.gates if g.phase == k]
        if done:
            lines.append(self.gate_aliases(done))
        for g in done:
            lines += self._late_lines(g.value)
        return lines

    def _aux_lines(self, f: sp.Expr, name: str) -> list[Line]:
        """Compute an auxiliary (tanh(c<t>) …) into its buffer."""
        comment = f"{uni_expr(f, self.cell.vectors)}, stored for backward"
        return [Line(f"{name} = {self.own('aux_seq', f)}[t]"), *inplace_lines(f, name, comment, self.printer)]
