"""Stage 3: backpropagation through one step by the chain rule over the graph of stages.

The reverse traversal visits the nodes last stage first.  For every node v it writes δv as the sum, over
the branches of v's fork, of (the gradient arriving at the consumer) × (the local partial
∂consumer/∂v) — the article's three principles, literally:

* a branch into a stage k contributes δk · ∂k/∂v (δk named where k is itself a fork or a linear stage's
  output, written inline otherwise, as the article writes ∂c/∂Γ_f · ∂Γ_f/∂sum_f);
* a branch into the loss contributes ∂Error<t>/∂v;
* a branch into the next step contributes ∂E<t+1>/∂v<t> (zero after the last step).

Local partials of elementwise stages come from ``sympy.diff`` of the stage's expression and are rewritten
through stored forward values (σ' → Γ(1 − Γ), tanh' → 1 − c̃² …).  The reverse rules of linear stages come
from SymPy's matrix calculus on ``trace(Dᵀ (Σ_k Z_k W_kᵀ + 1 bᵀ))`` (batch rows, the kernels' layout).
Nothing here knows the LSTM: change a stage and every derivative changes with it.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property
from typing import Literal

import sympy as sp

from .cell import Cell, Linear
from .functions import UnitSum, diff_real
from .graph import StepGraph
from .notation import ERROR, Partial, delta, future, node, target

LossMode = Literal["many-to-many", "many-to-one"]
LOSS_MODES: tuple[LossMode, ...] = ("many-to-many", "many-to-one")
Loss = Callable[[sp.Expr, sp.Expr], sp.Expr]


def mse(output: sp.Expr, hat: sp.Expr) -> sp.Expr:
    """The article's Error<t> = ½(â<t> − a<t>)² (per unit; summed over units and steps)."""
    return sp.Rational(1, 2) * (hat - output) ** 2


def concat_symbol(stage: Linear) -> sp.Symbol:
    """∂sum/∂W evaluated: the concatenated inputs [a<t-1>, x<t>] (outer product with δsum)."""
    return sp.Symbol("[" + ",".join(stage.inputs) + "]", commutative=False)


def block_symbol(stage: Linear, operand: str) -> sp.Symbol:
    """∂sum/∂operand evaluated: the columns of W that multiply ``operand`` (δsum · W^(operand))."""
    return sp.Symbol(f"{stage.weight}|{operand}", commutative=False)


@dataclass(frozen=True)
class LinearRules:
    """Reverse rules of the linear stage ``S = Σ_k Z_k W_kᵀ + 1 bᵀ`` for a batch of rows.

    Shapes: D = ∂E/∂S (B, n); Z_k (B, m_k); W_k (n, m_k) the columns of W over input k; b (1, n).
    ``operand[k]`` = ∂E/∂Z_k, ``weight[k]`` = ∂E/∂W_k and ``bias`` = ∂E/∂b, each a SymPy matrix expression
    obtained by differentiating trace(Dᵀ S).
    """

    stage: Linear
    D: sp.MatrixSymbol
    Z: dict[str, sp.MatrixSymbol]
    W: dict[str, sp.MatrixSymbol]
    b: sp.MatrixSymbol
    operand: dict[str, sp.MatrixExpr]
    weight: dict[str, sp.MatrixExpr]
    bias: sp.MatrixExpr


def linear_rules(
    stage: Linear,
    rows: int | sp.Symbol | None = None,
    n: int | sp.Symbol | None = None,
    sizes: dict[str, int] | None = None,
) -> LinearRules:
    """Differentiate trace(Dᵀ S) with respect to every operand, weight block and the bias.

    Dimensions are symbols (B rows, n units, n_k columns per operand) unless given as numbers.  At symbolic
    sizes the rules depend only on the operands' names: derived once per operand list (SymPy's matrix
    calculus takes a tenth of a second per stage) and shared.
    """
    if rows is None and n is None and sizes is None:
        return replace(_symbolic_rules(stage.inputs), stage=stage)
    return _linear_rules(stage, rows, n, sizes)


@functools.lru_cache(maxsize=256)
def _symbolic_rules(inputs: tuple[str, ...]) -> LinearRules:
    return _linear_rules(Linear("_", inputs, "_", None), None, None, None)


def _linear_rules(
    stage: Linear, rows: int | sp.Symbol | None, n: int | sp.Symbol | None, sizes: dict[str, int] | None
) -> LinearRules:
    rows = sp.Symbol("B", integer=True, positive=True) if rows is None else rows
    n = sp.Symbol("n", integer=True, positive=True) if n is None else n
    D = sp.MatrixSymbol("D", rows, n)
    b = sp.MatrixSymbol("b", 1, n)
    Z: dict[str, sp.MatrixSymbol] = {}
    W: dict[str, sp.MatrixSymbol] = {}
    S: sp.MatrixExpr = sp.OneMatrix(rows, 1) * b
    for k in stage.inputs:
        m = sp.Symbol(f"n_{k}", integer=True, positive=True) if sizes is None else sizes[k]
        Z[k], W[k] = sp.MatrixSymbol(f"Z_{k}", rows, m), sp.MatrixSymbol(f"W_{k}", n, m)
        S = S + Z[k] * W[k].T
    L = sp.Trace(D.T * S)
    return LinearRules(
        stage=stage,
        D=D,
        Z=Z,
        W=W,
        b=b,
        operand={k: L.diff(Z[k]) for k in stage.inputs},
        weight={k: L.diff(W[k]) for k in stage.inputs},
        bias=L.diff(b),
    )


class StepDerivation:
    """The chain rule through one step of ``cell``.

    Args:
        cell: the cell.
        scored: nodes the loss reads (default: the cell's output; the kernels also score c, for ``dc``).
        loss: Error<t> as a function of (node, target), default :func:`mse`.

    Attributes (all keyed by node name, in step-local symbols of :mod:`symbolic_lstm.engine.notation`):
        chain: δnode as a chain of unevaluated :class:`Partial` s, naming δ of materialised consumers.
        full: δnode as the article writes it, every chain expanded down to the Error and the next step.
        partials: each local partial → its value.
    """

    def __init__(self, cell: Cell, scored: Sequence[str] | None = None, loss: Loss = mse) -> None:
        self.cell = cell
        self.graph = StepGraph(cell, scored)
        self.loss = loss
        self.partials: dict[Partial, sp.Expr] = {}
        self.chain: dict[str, sp.Expr] = {}
        self.full: dict[str, sp.Expr] = {}
        self._stored = {st.expr: node(st.name) for st in cell.stages if st.unitwise}
        for v in self.graph.reverse_order():
            short_terms, full_terms = [], []
            for use in self.graph.uses(v):
                if use.kind == "loss":
                    p = self._partial(ERROR, v, self.loss(node(v), target(v)))
                    short_terms.append(p)
                    full_terms.append(p)
                elif use.kind == "next":
                    short_terms.append(future(use.consumer))
                    full_terms.append(future(use.consumer))
                else:
                    k = use.consumer
                    p = self._local(k, v)
                    upstream = delta(k) if self.graph.materialised(k) else self.chain[k]
                    short, full = upstream * p, sp.Mul(self.full[k], p, evaluate=False)
                    if self._fans_out(v, k):  # a row scalar read by every unit: the branches of all units add
                        short, full = UnitSum(short), UnitSum(full)
                    short_terms.append(short)
                    full_terms.append(full)
            # kept unevaluated so the branches print in the order of the fork (stage, Error, next step)
            self.chain[v] = _fork(short_terms)
            self.full[v] = _fork(full_terms)

    # -- local partials ---------------------------------------------------------------------------
    def _partial(self, num: sp.Expr, den: str, of: sp.Expr) -> Partial:
        p = Partial(num, node(den))
        self.partials[p] = self.through_stored(diff_real(of, node(den)))
        return p

    def _fans_out(self, v: str, consumer: str) -> bool:
        """Does the row scalar ``v`` reach ``consumer`` once per unit (so its δ sums the units' branches)?"""
        scalars = self.cell.scalars
        return v in scalars and (consumer not in scalars or self.graph.stage(consumer).sums_units)

    def _local(self, consumer: str, v: str) -> Partial:
        st = self.graph.stage(consumer)
        if st.unit_expr is not None:  # ∂name_i/∂v_i of one unit's value (a mean's: (1/n_a) ∂expr_i/∂v_i)
            return self._partial(node(consumer), v, st.unit_expr)
        p = Partial(node(consumer), node(v))  # a product: its matrix-calculus rule (LinearRules)
        self.partials[p] = block_symbol(st, v)
        return p

    def through_stored(self, expr: sp.Expr) -> sp.Expr:
        """Rewrite a derivative through stored forward values: σ(sum_f) → Γ_f, tanh(sum_c) → c̃, …"""
        return expr.xreplace(self._stored)

    # -- results ------------------------------------------------------------------------------------
    def param_chain(self, param: str, full: bool = False) -> sp.Expr:
        """∂Error<t>/∂param at one step: δsum · ∂sum/∂param (the time sum is the caller's).

        A unit parameter's is its own δ: the branches into every stage that reads it, added.
        """
        if param in self.cell.vectors:
            return self.full[param] if full else self.chain[param]
        for st in self.cell.linear_stages:
            if param in (st.weight, st.bias):
                p = Partial(node(st.name), sp.Symbol(param))
                self.partials[p] = concat_symbol(st) if param == st.weight else sp.S.One
                if full:
                    return sp.Mul(self.full[st.name], p, evaluate=False)
                return delta(st.name) * p
        raise KeyError(param)

    def evaluate(self, expr: sp.Expr, keep: Callable[[Partial], bool] = lambda p: False) -> sp.Expr:
        """Replace every local partial by its value (those for which ``keep`` is true stay)."""
        return expr.xreplace({p: v for p, v in self.partials.items() if not keep(p)})

    def elementwise_part(self, v: str) -> sp.Expr:
        """The branches of δv that do not pass through a linear stage (those are matrix products)."""
        linear = {st.name for st in self.graph.linear_consumers(v)}
        terms = [t for t in sp.Add.make_args(self.chain[v]) if not _reads_linear(t, v, linear)]
        return sp.Add(*terms)

    @cached_property
    def rules(self) -> dict[str, LinearRules]:
        """Reverse rules of every linear stage, from matrix calculus."""
        return {st.name: linear_rules(st) for st in self.cell.linear_stages}

    @property
    def materialised(self) -> tuple[str, ...]:
        """Nodes whose δ is named, in backward order."""
        return tuple(v for v in self.graph.reverse_order() if self.graph.materialised(v))


def _fork(branches: list[sp.Expr]) -> sp.Expr:
    """The sum of a fork's branches, unevaluated so they keep their order."""
    return branches[0] if len(branches) == 1 else sp.Add(*branches, evaluate=False)


def _reads_linear(term: sp.Expr, v: str, linear: set[str]) -> bool:
    return any(isinstance(f, Partial) and str(f.num) in linear for f in sp.Mul.make_args(term))


def derive(cell: Cell, scored: Sequence[str] | None = None, loss: Loss = mse) -> StepDerivation:
    """Run the chain rule through one step of ``cell``; see :class:`StepDerivation`."""
    return StepDerivation(cell, scored, loss)
