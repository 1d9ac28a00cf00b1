"""The fused layout's backward pass: the schedule's δ statements printed in place (σ' from the stored gate, forks
added), the products back through the linear stages grouped by operand, and every weight gradient as one product
per operand over all steps after the loop.
"""

from __future__ import annotations

from functools import cached_property

import sympy as sp

from ...lines import (
    CodegenError,
    Line,
    matrix_symbol,
    uni,
    uni_time,
)
from ...printer_numpy import KernelPrinter
from ...schedule import Gate, Group, Product
from .inplace import inplace_lines
from .names import FusedNames


class BackwardLines:
    """The backward statements of one step, and the weight gradients after the loop, in the fused layout's
    ``names``, printed by ``printer`` (the kernel printer that prints the own names' symbols)."""

    def __init__(self, names: FusedNames, printer: KernelPrinter) -> None:
        self.names = names
        self.cell = names.cell
        self.s = names.s
        self.d = names.d
        self.own = names.own
        self.printer = printer

    # -- backward -----------------------------------------------------------------------------------
    @cached_property
    def sigmoid_primes(self) -> list[Group]:
        """σ runs of two or more gates: backward takes σ'(sum_g) = Γ_g(1 − Γ_g) for all of them in two
        passes over the run's columns, where each gate's δ would otherwise take two of its own."""
        return [grp for grp in self.s.groups if grp.function == "sigmoid" and grp.stop - grp.start > 1]

    def prime_of(self, g: Gate) -> str:
        """Name of the (B, n_a) view holding σ'(sum_g) = Γ_g(1 − Γ_g) during a backward step: ``_Gamma_f_prime``."""
        return self.own("prime", g.value)

    def _with_sigmoid_primes(self, value: sp.Expr) -> sp.Expr:
        for grp in self.sigmoid_primes:
            for g in self.s.gates[grp.start : grp.stop]:
                G = sp.Symbol(g.value)
                value = value.subs(G * (1 - G), self.own.symbol("prime", g.value))
        return value

    @property
    def full_copy(self) -> bool:
        """Whether a step's backward copies all of _dS to the row-major _dSr (for a product over every gate)."""
        return self.names.regroup and any(pr.all_gates for pr in self.names.recurrent_products)

    @property
    def split_products(self) -> list[Product]:
        """Recurrent products whose gates are not adjacent: their δsum gets a row-major scratch of its own."""
        return [pr for pr in self.names.recurrent_products if not pr.contiguous]

    def _delta_in(self, pr: Product) -> tuple[str, list[Line]]:
        """The row-major δsum (B, k·n_a) of the product's gates, and the copies that make it."""
        if pr.count == 1:  # one gate: its block of _dS, contiguous
            return f"_dS[{self.names.gate_index(pr)}]", []
        if pr.all_gates:  # every gate: the row-major copy of _dS that BLAS reads as one (B, G·n_a) matrix
            return "_dSr", [Line("np.copyto(_dSr_by_gate, _dS)", "δsum_g<t> into the row-major _dSr")]
        idx = self.names.gate_index(pr)
        if pr.contiguous:
            return f"_dSr[:, {self.names.rows(pr)}]", [Line(f"np.copyto(_dSr_by_gate[{idx}], _dS[{idx}])")]
        dsr = self.own("dSr", pr.operand)
        view = f"{dsr}.reshape(B, {pr.count}, n_a).transpose(1, 0, 2)"
        return dsr, [Line(f"np.copyto({view}, _dS[{idx}])")]

    def backward_lines(self) -> list[Line]:
        d, lines = self.d, []
        aux = self.s.aux_names()
        for delta in self.s.deltas():
            v = delta.node
            value = self._with_sigmoid_primes(delta.value.xreplace(aux))
            comment = self.names.comment(v)
            target_var = delta.target
            if delta.products:
                (pr,) = delta.products
                D, copies = self._delta_in(pr)
                lines += copies
                rules = d.rules[self.s.gates[pr.start].stage.name]
                W = matrix_symbol(self.own("W", v))
                rule = rules.operand[v].xreplace({rules.D: matrix_symbol(D), rules.W[v]: W})
                if not isinstance(rule, sp.MatMul) or len(rule.args) != 2:
                    raise CodegenError(f"cell {self.cell.name!r}: unexpected reverse rule {rule} for {v!r}")
                lhs, rhs = (self.printer.doprint(a) for a in rule.args)
                if value == 0:
                    lines.append(Line(f"np.matmul({lhs}, {rhs}, out={target_var})", comment, stage=v))
                else:
                    lines += inplace_lines(value, target_var, comment, self.printer)
                    lines.append(Line(f"{target_var} += {lhs} @ {rhs}", stage=v))
            elif v in self.cell.scalars:  # δ of a row scalar: a (B, 1) array
                lines.append(Line(f"{target_var} = {self.printer.doprint(value)}", comment, stage=v))
            else:
                lines += inplace_lines(value, target_var, comment, self.printer)
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
        if not self.names.regroup:
            return "_dgates[t] = _dS[0]"
        if self.full_copy:
            return "_dgates[t] = _dSr"
        return f"np.copyto(_dgates[t].reshape(B, {self.names.G}, n_a).transpose(1, 0, 2), _dS)"

    def _all_steps(self, pr: Product) -> str:
        """The product's operand for every step, stacked as (T·B, size)."""
        k = pr.operand
        state = self.cell.state_of_prev(k)
        if state:
            return f"{self.names.seq(state)}[:-1].reshape(T * B, n_a)"
        if pr.kind == "input":
            return f"{k}.reshape(T * B, {self.cell.width(k)})"
        if k in self.cell.states:  # a state read after its update in the same step: steps 1 … T
            return f"{self.names.seq(k)}[1:].reshape(T * B, n_a)"
        return f"{self.names.seq(k)}.reshape(T * B, n_a)"

    def _delta_all_steps(self, pr: Product) -> str:
        if pr.all_gates:
            return "_dS2"
        if pr.contiguous:
            return f"_dS2[:, {self.names.rows(pr)}]"
        return f"_dS2.reshape(T * B, {self.names.G}, n_a)[:, {self.names.gate_index(pr)}].reshape(T * B, -1)"

    @property
    def uniform(self) -> bool:
        """Every gate reads the same operands in the same order (the LSTM family): their weight gradients
        share one (G·n_a, width) array, each product writing its columns in place, each gate's a view."""
        return len({g.stage.inputs for g in self.s.gates}) == 1

    def after_loop(self) -> list[Line]:
        """Weight, bias and input gradients (every input's): one product over all steps each."""
        lines = []
        if self.uniform:
            width = self.s.weight_width(self.s.gates[0].stage)
            lines.append(
                Line(f"_dW = np.empty(({self.names.GN}, {width}), _dtype)", "every gate's ∂E/∂W_g, gate by gate")
            )
        for pr in self.s.products:
            rules = self.d.rules[self.s.gates[pr.start].stage.name]
            k = pr.operand
            D, Z = matrix_symbol(self._delta_all_steps(pr)), matrix_symbol(self._all_steps(pr))
            rule = rules.weight[k].xreplace({rules.D: D, rules.Z[k]: Z})
            comment = f"∂E/∂W_g^({uni(k)}) = Σ_t δsum_g<t>ᵀ {uni_time(k)}"
            if self.uniform and isinstance(rule, sp.MatMul) and len(rule.args) == 2:
                lhs, rhs = (self.printer.doprint(a) for a in rule.args)
                lo, hi = pr.columns[0]
                cols = f"{'' if lo == '0' else lo}:{'' if hi == width else hi}"
                lines.append(Line(f"np.matmul({lhs}, {rhs}, out=_dW[:, {cols}])", comment))
                continue
            dW = self.own("dW", k)
            lines.append(Line(f"{dW} = {self.printer.doprint(rule)}", comment))
            if pr.count > 1:
                lines.append(Line(f"{self.own('dW_by_gate', k)} = {dW}.reshape({pr.count}, n_a, {pr.size})"))
        if self.uniform:
            lines.append(Line(f"_dW_by_gate = _dW.reshape({self.names.G}, n_a, -1)"))
        if self.s.has_bias:
            rules = self.d.rules[self.s.gates[0].stage.name]
            code = self.printer.doprint(rules.bias.xreplace({rules.D: matrix_symbol("_dS2")}))
            lines.append(Line(f"_db = {code}", "∂E/∂b_g = Σ_t δsum_g<t>"))
        for pr in self.s.input_products:
            k = pr.operand
            rules = self.d.rules[self.s.gates[pr.start].stage.name]
            bind = {rules.D: matrix_symbol(self._delta_all_steps(pr)), rules.W[k]: matrix_symbol(self.own("W", k))}
            code = self.printer.doprint(rules.operand[k].xreplace(bind))
            comment = f"∂E/∂{k}<t> = Σ_g δsum_g<t>·∂sum_g<t>/∂{k}<t>, every t at once"
            lines.append(Line(f"{self.own('d', k)} = ({code}).reshape(T, B, {self.cell.width(k)})", comment))
        return lines

    def weight_gradient(self, g: Gate) -> str:
        """∂E/∂W_g: the gate's block of each product's weight gradient, side by side in its columns' order."""
        if self.uniform:
            return f"_dW_by_gate[{self.names.slice(g)}]"
        blocks = []
        for pr in self.s.products_of(g):
            if pr.count == 1:
                blocks.append(self.own("dW", pr.operand))
            else:
                at = self.names.slice(g) if pr.all_gates else str(pr.local(g.index))
                blocks.append(f"{self.own('dW_by_gate', pr.operand)}[{at}]")
        return blocks[0] if len(blocks) == 1 else f"np.concatenate([{', '.join(blocks)}], axis=1)"
