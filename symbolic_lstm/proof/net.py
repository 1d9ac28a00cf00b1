"""The two sides of the proof over a tiny unrolled net: every weight, bias, input, initial state and target a SymPy
symbol; the forward pass unrolled into one Error expression per step; and backpropagation through time driven only
by the engine's per-step results (δ at every fork, the linear stages' matrix-calculus rules, the boundary, sums
over time).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import sympy as sp
from sympy.functions.elementary.piecewise import ExprCondPair

from ..engine.cell import Cell
from ..engine.derivation import LinearRules, LossMode, StepDerivation
from ..engine.functions import UnitSum
from ..engine.notation import ERROR, Partial, future, node, target
from ..engine.stages import N_A, Linear, Stage


@dataclass(frozen=True)
class _Unrolled:
    """A stage's value at one step of the unrolled net, as a SymPy column (its
    :class:`~..engine.stages.StageOps` in matrices); ``v``: the step's values so far."""

    net: UnrolledNet
    v: dict[str, sp.Matrix]

    def product(self, st: Linear) -> sp.Matrix:
        value = self.net.params[st.weight] * sp.Matrix.vstack(*(self.v[k] for k in st.inputs))
        return value if st.bias is None else value + self.net.params[st.bias]

    def unitwise(self, st: Stage, expr: sp.Expr) -> sp.Matrix:
        """Unit i's value for every unit; a row scalar (one entry) is read by every unit i."""
        net, v = self.net, self.v
        units = net.n_a if st.sums_units else 1 if st.name in net.cell.scalars else net.size_of(st.name)
        return sp.Matrix(
            [expr.xreplace({node(r): v[r][i if len(v[r]) > 1 else 0] for r in st.reads}) for i in range(units)]
        )

    def mean(self, st: Stage, value: sp.Matrix) -> sp.Matrix:
        return sp.Matrix([sp.Add(*value) / self.net.n_a])


class UnrolledNet:
    """A cell unrolled over T steps with every number a symbol (column vectors as sp.Matrix)."""

    def __init__(self, cell: Cell, n_a: int, n_x: int, T: int) -> None:
        if min(n_a, n_x, T) < 1:
            raise ValueError(f"n_a, n_x and T must be positive, got n_a={n_a}, n_x={n_x}, T={T}")
        if cell.square and n_x != n_a:
            raise ValueError(f"cell {cell.name!r} reads its input unit by unit beside n_a units: it needs n_x = n_a")
        self.cell, self.n_a, self.n_x, self.T = cell, n_a, n_x, T
        self.params: dict[str, sp.Matrix] = {}
        for st in cell.linear_stages:
            cols = sum(self.size_of(k) for k in st.inputs)
            n = self.size_of(st.name)
            rows = [[sp.Symbol(f"{st.weight}[{i},{j}]", real=True) for j in range(cols)] for i in range(n)]
            self.params[st.weight] = sp.Matrix(rows)
            if st.bias is not None:
                self.params[st.bias] = symbol_vector(st.bias, n)
        for name in cell.vectors:
            self.params[name] = symbol_vector(name, n_a)
        self.inputs = {i: [symbol_vector(f"{i}<{t}>", self.size_of(i)) for t in range(1, T + 1)] for i in cell.inputs}
        self.initial = {s: symbol_vector(f"{s}<0>", n_a) for s in cell.states}
        self.hat = [symbol_vector(f"{cell.output}_hat<{t}>", n_a) for t in range(1, T + 1)]
        self.steps = self._forward()
        #: Error<t> = Σ_i ½(â<t>_i − a<t>_i)², for t = 1 … T
        self.step_errors = [self._error(t) for t in range(T)]

    def size_of(self, name: str) -> int:
        """Units of a node (or a unit parameter): n_a, n_x or 1 (a row scalar); an input after the first has n_x
        units here too (the proof's sizes are n_a and n_x)."""
        return self.cell.size(name, self.n_x, self.n_a, {w: self.n_x for w in self.cell.extra_widths})

    def scored(self, t: int, mode: LossMode) -> bool:
        """Is the output of step t (1-based) scored by the loss?"""
        return mode == "many-to-many" or t == self.T

    def error(self, mode: LossMode) -> sp.Expr:
        """The whole Error: every step's (many-to-many) or the last step's (many-to-one)."""
        return sp.Add(*(e for t, e in enumerate(self.step_errors, 1) if self.scored(t, mode)))

    def _forward(self) -> list[dict[str, sp.Matrix]]:
        steps: list[dict[str, sp.Matrix]] = []
        state = dict(self.initial)
        for t in range(self.T):
            v: dict[str, sp.Matrix] = {f"{s}_prev": state[s] for s in self.cell.states}
            v.update({i: self.inputs[i][t] for i in self.cell.inputs})
            v.update({p: self.params[p] for p in self.cell.vectors})
            ops = _Unrolled(self, v)
            for st in self.cell.stages:
                v[st.name] = st.compose(ops)
            steps.append(v)
            state = {s: v[s] for s in self.cell.states}
        return steps

    def _error(self, t: int) -> sp.Expr:
        out = self.steps[t][self.cell.output]
        return sp.Add(*(sp.Rational(1, 2) * (self.hat[t][i] - out[i]) ** 2 for i in range(self.n_a)))

    def wrt(self) -> Iterator[tuple[str, sp.Matrix]]:
        """Every gradient the proof checks: parameters, inputs (stacked over t), initial states."""
        yield from self.params.items()
        for i in self.cell.inputs:
            yield i, sp.Matrix.hstack(*self.inputs[i]).T
        for s in self.cell.states:
            yield f"{s}0", self.initial[s].T


def engine_gradients(
    net: UnrolledNet,
    d: StepDerivation,
    mode: LossMode,
    incoming: dict[str, sp.Matrix] | None = None,
    scored: Callable[[int], bool] | None = None,
) -> dict[str, sp.Matrix]:
    """Backpropagation through time driven only by the engine's per-step results (:func:`step_backward`).

    Rows are batch rows (B = 1): δ's are 1×n matrices, as in the kernels.  ``incoming``: the adjoint of each
    state arriving after the last step (default: :func:`boundary`, zero) — the one-step lemma
    (:mod:`symbolic_lstm.proof.step`) passes fresh symbols; ``scored(t)``: whether step t's Error is scored
    (default: as ``mode`` says).
    """
    cell, T = net.cell, net.T
    is_scored = scored or (lambda t: net.scored(t, mode))
    grads: dict[str, sp.Matrix] = {p: sp.zeros(*m.shape) for p, m in net.params.items()}
    if incoming is None:
        incoming = boundary(net)
    per_input: dict[str, list[sp.Matrix]] = {i: [] for i in cell.inputs}
    for t in range(T, 0, -1):
        deltas, contributions = step_backward(net, d, t, incoming, is_scored(t))
        accumulate(grads, contributions)  # θ is shared by every step: its gradient sums the steps'
        for i in cell.inputs:
            per_input[i].insert(0, deltas[i])
        incoming = {s: deltas[f"{s}_prev"] for s in cell.states}  # handed to step t − 1
    for i in cell.inputs:
        grads[i] = sp.Matrix.vstack(*per_input[i])
    for s in cell.states:
        grads[f"{s}0"] = incoming[s]
    return grads


def boundary(net: UnrolledNet) -> dict[str, sp.Matrix]:
    """The adjoint arriving at each state after the last step: zero, since nothing follows step T."""
    return {s: sp.zeros(1, net.size_of(s)) for s in net.cell.states}


def accumulate(grads: dict[str, sp.Matrix], contributions: dict[str, sp.Matrix]) -> None:
    """Add one step's parameter contributions to the running sums."""
    for name, c in contributions.items():
        grads[name] += c


def step_backward(
    net: UnrolledNet, d: StepDerivation, t: int, incoming: dict[str, sp.Matrix], scored: bool
) -> tuple[dict[str, sp.Matrix], dict[str, sp.Matrix]]:
    """The engine's backward through step t (1-based): δ of every materialised node (previous states and
    inputs included) and the step's contribution to every parameter's gradient, given the adjoints
    ``incoming`` from step t + 1 and whether step t's Error is scored."""
    cell = net.cell
    rules = d.rules  # matrix calculus at symbolic sizes, derived once per cell; the sizes are bound below
    dims = {st.name: _dims(rules[st.name], net) for st in cell.linear_stages}
    loss_partials = [p for p in d.partials if isinstance(p, Partial) and p.num == ERROR]
    values = net.steps[t - 1]
    env: dict[sp.Symbol, list[sp.Expr]] = {node(k): list(m) for k, m in values.items()}
    env[target(cell.output)] = list(net.hat[t - 1])
    env.update({future(s): list(incoming[s]) for s in cell.states})
    deltas: dict[str, sp.Matrix] = {}
    for v in d.materialised:
        expr = d.elementwise_part(v)
        if not scored:
            expr = expr.xreplace({p: 0 for p in loss_partials})
        expr = d.evaluate(expr)
        row = sp.Matrix([[_at(expr, env, i, net.n_a) for i in range(net.size_of(v))]])
        for st in d.graph.linear_consumers(v):
            r = rules[st.name]
            w = _columns(net, st, v)
            row += explicit(r.operand[v], {r.D: deltas[st.name], r.W[v]: w}, dims[st.name])
        deltas[v] = row
        env[sp.Symbol(f"delta_{v}")] = list(row)
    contributions: dict[str, sp.Matrix] = {}
    for st in cell.linear_stages:
        r = rules[st.name]
        blocks = [explicit(r.weight[k], {r.D: deltas[st.name], r.Z[k]: values[k].T}, dims[st.name]) for k in st.inputs]
        contributions[st.weight] = sp.Matrix.hstack(*blocks)
        if st.bias is not None:
            contributions[st.bias] = explicit(r.bias, {r.D: deltas[st.name]}, dims[st.name]).T
    for p in cell.vectors:
        contributions[p] = deltas[p].T
    return deltas, contributions


def _at(expr: sp.Expr, env: dict[sp.Symbol, list[sp.Expr]], i: int, n_a: int, memo: dict | None = None) -> sp.Expr:
    """``expr`` at unit ``i``: every node its value there (a row scalar its only one), Σ_i expanded, n_a a number.
    Shared subtrees are rebuilt once (``memo``): a derivative is a DAG whose tree can be exponentially larger."""
    memo = {} if memo is None else memo
    hit = memo.get((expr, i))
    if hit is not None:
        return hit
    if isinstance(expr, UnitSum):
        out = sp.Add(*(_at(expr.args[0], env, j, n_a, memo) for j in range(n_a)))
    elif expr.is_Symbol:
        vals = env.get(expr)
        out = sp.Integer(n_a) if expr == N_A else expr if vals is None else vals[i if len(vals) > 1 else 0]
    elif not expr.args:
        out = expr
    else:
        out = _rebuilt(expr, [_at(a, env, i, n_a, memo) for a in expr.args])
    memo[(expr, i)] = out
    return out


def _rebuilt(expr: sp.Basic, args: list[sp.Basic]) -> sp.Basic:
    """``expr``'s node over ``args``, as written.  SymPy's constructors would decide again what they can decide of
    the unrolled values: a Piecewise condition holding a Piecewise is folded and rewritten as ITE, a relation or
    a Min/Max compares its sides (their signs, by assumptions), a power with a symbolic exponent factors it —
    minutes for a cell whose Piecewise reads a state.  The proof evaluates every node exactly at its points
    (:class:`~.exact.Evaluator`: a branch by its conditions, Min/Max by their values), so the node as written is
    all it needs; arithmetic is still evaluated (constants fold, so do the n_a copies of Σ_i)."""
    if isinstance(expr, ExprCondPair):
        return sp.Tuple.__new__(ExprCondPair, *args)
    if isinstance(expr, sp.Piecewise):
        return sp.Basic.__new__(sp.Piecewise, *args)
    if isinstance(expr, sp.core.relational.Relational | sp.Min | sp.Max):
        return expr.func(*args, evaluate=False)
    if isinstance(expr, sp.Pow) and not expr.exp.is_Number:
        return sp.Pow(*args, evaluate=False)
    return expr.func(*args)


def _dims(rules: LinearRules, net: UnrolledNet) -> dict[sp.Expr, int]:
    """The symbolic sizes of a linear stage's rules bound to the net's: one batch row, the stage's units, each
    operand's units."""
    st = rules.stage
    dims = {rules.D.shape[0]: 1, rules.D.shape[1]: net.size_of(st.name)}
    dims.update({rules.Z[k].shape[1]: net.size_of(k) for k in st.inputs})
    return dims


def explicit(
    rule: sp.MatrixExpr, bind: dict[sp.MatrixSymbol, sp.Matrix], dims: dict[sp.Expr, int] | None = None
) -> sp.Matrix:
    """Evaluate a matrix-calculus rule (products, transposes, sums, ones) on explicit matrices; ``dims`` binds
    symbolic sizes (a column of ones 1_B).

    Done by hand rather than with ``doit()``, which would walk every entry's expression tree.
    """
    if isinstance(rule, sp.MatrixSymbol):
        return bind[rule]
    if isinstance(rule, sp.OneMatrix):
        return sp.ones(*(int(dims.get(n, n)) if dims else int(n) for n in rule.shape))
    if isinstance(rule, sp.Transpose):
        return explicit(rule.arg, bind, dims).T
    if isinstance(rule, sp.MatMul):
        out: sp.Matrix | sp.Expr = sp.S.One
        for f in rule.args:
            out = _product(out, explicit(f, bind, dims) if isinstance(f, sp.MatrixExpr) else f)
        return out
    if isinstance(rule, sp.MatAdd):
        terms = [explicit(a, bind, dims) for a in rule.args]
        return sum(terms[1:], terms[0])
    raise TypeError(f"cannot evaluate the matrix rule {rule}")


def _product(a: sp.Matrix | sp.Expr, b: sp.Matrix | sp.Expr) -> sp.Matrix | sp.Expr:
    """a·b, each entry the plain sum of its products: SymPy's own matrix product asks every product whether it is
    zero (to keep the result sparse), which for the long entries of a normalised cell is most of ``prove``'s time
    (layernorm: 6 of 9 s); nothing here needs the zeros found."""
    if not isinstance(a, sp.MatrixBase) or not isinstance(b, sp.MatrixBase):
        return a * b
    if a.cols != b.rows:
        raise ValueError(f"shapes {a.shape} and {b.shape} do not multiply")
    return sp.Matrix(a.rows, b.cols, lambda i, j: sp.Add(*(a[i, k] * b[k, j] for k in range(a.cols))))


def _columns(net: UnrolledNet, st: Linear, operand: str) -> sp.Matrix:
    """The columns of ``st``'s weight that multiply ``operand``: the engine's block (:meth:`Linear.columns`)."""
    start, stop = st.columns(operand, net.size_of)
    return net.params[st.weight][:, start:stop]


def symbol_vector(name: str, n: int) -> sp.Matrix:
    return sp.Matrix([sp.Symbol(f"{name}[{i}]", real=True) for i in range(n)])
