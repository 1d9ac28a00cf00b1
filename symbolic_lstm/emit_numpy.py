"""Stage 4b: vectorised NumPy kernels, printed from the derivation into a Jinja2 template.

What comes from the engine, printed by :class:`~symbolic_lstm.printer_numpy.KernelPrinter`: every
forward stage, every δ of the backward pass (forks, seeds, the gradient from the next step), the
reverse rules of the linear stages (matrix calculus), the loss and its derivative.  What the template
adds is structure only: loops over time, buffers, shapes, docstrings.  The plan also makes the kernel
fast without changing any math:

* all linear stages over the same inputs become one fused block ``S = [a<t-1>, x<t>] Wᵀ + b`` whose
  columns are ordered by activation (the sigmoid gates first), so each activation is one ufunc call
  over one slice, applied in place — the pre-activations are not kept unless backward reads them;
* the input half of the block product is hoisted out of the time loop (one product for all steps);
  the t = 0 recurrent product is skipped when the initial state is zero;
* weight gradients are one product over all steps after the loop; so is ∂E/∂x;
* the forward cache holds exactly what backward reads (the engine says which), plus function
  values backward needs again, such as tanh(c<t>), computed once.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import jinja2
import sympy as sp

from . import __version__
from .cell import Cell, Elementwise, Linear, Reduce
from .derivation import StepDerivation, derive
from .emit_latex import Timeline
from .heads import linear_mse, softmax_ce
from .notation import ERROR, Partial, future, node, target
from .paths import PACKAGE_DIR, templates_dir
from .printer_inplace import SIGMOID_INNER, inplace, sigmoid_of_scaled
from .printer_numpy import KernelPrinter

TEMPLATE = "numpy/cell_module.py.j2"
#: Names of the (B, n_a) scratch buffers in-place statements may use.
SCRATCH = [f"tmp{i}" for i in range(8)]
RESERVED = {"np", "x", "p", "t", "T", "B", "n_a", "n_x", "S", "SW", "dS", "W", "b", "cache", "gates", "dgates", "grads"}


class CodegenError(ValueError):
    """The cell uses a structure the NumPy kernel template does not support (message says which)."""


@dataclass(frozen=True)
class Gate:
    """One linear stage of the fused block, and the activation applied to it in place (if any)."""

    stage: Linear
    act: Elementwise | None
    index: int
    late: str | None = None  # the inner node this gate's product waits for (GRU's r·a<t-1>); None: none

    @property
    def value(self) -> str:
        """The node that lives in this block column after activation."""
        return self.act.name if self.act is not None else self.stage.name

    @property
    def slice(self) -> str:
        w = self.stage.weight
        return (w[2:] if w.startswith("W_") else self.stage.name) + "_"

    @property
    def function(self) -> str:
        return type(self.act.expr).__name__ if self.act is not None else "identity"


@dataclass(frozen=True)
class Group:
    """Consecutive block columns sharing one activation, applied as one ufunc call."""

    function: str
    start: int
    stop: int
    lines: tuple[str, ...]
    comment: str
    late: str | None = None  # activated once this inner node's product is in (None: at the start of the step)
    folded: bool = False  # σ whose inner ½ is in the forward copies of W and b (``KernelPlan.folds``)

    @property
    def slice(self) -> str:
        return f"{self.function}_" if self.late is None else f"{self.function}_{self.late}_"

    @property
    def view(self) -> str:
        """Local name of the block columns this group activates in place."""
        return f"S_{self.function}" if self.late is None else f"S_{self.function}_{self.late}"


@dataclass(frozen=True)
class Product:
    """The recurrent matrix product of one operand with the W columns of the gates that read it."""

    operand: str  # a previous state (a_prev) or an inner node (ra)
    position: int  # which column block of W_g
    start: int  # first gate (fused-block index) reading it
    stop: int  # one past the last
    total: int  # number of gates in the block

    @property
    def all_gates(self) -> bool:
        return self.start == 0 and self.stop == self.total

    @property
    def rows(self) -> str:
        """The gates' columns of S (rows of W), as code: ``:`` or a slice variable."""
        return ":" if self.all_gates else f"{self.operand}_rows"

    @property
    def rows_code(self) -> str:
        return f"{self.operand}_rows = slice({self.start} * n_a, {self.stop} * n_a)"

    @property
    def count(self) -> int:
        """How many gates read it."""
        return self.stop - self.start

    @property
    def gates_code(self) -> str:
        """Its range of gates in a step's gate-major block (G, B, n_a), for products over several gates."""
        return f"{self.operand}_gates = slice({self.start}, {self.stop})"

    def by_gate(self, rows: str) -> str:
        """A row-major (B, k·n_a) array of its gates as the gate-major block's shape (k, B, n_a) (a view)."""
        return rows if self.count == 1 else f"{rows}.reshape(B, {self.count}, n_a).transpose(1, 0, 2)"

    @property
    def scratch(self) -> str:
        return "SW" if self.all_gates else f"SW_{self.operand}"

    @property
    def width(self) -> str:
        return "n_a" if self.count == 1 else f"{self.count} * n_a"


@dataclass(frozen=True)
class Line:
    """One generated statement, the derivation step it implements, and an optional ``if`` guard."""

    code: str
    comment: str = ""
    guard: str = ""


@dataclass
class KernelPlan:
    """Everything the template needs, derived from ``cell``."""

    cell: Cell
    d: StepDerivation = field(init=False)

    def __post_init__(self) -> None:
        cell = self.cell
        self.d = derive(cell, scored=(cell.output, *[s for s in cell.states if s != cell.output]))
        self.printer = KernelPrinter()
        linear = cell.linear_stages
        if not linear:
            raise CodegenError(f"cell {cell.name!r}: the NumPy template needs at least one linear stage")
        self.operands: tuple[str, ...] = self._operands(linear)
        for name in self.d.graph.nodes:
            if name in cell.inputs:
                continue
            if name in RESERVED or name in SCRATCH or name.endswith("_seq"):
                raise CodegenError(f"cell {cell.name!r}: node name {name!r} clashes with a kernel variable")
        self.gates = self._gates()
        self.aux = self._auxiliaries()
        self.backward_reads = self._backward_reads()
        self.keep_pre = any(g.act is not None and node(g.stage.name) in self.backward_reads for g in self.gates)
        if self.keep_pre and self.late_operand:
            raise CodegenError(
                f"cell {cell.name!r}: a gate over an inner node together with an activation whose derivative "
                "needs its pre-activation is not supported by the NumPy template yet"
            )

    def _operands(self, linear: tuple[Linear, ...]) -> tuple[str, ...]:
        """The column blocks every W_g shares: per position, the previous state or input the early gates read.

        A gate may read an inner node (GRU's r·a<t-1>) in place of a previous state: it is a *late* gate,
        whose product is taken once that node is computed.  Everything else must line up to be fused.
        """
        cell = self.cell
        name = cell.name
        width = {len(st.inputs) for st in linear}
        if len(width) != 1:
            raise CodegenError(f"cell {name!r}: every linear stage must read the same number of operands to be fused")
        self.late_operand: dict[str, str] = {}
        operands = []
        for pos in range(width.pop()):
            seen = [st.inputs[pos] for st in linear]
            leaves = sorted({k for k in seen if k in cell.leaves}, key=seen.index)
            if len(leaves) != 1:
                raise CodegenError(
                    f"cell {name!r}: the linear stages read {', '.join(dict.fromkeys(seen))} at operand {pos + 1}; "
                    "to be fused they must read one previous state or input there (or an inner node instead "
                    "of a previous state)"
                )
            leaf = leaves[0]
            for st, k in zip(linear, seen, strict=True):
                if k == leaf:
                    continue
                if leaf in cell.inputs:
                    raise CodegenError(f"cell {name!r}: stage {st.name!r} reads {k!r} where the others read {leaf!r}")
                if st.name in self.late_operand:
                    raise CodegenError(f"cell {name!r}: stage {st.name!r} reads more than one inner node")
                self.late_operand[st.name] = k
            operands.append(leaf)
        if len([k for k in operands if k in cell.inputs]) != 1 or operands[-1] not in cell.inputs:
            raise CodegenError(f"cell {name!r}: every linear stage must read exactly one input, as its last operand")
        return tuple(operands)

    @property
    def products(self) -> list[Product]:
        """Recurrent products, in the order forward takes them: previous states first, then inner nodes."""
        out: list[Product] = []
        G = len(self.gates)
        for pos, leaf in enumerate(self.operands):
            if leaf in self.cell.inputs:
                continue
            for k in dict.fromkeys([leaf] + [g.late for g in self.gates if g.late is not None]):
                idx = [g.index for g in self.gates if g.stage.inputs[pos] == k]
                if idx:
                    if idx != list(range(idx[0], idx[-1] + 1)):  # pragma: no cover - the gate order prevents it
                        raise CodegenError(f"cell {self.cell.name!r}: gates reading {k!r} are not adjacent")
                    out.append(Product(k, pos, idx[0], idx[-1] + 1, G))
        return out

    @property
    def leaf_products(self) -> list[Product]:
        return [pr for pr in self.products if pr.operand in self.cell.leaves]

    @property
    def early_groups(self) -> list[Group]:
        return [grp for grp in self.groups if grp.late is None]

    @property
    def early_gates(self) -> list[Gate]:
        return [g for g in self.gates if g.late is None]

    def offset_at(self, pos: int) -> str:
        return self.offset(self.operands[pos])

    # -- structure --------------------------------------------------------------------------------
    @property
    def width(self) -> str:
        """Columns of each W_g, as code: ``n_a + n_x``."""
        return " + ".join("n_x" if k in self.cell.inputs else "n_a" for k in self.operands)

    @property
    def width_states(self) -> str:
        """The state columns of each W_g, as code: ``n_a`` (``2 * n_a`` for two state operands)."""
        k = sum(1 for op in self.operands if op not in self.cell.inputs)
        return "n_a" if k == 1 else f"{k} * n_a"

    @property
    def slice_code(self) -> str:
        """Gate indices of a step's gate-major block (G, B, n_a), and, for partial products, their gates'
        columns of the row-major sums (rows of W) and their range of gates."""
        if len(self.gates) == 1:
            code = f"{self.gates[0].slice} = 0"
        else:
            names = ", ".join(g.slice for g in self.gates)
            code = f"{names} = range({len(self.gates)})"
        rows = [pr.rows_code for pr in self.products if not pr.all_gates]
        ranges = [pr.gates_code for pr in self.products if pr.count > 1 and not pr.all_gates]
        return "\n    ".join([code, *rows, *ranges])

    @property
    def regroup(self) -> bool:
        """Whether a step's sums are regrouped gate by gate: with one gate the two layouts are the same."""
        return len(self.gates) > 1

    @property
    def full_product_first(self) -> bool:
        """One leaf product over all gates: it writes the step's row-major sums, the input half is added."""
        leaves = self.leaf_products
        return len(leaves) == 1 and leaves[0].all_gates

    @property
    def group_slice_code(self) -> str:
        """Slices of the fused block, one per activation group (forward applies each in place); "" if none."""
        groups = self.groups
        if not groups:
            return ""
        comma = "," if len(groups) == 1 else ""
        names = ", ".join(grp.slice for grp in groups)
        slices = ", ".join(  # one gate: its index, so the view is that gate's (B, n_a) block
            str(grp.start) if grp.stop - grp.start == 1 else f"slice({grp.start}, {grp.stop})" for grp in groups
        )
        return f"{names}{comma} = {slices}{comma}"

    @property
    def read_names(self) -> set[str]:
        """Names of the values backward reads at a step (after the auxiliaries replaced their functions)."""
        return {s.name for s in self.backward_reads}

    @property
    def forward_prev_states(self) -> list[str]:
        """States whose previous value an elementwise stage reads (needs a ``s_prev`` alias in forward)."""
        return [
            s
            for s in self.cell.states
            if any(isinstance(st, Elementwise) and f"{s}_prev" in st.reads for st in self.cell.stages)
        ]

    @property
    def cache_doc(self) -> str:
        """Size of the forward cache per step and batch row, in words for the docstring."""
        n_x = len(self.cell.inputs)
        n_a = len(self.gates) * (2 if self.keep_pre else 1) + len(self.aux) + len(self.stored_stages)
        n_a += len(self.cell.states)
        return f"about ({n_x if n_x > 1 else ''}n_x + {n_a}·n_a)·T·B"

    def stage_text(self, st: Elementwise | Reduce) -> str:
        text = _uni_expr(st.expr, self.cell.vectors)
        return f"mean_i({text})" if isinstance(st, Reduce) else text

    def seq_width(self, name: str) -> str:
        """Columns of a stored node's per-step buffer: 1 for a row scalar, n_a otherwise."""
        return "1" if name in self.cell.scalars else "n_a"

    @property
    def has_bias(self) -> bool:
        return any(st.bias is not None for st in self.cell.linear_stages)

    @property
    def params_doc(self) -> str:
        doc = [
            f"{st.weight} (n_a, {self.width})" + (f", {st.bias} (n_a,)" if st.bias else "")
            for st in self.cell.linear_stages
        ]
        return "; ".join(doc + [f"{v} (n_a,)" for v in self.cell.vectors])

    def gate_of(self, stage: str) -> Gate:
        """The fused-block gate of the linear stage ``stage``."""
        return next(g for g in self.gates if g.stage.name == stage)

    def _gates(self) -> list[Gate]:
        graph = self.d.graph
        found = []
        for st in self.cell.linear_stages:
            act = None
            uses = graph.uses(st.name)
            if len(uses) == 1 and uses[0].kind == "stage":
                cand = graph.stage(uses[0].consumer)
                if isinstance(cand, Elementwise) and len(cand.expr.args) == 1 and cand.expr.args[0] == node(st.name):
                    if isinstance(cand.expr, sp.Function) and cand.name not in self.cell.states:
                        act = cand
            found.append((st, act))
        # early gates first, then those waiting for each inner node; within each, sigmoid gates first, then
        # the other activations in order of appearance, identity last
        late = [self.late_operand.get(st.name) for st, _ in found]
        phases = list(dict.fromkeys([None, *late]))
        names = [type(a.expr).__name__ if a is not None else "identity" for _, a in found]
        order = sorted(dict.fromkeys(names), key=lambda f: (f != "sigmoid", f == "identity", names.index(f)))
        ranked = sorted(range(len(found)), key=lambda i: (phases.index(late[i]), order.index(names[i]), i))
        return [Gate(found[i][0], found[i][1], k, late[i]) for k, i in enumerate(ranked)]

    @cached_property
    def groups(self) -> list[Group]:
        """Activation groups of the fused block, each with its in-place statements."""
        out = []
        for phase, fname in dict.fromkeys((g.late, g.function) for g in self.gates):
            members = [g for g in self.gates if g.function == fname and g.late == phase]
            if fname == "identity":
                continue
            view = f"S_{fname}" if phase is None else f"S_{fname}_{phase}"
            expr = type(members[0].act.expr)(sp.Symbol(view))  # type: ignore[union-attr]
            comment = (
                ", ".join(_uni(g.value) for g in members)
                + f" = {fname}("
                + ", ".join(_uni(g.stage.name) for g in members)
                + ")"
            )
            folded = fname == "sigmoid" and not self.keep_pre
            if folded:  # the block already holds ½·sum (forward scaled these columns of W and b)
                code = tuple(sigmoid_of_scaled(view))
            else:
                code = tuple(inplace(expr, view, SCRATCH, self.printer))
            out.append(Group(fname, members[0].index, members[-1].index + 1, code, comment, phase, folded))
        return out

    @property
    def folds(self) -> list[Group]:
        """σ groups whose inner ½ (σ(z) = ½·tanh(z/2) + ½) forward applies to their columns of W and b once
        per call instead of to the block at every step.  Not where backward reads the pre-activations."""
        return [grp for grp in self.groups if grp.folded]

    @property
    def sigmoid_primes(self) -> list[Group]:
        """σ groups of two or more gates: backward takes σ'(sum_g) = Γ_g(1 − Γ_g) for all of them in two
        passes over the group's columns, where each gate's δ would otherwise take two of its own."""
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

    def gate_index(self, pr: Product) -> str:
        """The gates a product feeds, indexing a step's gate-major block: the gate's name for one gate, else
        the product's range (``gates_code``)."""
        return self.gates[pr.start].slice if pr.count == 1 else f"{pr.operand}_gates"

    def fold_of(self, pr: Product) -> str:
        """`` * fold`` (or its rows) for a product's forward weights when they include folded σ columns."""
        if not any(grp.start < pr.stop and pr.start < grp.stop for grp in self.folds):
            return ""
        return " * fold" if pr.all_gates else f" * fold[{pr.rows}]"

    def _backward_reads(self) -> set[sp.Symbol]:
        reads: set[sp.Symbol] = set()
        for v in self.d.materialised:
            expr = self.d.evaluate(self.d.elementwise_part(v), keep=_is_seed).xreplace(self._aux_names())
            reads |= expr.xreplace({p: sp.S.One for p in expr.atoms(Partial)}).free_symbols
        return reads

    def _auxiliaries(self) -> dict[sp.Expr, str]:
        """Function applications backward needs again (tanh(c) …): computed once in forward, stored."""
        aux: dict[sp.Expr, str] = {}
        forward_apps = {f for st in self.cell.stages if isinstance(st, Elementwise) for f in st.expr.atoms(sp.Function)}
        for v in self.d.materialised:
            for f in self.d.evaluate(self.d.elementwise_part(v), keep=_is_seed).atoms(sp.Function):
                if f in forward_apps and all(a.is_Symbol for a in f.args):
                    aux[f] = f"{type(f).__name__}_{'_'.join(str(a) for a in f.args)}"
        return aux

    # -- forward ------------------------------------------------------------------------------------
    def forward_lines(self) -> list[Line]:
        """Elementwise stages not fused into the block, in order, writing into their buffers."""
        in_block = {g.act.name for g in self.gates if g.act is not None}
        lines: list[Line] = []
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
            comment = f"{_uni(st.name)}<t> = {self.stage_text(st)}"
            if st.name in self.cell.scalars:  # one number per row: a small (B, 1) array, allocated
                code = self.printer.doprint(expr)
                if isinstance(st, Reduce):
                    code = f"{self.printer._module_format('numpy.mean')}({code}, axis=-1, keepdims=True)"
                lines.append(Line(f"{st.name} = {code}", comment))
                if st.name in self.stored_stages:
                    lines.append(Line(f"{st.name}_seq[t] = {st.name}"))
            elif st.name in self.cell.states:
                lines.append(Line(f"{st.name} = {st.name}_seq[t + 1]"))
                lines += self._inplace(expr, st.name, comment)
            elif node(st.name) in self.backward_reads or st.name in self.late_operand.values():
                lines.append(Line(f"{st.name} = {st.name}_seq[t]"))
                lines += self._inplace(expr, st.name, comment)
            else:
                lines.append(Line(f"{st.name} = {self.printer.doprint(expr)}", comment))
            # an auxiliary of this stage's output (tanh(c) after c) is computed right after it
            for f, name in self.aux.items():
                if f not in written_aux and set(map(str, f.args)) <= self._defined_after(st.name):
                    lines += self._aux_lines(f, name)
                    written_aux.add(f)
            lines += self._late_lines(st.name)
        return lines

    def _late_lines(self, k: str) -> list[Line]:
        """Once the inner node ``k`` is computed: its product into the gates that read it, then their activation."""
        lines: list[Line] = []
        for pr in self.products:
            if pr.operand != k:
                continue
            gates = [g for g in self.gates if g.late == k]
            names = ", ".join(_uni(g.stage.name) for g in gates)
            lines.append(Line(f"np.matmul({k}, W_{k}, out={pr.scratch})", f"{names} += W^({_uni(k)}) {_uni_time(k)}"))
            lines.append(Line(f"S[{self.gate_index(pr)}] += {pr.by_gate(pr.scratch)}"))
            for grp in self.groups:
                if grp.late == k:
                    lines.append(Line(f"{grp.view} = S[{grp.slice}]", f"{grp.comment}, in place"))
                    lines += [Line(c) for c in grp.lines]
            values = ", ".join(g.value for g in gates)
            views = ", ".join(f"S[{g.slice}]" for g in gates)
            lines.append(Line(f"{values} = {views}"))
        return lines

    def _aux_lines(self, f: sp.Expr, name: str) -> list[Line]:
        """Compute an auxiliary (tanh(c<t>) …) into its buffer."""
        comment = f"{_uni_expr(f, self.cell.vectors)}, stored for backward"
        return [Line(f"{name} = {name}_seq[t]"), *self._inplace(f, name, comment)]

    def _inplace(self, expr: sp.Expr, dest: str, comment: str) -> list[Line]:
        """``dest = expr`` as ufunc calls writing into ``dest`` (scratch: tmp0, tmp1 …); comment on the first."""
        code = inplace(expr, dest, SCRATCH, self.printer)
        return [Line(c, comment if i == 0 else "") for i, c in enumerate(code)]

    def _defined_after(self, name: str) -> set[str]:
        names = set(self.cell.leaves)
        for st in self.cell.stages:
            names.add(st.name)
            if st.name == name:
                break
        return names

    @property
    def stored_stages(self) -> list[str]:
        """Stage outputs backward reads that are neither states nor block columns: their own buffers."""
        in_block = {g.value for g in self.gates}
        late = set(self.late_operand.values())
        return [
            st.name
            for st in self.cell.stages
            if (node(st.name) in self.backward_reads or st.name in late)
            and st.name not in self.cell.states
            and st.name not in in_block
            and not isinstance(st, Linear)
        ]

    # -- backward -----------------------------------------------------------------------------------
    @property
    def delta_buffers(self) -> list[str]:
        """δ's of non-linear, non-state nodes: one (B, n_a) buffer each, allocated once per call."""
        d = self.d
        return [
            f"delta_{v}"
            for v in d.materialised
            if v not in self.cell.inputs
            and self.cell.state_of_prev(v) is None
            and not d.graph.is_linear(v)
            and v not in self.cell.scalars
        ]

    def backward_lines(self) -> list[Line]:
        d, lines = self.d, []
        rename = {_seed(self.cell.output): sp.Symbol(f"d{self.cell.output}[t]")}  # ∂E<t>/∂a<t>: the caller's da[t]
        rules = d.rules[self.gates[0].stage.name]
        for v in d.materialised:
            if v in self.cell.inputs:
                continue  # ∂E/∂x<t> for all steps after the loop
            optional = [s for s in self.cell.states if s != self.cell.output and s == v]
            expr = d.elementwise_part(v)
            if optional:
                expr = expr.xreplace({_seed(v): 0})
            value = d.evaluate(expr, keep=_is_seed).xreplace(rename).xreplace(self._aux_names())
            value = self._with_sigmoid_primes(value)
            comment = self.comment(v)
            linear = d.graph.linear_consumers(v)
            prev_state = self.cell.state_of_prev(v)
            if prev_state is not None:
                target_var = str(future(prev_state))
            else:
                target_var = f"delta_{v}"
            if linear:
                pr = next(pr for pr in self.products if pr.operand == v)
                if pr.count == 1:  # one gate: its block of dS, contiguous
                    D = f"dS[{self.gate_index(pr)}]"
                elif pr.all_gates:  # all gates: the row-major copy of dS that BLAS reads as one (B, G·n_a) matrix
                    D = "dSr"
                    if self.regroup:
                        lines.append(Line("np.copyto(dSr_by_gate, dS)", "δsum_g<t> into the row-major dSr"))
                else:
                    D = f"dSr[:, {pr.rows}]"
                    lines.append(Line(f"np.copyto(dSr_by_gate[{self.gate_index(pr)}], dS[{self.gate_index(pr)}])"))
                rule = rules.operand[self.operands[pr.position]].xreplace(
                    {rules.D: _ms(D), rules.W[self.operands[pr.position]]: _ms(f"W_{v}")}
                )
                if not isinstance(rule, sp.MatMul) or len(rule.args) != 2:
                    raise CodegenError(f"cell {self.cell.name!r}: unexpected reverse rule {rule} for {v!r}")
                lhs, rhs = (self.printer.doprint(a) for a in rule.args)
                if value == 0:
                    lines.append(Line(f"np.matmul({lhs}, {rhs}, out={target_var})", comment))
                else:
                    lines += self._inplace(value, target_var, comment)
                    lines.append(Line(f"{target_var} += {lhs} @ {rhs}"))
            elif v in self.cell.scalars:  # δ of a row scalar: a (B, 1) array
                lines.append(Line(f"{target_var} = {self.printer.doprint(value)}", comment))
            else:
                lines += self._inplace(value, target_var, comment)
            if optional:
                lines.append(
                    Line(
                        f"{target_var} += d{v}[t]",
                        f"+ ∂E<t>/∂{_uni(v)}<t> given by the caller",
                        guard=f"d{v} is not None",
                    )
                )
        return lines

    def _aux_names(self) -> dict[sp.Expr, sp.Symbol]:
        return {f: sp.Symbol(n) for f, n in self.aux.items()}

    def offset(self, operand: str) -> str:
        """Column slice of ``operand`` inside W, as code (``:n_a``, ``n_a:`` …)."""
        sizes = ["n_x" if k in self.cell.inputs else "n_a" for k in self.operands]
        i = self.operands.index(operand)
        start = " + ".join(sizes[:i]) or "0"
        stop = " + ".join(sizes[: i + 1])
        if i == 0:
            return f":{stop}"
        if i == len(self.operands) - 1:
            return f"{start}:"
        return f"{start}:{stop}"

    def after_loop(self) -> list[Line]:
        """Weight, bias and input gradients: one product over all steps each."""
        rules = self.d.rules[self.gates[0].stage.name]
        lines = []
        for pos, k in enumerate(self.operands):
            products = [pr for pr in self.products if pr.position == pos] or [None]
            for pr in products:
                op = k if pr is None else pr.operand
                state = self.cell.state_of_prev(op)
                if state:
                    stacked = f"{state}_seq[:-1].reshape(T * B, n_a)"
                elif op in self.cell.inputs:
                    stacked = f"{op}.reshape(T * B, n_x)"
                else:
                    stacked = f"{op}_seq.reshape(T * B, n_a)"
                D, rows = ("dS2", ":") if pr is None or pr.all_gates else (f"dS2[:, {pr.rows}]", pr.rows)
                code = self.printer.doprint(rules.weight[k].xreplace({rules.D: _ms(D), rules.Z[k]: _ms(stacked)}))
                comment = f"∂E/∂W_g^({_uni(state or op)}) = Σ_t δsum_g<t>ᵀ {_uni_time(op)}"
                lines.append(Line(f"dW[{rows}, {self.offset(k)}] = {code}", comment))
        if self.has_bias:
            code = self.printer.doprint(rules.bias.xreplace({rules.D: _ms("dS2")}))
            lines.append(Line(f"db = {code}", "∂E/∂b_g = Σ_t δsum_g<t>"))
        for k in self.cell.inputs:
            bind = {rules.D: _ms("dS2"), rules.W[k]: _ms(f"W[:, {self.offset(k)}]")}
            code = self.printer.doprint(rules.operand[k].xreplace(bind))
            comment = f"∂E/∂{k}<t> = Σ_g δsum_g<t>·∂sum_g<t>/∂{k}<t>, every t at once"
            lines.append(Line(f"d{k} = ({code}).reshape(T, B, n_x)", comment))
        return lines

    # -- comments -----------------------------------------------------------------------------------
    def comment(self, v: str) -> str:
        """The derivation step a backward line implements, in the article's notation."""
        tl = Timeline(self.d)
        chain = tl.chain(self.d.chain[v])
        lhs = f"∂E/∂{_uni_time(v)}" if (v in self.cell.leaves or self.d.graph.is_linear(v)) else f"δ{_uni(v)}<t>"
        terms = sp.Add.make_args(chain) if chain.is_Add else [chain]
        # branches through linear stages are one fused product; say so instead of listing every gate
        linear = {f"{st.name}<t>" for st in self.d.graph.linear_consumers(v)}
        through = [
            t for t in terms if any(isinstance(f, Partial) and str(f.num) in linear for f in sp.Mul.make_args(t))
        ]
        shown = [_CommentPrinter().doprint(t) for t in terms if t not in through]
        if len(through) > 2:
            shown.insert(0, f"{_CommentPrinter().doprint(through[0])} + … ({len(through)} gates, fused)")
        else:
            shown[:0] = [_CommentPrinter().doprint(t) for t in through]
        text = " + ".join(shown)
        fork = "  (fork: branches added)" if self.d.graph.is_fork(v) else ""
        return f"{lhs} = {text}{fork}"

    # -- loss ---------------------------------------------------------------------------------------
    @property
    def loss_is_half_square(self) -> bool:
        """Whether Error = ½ (∂Error/∂a)² holds identically (the article's ½(â − a)²): the kernel then takes E
        from the gradient it returns anyway, one pass instead of three."""
        e, de = self._loss_exprs
        return sp.simplify(e - de**2 / 2) == 0

    @cached_property
    def _loss_exprs(self) -> tuple[sp.Expr, sp.Expr]:
        """The Error of the output and its derivative, from the engine."""
        out = self.cell.output
        return self.d.loss(node(out), target(out)), self.d.partials[Partial(ERROR, node(out))]

    @property
    def recycled(self) -> list[str]:
        """Cache entries backward consumes (keep_cache=False) and the next forward may reuse."""
        names = ["gates"] + (["pre"] if self.keep_pre else [])
        return names + [f"{n}_seq" for n in self.aux.values()] + [f"{n}_seq" for n in self.stored_stages]

    def loss(self, output: str, hat: str) -> tuple[str, str]:
        """The Error and its derivative (from the engine), printed with the given variable names."""
        out = self.cell.output
        e, de = self._loss_exprs
        names = {node(out): sp.Symbol(output), target(out): sp.Symbol(hat)}
        return self.printer.doprint(e.xreplace(names)), self.printer.doprint(de.xreplace(names))


def _seed(v: str) -> Partial:
    return Partial(ERROR, node(v))


def _is_seed(p: Partial) -> bool:
    return p.num == ERROR


def _ms(name: str) -> sp.MatrixSymbol:
    return sp.MatrixSymbol(name, sp.Symbol("r"), sp.Symbol("k"))


_GREEK = {"Gamma": "Γ", "delta": "δ", "sigma": "σ"}


def _uni(name: str) -> str:
    """Unicode form of a node name for comments: Gamma_f → Γ_f, c_tilde → c~, a_prev → a<t-1>."""
    if name.endswith("_prev"):
        return name[: -len("_prev")]
    if name.endswith("_tilde"):
        return name[: -len("_tilde")] + "~"
    head, _, tail = name.partition("_")
    return _GREEK.get(head, head) + (f"_{tail}" if tail else "")


def _uni_time(name: str) -> str:
    return f"{_uni(name)}<t-1>" if name.endswith("_prev") else f"{_uni(name)}<t>"


def _uni_expr(expr: sp.Expr, shared: tuple[str, ...] = ()) -> str:
    """Comment text of a stage's expression; ``shared`` names (unit parameters) carry no time index."""
    return _CommentPrinter().doprint(
        expr.xreplace({s: sp.Symbol(s.name if s.name in shared else _uni_time(s.name)) for s in expr.free_symbols})
    )


class _CommentPrinter(sp.printing.str.StrPrinter):
    """Compact text for comments: ∂c<t>/∂Γ_f<t>, δc<t+1>, σ(…), products with '·'; chain order kept."""

    def __init__(self) -> None:
        super().__init__({"order": "none"})

    def _print_Partial(self, expr: Partial) -> str:
        num, den = self._print(expr.num), self._print(expr.den)
        return f"∂{num}/∂{den}"

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        name = expr.name
        delta = name.startswith("delta_")
        base = name[6:] if delta else name
        stem, lt, time = base.partition("<")
        text = ("E" if stem == "Error" else _uni(stem)) + (lt + time if lt else "")
        return ("δ" if delta else "") + text

    def _print_Mul(self, expr: sp.Mul) -> str:
        return re.sub(r"(?<!\*)\*(?!\*)", "·", super()._print_Mul(expr))

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.exp == 2:
            return self.parenthesize(expr.base, 60, strict=True) + "²"
        return super()._print_Pow(expr, rational)

    def _print_sigmoid(self, expr: sp.Expr) -> str:
        return f"σ({self._print(expr.args[0])})"

    def _print_UnitSum(self, expr: sp.Expr) -> str:
        return f"Σ_i({self._print(expr.args[0])})"

    def _print_rsqrt(self, expr: sp.Expr) -> str:
        return f"1/√({self._print(expr.args[0])})"


def template_env() -> jinja2.Environment:
    """The Jinja2 environment every backend renders with: strict, whitespace-exact, the comment filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["uni"] = _uni
    env.filters["uni_time"] = _uni_time
    return env


def render(cell: Cell) -> str:
    """The generated module for ``cell``, as text (byte-stable)."""
    plan = KernelPlan(cell)
    env = template_env()
    env.filters["add_prefix"] = lambda s, prefix: prefix + s
    env.filters["prime_of"] = plan.prime_of
    template = env.get_template(TEMPLATE)
    if len(cell.inputs) != 1:
        raise CodegenError(f"cell {cell.name!r}: the NumPy template supports exactly one input, got {cell.inputs}")
    forward_lines, backward_lines = plan.forward_lines(), plan.backward_lines()
    forward_code = [*(c for g in plan.groups for c in g.lines), *(ln.code for ln in forward_lines)]
    context = {
        "version": __version__,
        "template": TEMPLATE,
        "cell": cell,
        "source_hash": source_hash(cell),
        "plan": plan,
        "gates": plan.gates,
        "groups": plan.groups,
        "inner": SIGMOID_INNER,
        "forward_lines": forward_lines,
        "backward_lines": backward_lines,
        "after_loop": plan.after_loop(),
        "forward_scratch": _scratch_in(forward_code),
        "backward_scratch": _scratch_in([ln.code for ln in backward_lines]),
        "loss_text": _CommentPrinter().doprint(plan.d.loss(sp.Symbol("a"), sp.Symbol("â"))),
        "head": head_code(plan.printer),
        "regression_dz": plan.printer.doprint(
            linear_mse().dz.xreplace({sp.Symbol("z"): sp.Symbol("Z"), sp.Symbol("y"): sp.Symbol("Y")})
        ),
        "uni": _uni,
        "uni_time": _uni_time,
    }
    return template.render(**context)


def head_code(printer: KernelPrinter) -> dict[str, str]:
    """The softmax cross-entropy head's backward statements, printed from its derivation (:mod:`.heads`)."""
    h = softmax_ce()
    r = h.rules
    return {
        "dz": printer.doprint(h.dz.xreplace({sp.Symbol("p"): sp.Symbol("P"), sp.Symbol("y"): sp.Symbol("Y")})),
        "dW": printer.doprint(r.weight["a"].xreplace({r.D: _ms("dZ"), r.Z["a"]: _ms("A")})),
        "db": printer.doprint(r.bias.xreplace({r.D: _ms("dZ")})),
        "da": printer.doprint(r.operand["a"].xreplace({r.D: _ms("dZ"), r.W["a"]: _ms("W_y")})),
    }


def _scratch_in(code: list[str]) -> list[str]:
    """The scratch buffers (tmp0, tmp1 …) these statements name; they are taken in order, so a prefix."""
    used = [s for s in SCRATCH if any(re.search(rf"\b{s}\b", c) for c in code)]
    return SCRATCH[: len(used)]


#: The modules whose code decides what a generated file holds (with the templates and the cell).
CODEGEN_MODULES = (
    "cell",
    "graph",
    "derivation",
    "functions",
    "notation",
    "printer_latex",
    "printer_numpy",
    "printer_inplace",
    "emit_latex",
    "emit_numpy",
    "heads",
)


def source_hash(cell: Cell) -> str:
    """SHA-256 (first 16 hex digits) of what produces the cell's module: its definition, the code generator, templates.

    A generated file whose ``SOURCE_HASH`` differs from this is stale: regenerating it may change it.
    """
    h = hashlib.sha256()
    h.update(repr(cell.name).encode())
    for st in cell.stages:
        h.update(repr(st if isinstance(st, Linear) else (st.name, sp.srepr(st.expr), st.reads)).encode())
    h.update(repr((cell.inputs, cell.states, cell.output)).encode())
    h.update(__version__.encode())
    for name in CODEGEN_MODULES:
        h.update((PACKAGE_DIR / f"{name}.py").read_bytes().replace(b"\r\n", b"\n"))
    for path in sorted(templates_dir().glob("numpy/*.j2")):
        h.update(path.read_bytes().replace(b"\r\n", b"\n"))
    return h.hexdigest()[:16]


def generate(cells: Sequence[Cell], out_dir: str | Path) -> list[Path]:
    """Write ``<out_dir>/<cell>.py`` for every cell, atomically (creating ``out_dir``); return the paths written."""
    from .files import write_atomic

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    return [write_atomic(out / f"{cell.name}.py", render(cell)) for cell in cells]
