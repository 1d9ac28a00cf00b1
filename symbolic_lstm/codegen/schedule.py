"""The kernel schedule — what the generated kernels compute, over which buffers, in which order.

Plain data, computed once from the derivation and printed by every code backend
(the NumPy backend in place, the array-API backend as expressions).  The
decisions it makes change no mathematics:

* **Gates.**  Every linear stage is a *gate*: a column block of n_a in the step's gate buffer.  A linear
  stage whose only consumer is a one-argument activation of it (σ(sum_f)) has that activation applied in
  place, so the block holds Γ_f; other gates hold their sums.
* **Products grouped by operand.**  ``sum_g = Σ_k W_g^(k) z_k + b_g`` is split into one matrix product per
  operand z_k, over every gate that reads it: an *input* (x<t>, and every further input) is one product for all
  steps, hoisted out of the time loop; a *state* (a<t-1>) one product per step, at its start; an *inner* node
  (GRU's Γ_r·a<t-1>) one product per step once that node is computed.  Gates that read an inner node are *late*:
  their activation waits for their last inner node.  The built-in LSTM's four gates read [a<t-1>, x<t>]:
  one hoisted input product and one recurrent product per step, as before; PyTorch's GRU, whose candidate
  reads W_in x<t> and W_hn a<t-1> separately, gets the same two products over different gates.
* **Gate order.**  Gates are ordered so that every product's gates and every activation's gates are
  adjacent (one slice, one ufunc call), the input product's first; where no order does it, the backends
  fall back to index lists, which are correct, only slower.
* **Buffers.**  What backward reads (the engine says which) is kept per step: gate values, pre-activations
  where a derivative needs them (relu′ reads sum, not Γ), stage outputs, and function values backward
  needs again (tanh(c<t>)), computed once in forward.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from functools import cached_property
from typing import Literal

import sympy as sp

from ..engine.cell import Cell, Elementwise, Linear
from ..engine.derivation import StepDerivation, derive
from ..engine.notation import Partial, future, node
from ..engine.reserved import derived_names
from .lines import CodegenError, OwnNames, is_seed, seed

OperandKind = Literal["input", "state", "inner"]

#: Gate orders are searched exhaustively up to this many gates (7! = 5040 orders); beyond, the preferred order.
SEARCH_LIMIT = 7


@dataclass(frozen=True)
class Gate:
    """One linear stage's column block in the step's gate buffer, and the activation applied to it in place."""

    stage: Linear
    act: Elementwise | None
    index: int
    phase: str | None = None  # the inner node whose product completes this gate (None: complete at step start)

    @property
    def value(self) -> str:
        """The node that lives in this block after activation."""
        return self.act.name if self.act is not None else self.stage.name

    @property
    def function(self) -> str:
        return type(self.act.expr).__name__ if self.act is not None else "identity"

    @property
    def short(self) -> str:
        """A short name: ``f`` for W_f, else the stage's name."""
        w = self.stage.weight
        return w[2:] if w.startswith("W_") and w[2:].isidentifier() else self.stage.name


@dataclass(frozen=True)
class Product:
    """The matrix product of one operand with the columns of W_g that multiply it, for every gate g reading it.

    ``columns[i]`` = (start, stop) of the operand's columns inside the weight of ``gates[i]``, as expressions
    in n_a and n_x.
    """

    operand: str
    kind: OperandKind
    gates: tuple[int, ...]
    columns: tuple[tuple[str, str], ...]
    size: str  # "n_a" or "n_x": the operand's width
    total: int  # number of gates in the buffer

    @property
    def count(self) -> int:
        return len(self.gates)

    @property
    def contiguous(self) -> bool:
        return self.gates == tuple(range(self.gates[0], self.gates[-1] + 1))

    @property
    def all_gates(self) -> bool:
        return self.count == self.total

    @property
    def start(self) -> int:
        return self.gates[0]

    @property
    def stop(self) -> int:
        return self.gates[-1] + 1

    def local(self, gate: int) -> int:
        """Position of ``gate`` among this product's gates (its block of the product's weight)."""
        return self.gates.index(gate)


@dataclass(frozen=True)
class Group:
    """A run of adjacent gates of one phase sharing one activation, applied as one call."""

    function: str
    start: int
    stop: int
    phase: str | None
    act: type[sp.Function]
    folded: bool  # σ whose inner ½ is folded into the forward copies of W and b (see ``Schedule.folds``)
    keeps_pre: bool  # backward reads these gates' pre-activations: stored before the activation
    run: int = 0  # 1, 2 … for further runs of the same activation and phase (no order made them adjacent)

    @property
    def gates(self) -> tuple[int, ...]:
        return tuple(range(self.start, self.stop))

    @property
    def name(self) -> str:
        """A name for this run: ``sigmoid``, ``tanh_ra`` (phase), ``tanh_1`` (a second run of tanh)."""
        base = self.function if self.phase is None else f"{self.function}_{self.phase}"
        return f"{base}_{self.run}" if self.run else base


@dataclass(frozen=True)
class Delta:
    """One backward statement: δ``node`` = ``value`` (its branches that are not matrix products) plus the
    products of the linear stages reading it (δsum · W^(node)).  ``optional`` names the caller's extra
    ∂E<t>/∂state seed (dc), added when given."""

    node: str
    value: sp.Expr
    products: tuple[Product, ...]
    target: str
    optional: str | None


class Schedule:
    """The kernels' plan for ``cell``: gates, products, activation runs, buffers and backward statements.

    Raises:
        CodegenError: the cell has a structure no backend can print yet (the message names it).
    """

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        #: The first per-step input (``forward``'s first argument); :attr:`Cell.inputs` are all of them.
        self.input = cell.inputs[0]
        self.d: StepDerivation = derive(cell, scored=(cell.output, *[s for s in cell.states if s != cell.output]))
        for st in cell.linear_stages:
            if len(set(st.inputs)) != len(st.inputs):
                raise CodegenError(f"cell {cell.name!r}: stage {st.name!r} reads the same node twice: {st.inputs}")
        self.gates = self._order(self._found())
        self.products = self._products()
        #: The kernels' own names (every backend's plan registers the ones it prints).
        self.own = OwnNames(avoid={*cell.widths, *cell.params, *derived_names(cell.states, cell.output, cell.inputs)})
        self.aux = self._auxiliaries()
        self.backward_reads = self._backward_reads()

    # -- gates and products -----------------------------------------------------------------------------
    def kind(self, operand: str) -> OperandKind:
        if operand in self.cell.inputs:
            return "input"
        if operand in self.cell.prev_states:
            return "state"
        return "inner"

    def _found(self) -> list[tuple[Linear, Elementwise | None, str | None]]:
        """Each linear stage, its in-place activation (if any) and its phase (its last inner operand)."""
        graph = self.d.graph
        found = []
        for st in self.cell.linear_stages:
            act = None
            uses = graph.uses(st.name)
            if len(uses) == 1 and uses[0].kind == "stage":
                cand = graph.stage(uses[0].consumer)
                if (
                    cand.unitwise
                    and isinstance(cand.expr, sp.Function)
                    and len(cand.expr.args) == 1
                    and cand.expr.args[0] == node(st.name)
                    and cand.name not in self.cell.states
                ):
                    act = cand
            inner = [k for k in st.inputs if self.kind(k) == "inner"]
            order = [s.name for s in self.cell.stages]
            phase = max(inner, key=order.index) if inner else None
            found.append((st, act, phase))
        return found

    def _order(self, found: list[tuple[Linear, Elementwise | None, str | None]]) -> list[Gate]:
        """Gate order: every product's and activation's gates adjacent where an order allows it, the input's
        product first; among equally good orders the preferred one (early gates first, then by phase; σ gates
        first, other activations in order of appearance, sums last; then stage order)."""
        n = len(found)
        names = [type(a.expr).__name__ if a is not None else "identity" for _, a, _ in found]
        phases = list(dict.fromkeys([None, *(ph for _, _, ph in found)]))
        fn_order = sorted(dict.fromkeys(names), key=lambda f: (f != "sigmoid", f == "identity", names.index(f)))
        pref = [(phases.index(found[i][2]), fn_order.index(names[i]), i) for i in range(n)]
        operands = dict.fromkeys(k for st, _, _ in found for k in st.inputs)
        product_sets = [{i for i, (st, _, _) in enumerate(found) if k in st.inputs} for k in operands]
        input_set = next((s for k, s in zip(operands, product_sets, strict=True) if self.kind(k) == "input"), set())
        act_sets = [
            {i for i in range(n) if (names[i], found[i][2]) == key}
            for key in dict.fromkeys((names[i], found[i][2]) for i in range(n))
            if key[0] != "identity"
        ]

        def score(perm: tuple[int, ...]) -> tuple:
            pos = {item: p for p, item in enumerate(perm)}

            def runs(s: set[int]) -> int:
                ps = sorted(pos[i] for i in s)
                return 1 + sum(1 for a, b in itertools.pairwise(ps) if b != a + 1)

            split = sum(runs(s) > 1 for s in product_sets)
            return (
                split,
                sum(runs(s) for s in act_sets),
                bool(input_set) and min(pos[i] for i in input_set) != 0,
                [pref[i] for i in perm],
            )

        if n <= SEARCH_LIMIT:
            best = min(itertools.permutations(range(n)), key=score)
        else:
            best = tuple(sorted(range(n), key=pref.__getitem__))
        return [Gate(found[i][0], found[i][1], k, found[i][2]) for k, i in enumerate(best)]

    def _products(self) -> list[Product]:
        """One product per operand: the input first, then previous states, then inner nodes in stage order."""
        cell = self.cell
        order = [*cell.inputs, *cell.prev_states, *(st.name for st in cell.stages)]
        operands = sorted({k for g in self.gates for k in g.stage.inputs}, key=order.index)
        out = []
        for k in operands:
            readers = [g for g in self.gates if k in g.stage.inputs]
            out.append(
                Product(
                    operand=k,
                    kind=self.kind(k),
                    gates=tuple(g.index for g in readers),
                    columns=tuple(self.columns(g.stage, k) for g in readers),
                    size=cell.width(k),
                    total=len(self.gates),
                )
            )
        return out

    def columns(self, st: Linear, operand: str) -> tuple[str, str]:
        """(start, stop) of ``operand``'s columns inside ``st``'s weight, as code in n_a and n_x (a row
        scalar never enters a linear stage)."""
        widths = [self.width_of(k) for k in st.inputs]
        i = st.inputs.index(operand)
        return (" + ".join(widths[:i]) or "0", " + ".join(widths[: i + 1]))

    def width_of(self, operand: str) -> str:
        return self.cell.width(operand)

    def weight_width(self, st: Linear) -> str:
        """Columns of ``st``'s weight, as code: ``n_a + n_x``."""
        return " + ".join(self.width_of(k) for k in st.inputs)

    @property
    def input_product(self) -> Product:
        """The first input's product (hoisted over all steps; it writes the gate buffer the others add to)."""
        return next(pr for pr in self.products if pr.kind == "input")

    @property
    def input_products(self) -> list[Product]:
        """Every input's product, in the cell's order of its inputs (each hoisted over all steps)."""
        return [pr for pr in self.products if pr.kind == "input"]

    @property
    def state_products(self) -> list[Product]:
        return [pr for pr in self.products if pr.kind == "state"]

    def inner_products(self, k: str) -> list[Product]:
        return [pr for pr in self.products if pr.kind == "inner" and pr.operand == k]

    def products_of(self, gate: Gate) -> list[Product]:
        """The products a gate's weight is split into, in the order of its columns."""
        return sorted(
            (pr for pr in self.products if gate.index in pr.gates), key=lambda pr: gate.stage.inputs.index(pr.operand)
        )

    def gate_of(self, stage: str) -> Gate:
        return next(g for g in self.gates if g.stage.name == stage)

    @property
    def has_bias(self) -> bool:
        return any(st.bias is not None for st in self.cell.linear_stages)

    @property
    def nonsmooth(self) -> bool:
        """Does a stage use a function with kinks or jumps (relu, |x|, clipping, a Piecewise …)?"""
        from ..engine.functions import NONSMOOTH

        return any(e.has(*NONSMOOTH) for st in self.cell.stages for e in st.expressions)

    # -- activations --------------------------------------------------------------------------------
    def keeps_pre(self, g: Gate) -> bool:
        """Backward reads the gate's pre-activation (relu′(sum) = H(sum)): forward stores it."""
        return g.act is not None and node(g.stage.name) in self.backward_reads

    @cached_property
    def groups(self) -> list[Group]:
        """Runs of adjacent gates of one phase and one activation (identity gates need none)."""
        out = []
        for key, run in itertools.groupby(self.gates, key=lambda g: (g.phase, g.function)):
            members = list(run)
            if key[1] == "identity":
                continue
            keeps = any(self.keeps_pre(g) for g in members)
            folded = key[1] == "sigmoid" and not keeps
            act = type(members[0].act.expr)  # type: ignore[union-attr]
            run = sum(1 for grp in out if (grp.phase, grp.function) == key)
            out.append(Group(key[1], members[0].index, members[-1].index + 1, key[0], act, folded, keeps, run))
        return out

    @property
    def folds(self) -> list[Group]:
        """σ runs whose inner ½ (σ(z) = ½·tanh(z/2) + ½) forward applies to their columns of W and b once per
        call instead of to the block at every step; not where backward reads the pre-activations."""
        return [grp for grp in self.groups if grp.folded]

    # -- buffers ------------------------------------------------------------------------------------
    def _auxiliaries(self) -> dict[sp.Expr, str]:
        """Function applications backward needs again (tanh(c) …): computed once in forward, stored; each with its
        own name (``_tanh_c``) and its buffer's (``_tanh_c_seq``), in :attr:`own`."""
        found: list[sp.Expr] = []
        forward_apps = {f for st in self.cell.stages if st.unitwise for f in st.expr.atoms(sp.Function)}
        for v in self.d.materialised:
            for f in self.d.evaluate(self.d.elementwise_part(v), keep=is_seed).atoms(sp.Function):
                if f in forward_apps and all(a.is_Symbol for a in f.args) and len(f.args) == 1 and f not in found:
                    found.append(f)
        for f in sorted(found, key=sp.srepr):  # named in one order, whatever the order sets iterate in
            text = f"{type(f).__name__}_{f.args[0]}"
            self.own.add("aux", f, text=text)
            self.own.add("aux_seq", f, text=f"{text}_seq")
            self.own.symbol("aux", f)
        return {f: self.own("aux", f) for f in found}

    def aux_names(self) -> dict[sp.Expr, sp.Symbol]:
        """Each auxiliary's symbol (printed as its own name: :meth:`~.lines.OwnNames.symbol`)."""
        return {f: self.own.symbol("aux", f) for f in self.aux}

    def _backward_reads(self) -> set[sp.Symbol]:
        reads: set[sp.Symbol] = set()
        for v in self.d.materialised:
            expr = self.d.evaluate(self.d.elementwise_part(v), keep=is_seed).xreplace(self.aux_names())
            reads |= expr.xreplace({p: sp.S.One for p in expr.atoms(Partial)}).free_symbols
        return reads

    @property
    def read_names(self) -> set[str]:
        """Names of the values backward reads at a step (after the auxiliaries replaced their functions)."""
        return {s.name for s in self.backward_reads}

    @property
    def inner_operands(self) -> set[str]:
        return {pr.operand for pr in self.products if pr.kind == "inner"}

    @property
    def stored_stages(self) -> list[str]:
        """Stage outputs with a per-step buffer of their own: those backward reads that are neither states nor
        gate blocks, every inner node a product reads (the weight gradient's product over all steps reads it,
        and a gate block no longer holds it then), and the output when it is not a state (forward returns it)."""
        in_block = {g.value for g in self.gates}
        out = []
        for st in self.cell.stages:
            if st.name in self.cell.states:
                continue
            if st.name in self.inner_operands or st.name == self.cell.output:
                out.append(st.name)
            elif node(st.name) in self.backward_reads and st.name not in in_block and st.expressions:  # not a product
                out.append(st.name)
        return out

    @property
    def forward_prev_states(self) -> list[str]:
        """States whose previous value an elementwise stage reads (needs a ``s_prev`` alias in forward)."""
        return [s for s in self.cell.states if any(st.unitwise and f"{s}_prev" in st.reads for st in self.cell.stages)]

    def defined_after(self, name: str) -> set[str]:
        names = set(self.cell.leaves)
        for st in self.cell.stages:
            names.add(st.name)
            if st.name == name:
                break
        return names

    # -- backward -----------------------------------------------------------------------------------
    def deltas(self) -> list[Delta]:
        """δ of every materialised node but the input (∂E/∂x<t> is one product after the loop), in backward
        order: elementwise branches evaluated through stored values, the caller's seed ∂E<t>/∂a<t> kept as
        the symbol ``d<output>[t]``."""
        d, cell = self.d, self.cell
        out = []
        for v in d.materialised:
            if v in cell.inputs:
                continue
            optional = v if (v in cell.states and v != cell.output) else None
            value = self.elementwise_delta(v)
            prev_state = cell.state_of_prev(v)
            target = str(future(prev_state)) if prev_state is not None else f"delta_{v}"
            products = tuple(pr for pr in self.products if pr.operand == v)
            out.append(Delta(v, value, products, target, optional))
        return out

    def zero_like(self, v: str) -> str:
        """What an identically-zero δv (v read only where its derivative vanishes: a condition, a step) is made
        like, in a step: v itself, or for a unit parameter — whose δ has a row per batch row, summed over rows and
        steps afterwards — the δ of the first state from the next step, (B, n_a)."""
        return str(future(self.cell.states[0])) if v in self.cell.vectors else v

    def elementwise_delta(self, v: str) -> sp.Expr:
        """The branches of δv that are not matrix products, evaluated through stored values, with the caller's
        seed ∂E<t>/∂output<t> as the symbol ``d<output>[t]`` (a state's own optional seed is added apart)."""
        cell = self.cell
        expr = self.d.elementwise_part(v)
        if v in cell.states and v != cell.output:
            expr = expr.xreplace({seed(v): 0})
        return self.d.evaluate(expr, keep=is_seed).xreplace({seed(cell.output): sp.Symbol(f"d{cell.output}[t]")})

    @property
    def delta_buffers(self) -> list[str]:
        """δ's of non-linear, non-state nodes that hold n_a units: one (B, n_a) buffer each."""
        d = self.d
        return [
            f"delta_{v}"
            for v in d.materialised
            if v not in self.cell.inputs
            and self.cell.state_of_prev(v) is None
            and not d.graph.is_linear(v)
            and v not in self.cell.scalars
        ]
