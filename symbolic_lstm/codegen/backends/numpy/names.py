"""The fused layout's names: the gate buffer's slices and index variables, the module's docstrings, the weights'
column blocks, the comments that quote the derivation, the cache's keys — and the names a cell may not take.
"""

from __future__ import annotations

import sympy as sp

from ....cell import Elementwise, Linear, Reduce
from ....notation import Partial
from ....printer_numpy import KernelPrinter
from ....timeline import Timeline
from ...lines import (
    CodegenError,
    CommentPrinter,
    check_names,
    uni,
    uni_expr,
    uni_time,
)
from ...schedule import Gate, Group, Product, Schedule
from .api import LossCode

#: Names of the (B, n_a) scratch buffers in-place statements may use.
SCRATCH = [f"tmp{i}" for i in range(8)]
RESERVED = {
    "np", "x", "p", "t", "T", "B", "n_a", "n_x", "S", "SW", "SX", "dS", "dSr", "dS2", "b_gates", "cache", "gates",
    "dgates", "fold", "by_gate", "pre", "dtype", "b_by_gate", "keep_cache", "check_finite", "db", "db_by_gate",
    "SW_by_gate", "SX_by_gate", "dSr_by_gate", "dW", "dW_by_gate",
}  # fmt: skip
#: Prefixes of the generated code's own variables (δ buffers, gradients, per-product weights and scratch).
RESERVED_PREFIXES = ("delta_", "grad_", "S_", "W_", "WT_", "SW_", "dW_", "dSr_")


class FusedNames(LossCode):
    """What the fused kernels call things (see the module docstring); the statements are :class:`~.forward.
    ForwardLines` and :class:`~.backward.BackwardLines`."""

    s: Schedule
    printer: KernelPrinter

    def _check_names(self) -> None:
        """No node or unit parameter may share a name with a variable of the generated code."""
        ours = set(RESERVED) | set(SCRATCH)
        ours |= {self.slice(g) for g in self.s.gates} | {f"{grp.name}_" for grp in self.s.groups}
        for pr in self.s.products:
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
        return len(self.s.gates)

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
            return self.slice(self.s.gates[pr.start])
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
        names = ", ".join(self.slice(g) for g in self.s.gates)
        code = [f"{names} = range({self.G})" if self.G > 1 else f"{names} = 0"]
        for pr in self.s.products:
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
        if not self.s.groups:
            return ""
        comma = "," if len(self.s.groups) == 1 else ""
        names = ", ".join(f"{grp.name}_" for grp in self.s.groups)
        slices = ", ".join(  # one gate: its index, so the view is that gate's (B, n_a) block
            str(grp.start) if grp.stop - grp.start == 1 else f"slice({grp.start}, {grp.stop})" for grp in self.s.groups
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
        return any(grp.keeps_pre for grp in self.s.groups)

    @property
    def cache_doc(self) -> str:
        """Size of the forward cache per step and batch row, in words for the docstring."""
        n_a = self.G * (2 if self.keep_pre else 1) + len(self.s.aux) + len(self.s.stored_stages) + len(self.cell.states)
        return f"about (n_x + {n_a}·n_a)·T·B"

    def stage_text(self, st: Elementwise | Reduce) -> str:
        text = uni_expr(st.expr, self.cell.vectors)
        return f"mean_i({text})" if isinstance(st, Reduce) else text

    def seq_width(self, name: str) -> str:
        """Columns of a stored node's per-step buffer: 1 for a row scalar, n_a otherwise."""
        return "1" if name in self.cell.scalars else "n_a"

    @property
    def early_groups(self) -> list[Group]:
        return [grp for grp in self.s.groups if grp.phase is None]

    @property
    def early_gates(self) -> list[Gate]:
        return [g for g in self.s.gates if g.phase is None]

    # -- weights ------------------------------------------------------------------------------------
    def block_code(self, pr: Product) -> str:
        """The product's weight (k·n_a, size): the operand's columns of each gate's W, stacked (a copy)."""
        parts = []
        for gi, (start, stop) in zip(pr.gates, pr.columns, strict=True):
            st = self.s.gates[gi].stage
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
        return names + [f"{n}_seq" for n in self.s.aux.values()] + [f"{n}_seq" for n in self.s.stored_stages]

    @property
    def cache_keys(self) -> list[str]:
        keys = [self.s.input, *(f"W_{pr.operand}" for pr in self.s.products), *self.cell.vectors, "gates"]
        keys += ["pre"] if self.keep_pre else []
        keys += [f"{s}_seq" for s in self.cell.states]
        return keys + [f"{n}_seq" for n in self.s.aux.values()] + [f"{n}_seq" for n in self.s.stored_stages]

    # -- input checks ---------------------------------------------------------------------------------
    def gate_of_weight(self, weight: str) -> Linear:
        return next(st for st in self.cell.linear_stages if st.weight == weight)

    def gate_names(self, pr: Product) -> str:
        """The weights a product's block stacks, in gate order: ``W_f, W_u, W_o, W_c``."""
        return ", ".join(self.s.gates[i].stage.weight for i in pr.gates)

    @property
    def x_weight(self) -> tuple[str, str]:
        """A weight that reads the input, and its non-input columns as code (to name n_x in messages)."""
        g = self.s.gates[self.s.input_product.start]
        rest = [self.s.width_of(k) for k in g.stage.inputs if k not in self.cell.inputs]
        return g.stage.weight, (" + ".join(rest) or "0")
