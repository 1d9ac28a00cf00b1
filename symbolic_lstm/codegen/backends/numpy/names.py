"""The fused layout's names: the gate buffer's slices and index variables, the module's docstrings, the weights'
column blocks, the comments that quote the derivation, the cache's keys.

Every name the fused kernels give a buffer, a slice or a scratch begins with ``_`` (:class:`~symbolic_lstm.codegen.
lines.OwnNames`): ``_S``, ``_gates``, ``_f_``, ``_W_x``, ``_c_seq``, ``_tmp0``; a cell's names never do.
"""

from __future__ import annotations

import sympy as sp

from ....engine.cell import Cell
from ....engine.notation import Partial
from ....engine.stages import Linear, Stage
from ....engine.timeline import Timeline
from ...lines import (
    CommentPrinter,
    OwnNames,
    stage_text,
    uni,
    uni_time,
)
from ...printer_numpy import KernelPrinter
from ...schedule import Gate, Group, Product, Schedule

#: What every product over an operand is called by (its weight, transposed weight, scratch, δsum, weight gradient,
#: its columns and gates of the gate buffer): registered for every operand.
PRODUCT_NAMES = ("W", "WT", "SW", "dSr", "dW", "dW_by_gate", "rows", "gates")


class OwnPrinter(KernelPrinter):
    """The kernel printer, printing the symbols that stand for the kernels' own names (:meth:`~symbolic_lstm.
    codegen.lines.OwnNames.symbol`) as those names."""

    def __init__(self, own: OwnNames) -> None:
        super().__init__()
        self._printed = own.printed

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        return self._printed.get(expr.name) or super()._print_Symbol(expr)


class FusedNames:
    """What the fused kernels call things (see the module docstring), for one cell and its schedule ``s``: every
    own name the fused module prints is registered here, once, in one order, when the names are made.

    The statements that use these names are :class:`~.forward.ForwardLines` and :class:`~.backward.BackwardLines`,
    each given the names.
    """

    def __init__(self, cell: Cell, s: Schedule) -> None:
        self.cell = cell
        self.s = s
        self.d = s.d
        #: The kernels' own names (``_c_seq``, ``_W_x`` …): the schedule's, with the fused module's registered.
        self.own: OwnNames = s.own
        self._register_names()

    def _register_names(self) -> None:
        """Register every own name the fused module prints that stands for something of the cell, in one order."""
        own = self.own
        for g in self.s.gates:
            own.add("gate", g, text=f"{g.short}_")
        for grp in self.s.groups:
            own.add("group", grp, text=f"{grp.name}_")
            own.add("S", grp, text=f"S_{grp.name}")
            own.add("S_prime", grp, text=f"S_{grp.name}_prime")
            for m in self.s.gates[grp.start : grp.stop]:
                own.add("S_gate", grp, m, text=f"S_{grp.name}_{m.short}")
        for pr in self.s.products:
            for form in PRODUCT_NAMES:
                own.add(form, pr.operand)
        for n in (*self.cell.states, *self.s.stored_stages):
            own.add("seq", n)
        for g in self.s.gates:
            own.add("prime", g.value)
            own.symbol("prime", g.value)
        for v in self.cell.vectors:
            own.add("grad", v)
        for i in self.cell.inputs:
            own.add("d", i)

    def seq(self, name: str) -> str:
        """The per-step buffer of a state or stored stage (``_c_seq``)."""
        return self.own("seq", name)

    @property
    def aux_buffers(self) -> list[tuple[str, str]]:
        """(name, buffer) of every function value forward stores for backward: (``_tanh_c``, ``_tanh_c_seq``)."""
        return [(name, self.own("aux_seq", f)) for f, name in self.s.aux.items()]

    # -- names --------------------------------------------------------------------------------------
    def slice(self, g: Gate) -> str:
        """The gate's index variable in a step's gate-major block (G, B, n_a): ``_f_``."""
        return self.own("gate", g)

    def group_slice(self, grp: Group) -> str:
        """The activation run's index (or slice) variable in a step's gate-major block: ``_sigmoid_``."""
        return self.own("group", grp)

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

    @property
    def recurrent_products(self) -> list[Product]:
        """Products taken inside the loop (previous states and inner nodes): their forward weights and scratch."""
        return [pr for pr in self.s.products if pr.kind != "input"]

    def gate_index(self, pr: Product) -> str:
        """The gates a product feeds, indexing the gate-major block: one gate's name, or a range / list."""
        if pr.count == 1:
            return self.slice(self.s.gates[pr.start])
        return self.own("gates", pr.operand)

    def rows(self, pr: Product) -> str:
        """The product's columns of a row-major (…, G·n_a) array: ``:`` for every gate, else ``_op_rows``."""
        return ":" if pr.all_gates else self.own("rows", pr.operand)

    def width(self, pr: Product) -> str:
        """The product's gates' columns as code: ``n_a`` or ``3 * n_a``."""
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
            rows, gates = self.own("rows", pr.operand), self.own("gates", pr.operand)
            if pr.contiguous:
                code.append(f"{rows} = slice({pr.start} * n_a, {pr.stop} * n_a)")
                if pr.count > 1:
                    code.append(f"{gates} = slice({pr.start}, {pr.stop})")
            else:
                code.append(f"{gates} = [{', '.join(map(str, pr.gates))}]  # not adjacent in any gate order")
        return "\n    ".join(code)

    @property
    def group_slice_code(self) -> str:
        """Slices of the gate block, one per activation run (forward applies each in place); "" if none."""
        if not self.s.groups:
            return ""
        comma = "," if len(self.s.groups) == 1 else ""
        names = ", ".join(self.group_slice(grp) for grp in self.s.groups)
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
        inputs = " + ".join(self.cell.input_widths.values())
        return f"about ({inputs} + {n_a}·n_a)·T·B"

    def stage_text(self, st: Stage) -> str:
        return stage_text(st, self.cell.vectors)

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
                parts.append(f'_arrays["{st.weight}"]')
            else:
                lo = "" if start == "0" else start
                hi = "" if stop == self.s.weight_width(st) else stop
                parts.append(f'_arrays["{st.weight}"][:, {lo}:{hi}]')
        return f"np.concatenate([{', '.join(parts)}])"

    def fold_of(self, pr: Product) -> str:
        """`` * _fold`` (or its rows) for a product's forward weights when they include folded σ columns."""
        if not any(grp.start < pr.stop and pr.start < grp.stop for grp in self.s.folds):
            return ""
        if pr.all_gates:
            return " * _fold"
        if pr.contiguous:
            return f" * _fold[{self.own('rows', pr.operand)}]"
        return f" * _fold.reshape({self.G}, n_a)[{self.own('gates', pr.operand)}].reshape(-1)"

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
        """Cache entries backward consumes (keep_cache=False) and the next forward may reuse (keyed by the names of
        their buffers: the cell's names key its own entries, so no two keys meet)."""
        names = ["_gates"] + (["_pre"] if self.keep_pre else [])
        return names + [seq for _, seq in self.aux_buffers] + [self.seq(n) for n in self.s.stored_stages]

    @property
    def cache_keys(self) -> list[str]:
        keys = [*self.cell.inputs, *(self.own("W", pr.operand) for pr in self.s.products), *self.cell.vectors]
        keys += ["_gates"]
        keys += ["_pre"] if self.keep_pre else []
        keys += [self.seq(s) for s in self.cell.states]
        return keys + [seq for _, seq in self.aux_buffers] + [self.seq(n) for n in self.s.stored_stages]

    # -- input checks ---------------------------------------------------------------------------------
    def gate_of_weight(self, weight: str) -> Linear:
        return next(st for st in self.cell.linear_stages if st.weight == weight)

    def gate_names(self, pr: Product) -> str:
        """The weights a product's block stacks, in gate order: ``W_f, W_u, W_o, W_c``."""
        return ", ".join(self.s.gates[i].stage.weight for i in pr.gates)

    @property
    def x_weight(self) -> tuple[str, str]:
        """A weight that reads the first input, and its other columns as code (to name n_x in messages)."""
        return self.input_weights[0][1:]

    @property
    def input_weights(self) -> list[tuple[str, str, str]]:
        """For every input: (the input, a weight that reads it, that weight's other columns as code) — to name the
        input's width in messages."""
        out = []
        for pr in self.s.input_products:
            g = self.s.gates[pr.start]
            rest = [self.s.width_of(k) for k in g.stage.inputs if k != pr.operand]
            out.append((pr.operand, g.stage.weight, " + ".join(rest) or "0"))
        return out
