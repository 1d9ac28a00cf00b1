"""A symbolic proof that the chain-rule engine is right, for a tiny unrolled net.

For n_a, n_x and T given, every weight, bias, input, initial state and target becomes a SymPy symbol.
The forward pass is unrolled into one Error expression, which ``sympy.diff`` differentiates *directly*
with respect to every symbol.  Independently, the engine's per-step equations (δ at every fork, the
linear stages' matrix-calculus rules, the boundary conditions, sums over time) run backward over the
same unrolled values.  The two must be identical.

Identity is checked exactly, with no floating point: every application of an activation (σ(…), tanh(…),
|…|) is replaced by an independent random rational, as is every remaining symbol.  Both sides are
polynomials (rational functions, for softsign) in those values, so agreement at several random points
proves the identity with overwhelming probability (Schwartz–Zippel; a point where a denominator vanishes is
skipped, and at least one point must remain) — and it is stronger than the
statement about the functions, which are special values of the indeterminates.  With ``exact=True`` the
difference is also expanded to 0 as a polynomial.

Constants are exact: a float the cell was written with (``tanh(0.5*s)``, a leaky ReLU's ``0.01``, a softplus β,
a bound in a ``Piecewise`` condition) becomes the exact rational value of that double — the number the kernels
compute with (``0.01`` is 5764607523034235/2⁵⁹) — on both sides, before anything is differentiated.  Powers
with fractional exponents (``sqrt(1 + s**2)``, ``u**(3/2)``) are algebraic, not rational, at rational points: for
every base b whose powers b^(p/q) occur, one more independent random rational r stands for b^(1/L) (L the
common denominator of those exponents), so that b^(p/q) = r^(pL/q) — the identity in r then holds for the
true root too, which is a special value of r.  A power with a symbolic exponent (u**v) is an indeterminate of
its own, as an activation application is; its derivative (u**v·(v′·log u + u′·v/u)) is written through itself.

Functions with kinks (relu's Max, |·|, sign, Heaviside, clipping's Min, a Piecewise) are not indeterminates:
SymPy's ``diff`` folds nested ones into new ones (a Piecewise whose conditions are ITE of the inner ones), so
they are evaluated exactly at each random point instead, conditions decided on its rationals.  The identity
is then proved on the branches the points select (with T steps and several points, typically several), and
both sides use SymPy's derivative at a kink, so the proof says nothing about the kernels' convention there
(relu′(0) = 0, as PyTorch): the torch cross-checks in the test suite do.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any, Protocol

import sympy as sp

from .cell import N_A, Cell, Linear, Reduce
from .derivation import LOSS_MODES, LinearRules, LossMode, StepDerivation, derive
from .functions import NONSMOOTH, UnitSum
from .notation import ERROR, Partial, future, node, target


@dataclass(frozen=True)
class ProofLine:
    """The verdict for one gradient: ``entries`` scalar partial derivatives compared."""

    gradient: str
    shape: tuple[int, ...]
    entries: int
    ok: bool
    n_a: int
    n_x: int
    T: int
    mode: str  # a loss mode; for the one-step lemma, whether the step's Error is scored
    method: str
    kind: str = "unrolled"  # "unrolled" (T steps), or "lemma" (one step, free adjoints from the future)

    def __str__(self) -> str:
        mark = "✓" if self.ok else "✗"
        shape = "×".join(map(str, self.shape))
        if self.kind == "lemma":
            name = f"{self.gradient[:-1]}<t-1>" if self.gradient.endswith("0") else self.gradient
            return (
                f"{mark} ∂L/∂{name:<7} ({shape}, {self.entries} entries)  one step, n_a={self.n_a} n_x={self.n_x}, "
                f"{self.mode}: {self.method}"
            )
        return (
            f"{mark} dError/d{self.gradient:<4} ({shape}, {self.entries} entries)  "
            f"n_a={self.n_a} n_x={self.n_x} T={self.T} {self.mode}: {self.method}"
        )


class ProofReport(list):
    """The lines of a proof (a list of :class:`ProofLine`): ``str`` is what ``symbolic-lstm prove`` prints,
    Jupyter shows an HTML table."""

    @property
    def ok(self) -> bool:
        return all(line.ok for line in self)

    def __str__(self) -> str:
        return "\n".join(map(str, self))

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            "<tr><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>n_a=%d, n_x=%d, T=%d</td><td>%s</td>"
            "<td>%s</td></tr>"
            % (
                "✓" if ln.ok else "✗",
                ("∂L/∂" if ln.kind == "lemma" else "∂Error/∂") + html.escape(ln.gradient),
                "×".join(map(str, ln.shape)),
                ln.entries,
                ln.n_a,
                ln.n_x,
                ln.T,
                html.escape(ln.mode),
                html.escape(ln.method),
            )
            for ln in self
        )
        lemma = any(ln.kind == "lemma" for ln in self)
        verdict = "every gradient equals direct differentiation" if self.ok else "some gradients differ"
        what = "of L = Σ_s ⟨λ_s, s&lt;t&gt;⟩ + [E&lt;t&gt;] over one step" if lemma else "of the unrolled Error"
        return (
            "<table><thead><tr><th></th><th>gradient</th><th>shape</th><th>entries</th><th>net</th><th>loss</th>"
            f"<th>compared</th></tr></thead><tbody>{rows}</tbody></table><p>{verdict} {what}</p>"
        )


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
                self.params[st.bias] = _vec(st.bias, n)
        for name in cell.vectors:
            self.params[name] = _vec(name, n_a)
        self.inputs = {i: [_vec(f"{i}<{t}>", n_x) for t in range(1, T + 1)] for i in cell.inputs}
        self.initial = {s: _vec(f"{s}<0>", n_a) for s in cell.states}
        self.hat = [_vec(f"{cell.output}_hat<{t}>", n_a) for t in range(1, T + 1)]
        self.steps = self._forward()
        #: Error<t> = Σ_i ½(â<t>_i − a<t>_i)², for t = 1 … T
        self.step_errors = [self._error(t) for t in range(T)]

    def size_of(self, name: str) -> int:
        """Units of a node (or a unit parameter): n_a, n_x or 1 (a row scalar)."""
        return self.cell.size(name, self.n_x, self.n_a)

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
            for st in self.cell.stages:
                if isinstance(st, Linear):
                    z = sp.Matrix.vstack(*(v[k] for k in st.inputs))
                    v[st.name] = self.params[st.weight] * z
                    if st.bias is not None:
                        v[st.name] += self.params[st.bias]
                    continue
                # a row scalar (one entry) is read by every unit i
                units = [
                    st.expr.xreplace({node(r): v[r][i if len(v[r]) > 1 else 0] for r in st.reads})
                    for i in range(self.size_of(st.name) if st.name not in self.cell.scalars else self.n_a)
                ]
                if isinstance(st, Reduce):
                    v[st.name] = sp.Matrix([sp.Add(*units) / self.n_a])
                elif st.name in self.cell.scalars:
                    v[st.name] = sp.Matrix([units[0]])
                else:
                    v[st.name] = sp.Matrix(units)
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
    (:mod:`symbolic_lstm.proof_step`) passes fresh symbols; ``scored(t)``: whether step t's Error is scored
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


def _at(expr: sp.Expr, env: dict[sp.Symbol, list[sp.Expr]], i: int, n_a: int) -> sp.Expr:
    """``expr`` at unit ``i``: every node its value there (a row scalar its only one), Σ_i expanded, n_a a number."""
    if isinstance(expr, UnitSum):
        return sp.Add(*(_at(expr.args[0], env, j, n_a) for j in range(n_a)))
    if expr.is_Symbol:
        if expr == N_A:
            return sp.Integer(n_a)
        vals = env.get(expr)
        if vals is None:
            return expr
        return vals[i if len(vals) > 1 else 0]
    if not expr.args:
        return expr
    return expr.func(*(_at(a, env, i, n_a) for a in expr.args))


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
            out = out * (explicit(f, bind, dims) if isinstance(f, sp.MatrixExpr) else f)
        return out
    if isinstance(rule, sp.MatAdd):
        terms = [explicit(a, bind, dims) for a in rule.args]
        return sum(terms[1:], terms[0])
    raise TypeError(f"cannot evaluate the matrix rule {rule}")


def _columns(net: UnrolledNet, st: Linear, operand: str) -> sp.Matrix:
    start = 0
    for k in st.inputs:
        if k == operand:
            return net.params[st.weight][:, start : start + net.size_of(k)]
        start += net.size_of(k)
    raise KeyError(operand)


def _vec(name: str, n: int) -> sp.Matrix:
    return sp.Matrix([sp.Symbol(f"{name}[{i}]", real=True) for i in range(n)])


def exact_constants(cell: Cell) -> Cell:
    """``cell`` with every float in its stages replaced by the exact rational value of that double.

    ``Rational(Float)`` is exact: 0.01 becomes 5764607523034235/576460752303423488, the number the kernels
    multiply by, not 1/100.  Nothing else changes (names, order, LaTeX), so the proof is about the cell as the
    kernels run it.
    """

    def exact(expr: sp.Expr) -> sp.Expr:
        floats = expr.atoms(sp.Float)
        return expr.xreplace({f: sp.Rational(f) for f in floats}) if floats else expr

    stages = tuple(st if isinstance(st, Linear) else replace(st, expr=exact(st.expr)) for st in cell.stages)
    return replace(cell, stages=stages)


class _Opaque(sp.Function):
    """A function the proof treats as an indeterminate, with the derivative of the SymPy function it stands
    for (``_original``), and none of that function's simplifications: SymPy's tanh asks, for every
    expression it meets, whether its argument is finite by splitting the argument into real and imaginary
    parts — exponential in the depth of an unrolled net (a LayerNorm LSTM over two steps did not finish in
    minutes; with the stand-in it takes a tenth of a second).  The proof never needs those properties."""

    _original: type[sp.Function]

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        n = len(self.args)
        d = _derivative_of(self._original, n, argindex)
        return d.xreplace(dict(zip(_DUMMIES[(self._original, n)], self.args, strict=True)))


_DUMMIES: dict[tuple[type, int], list[sp.Dummy]] = {}
_DERIVATIVES: dict[tuple[type, int, int], sp.Expr] = {}


def _derivative_of(f: type[sp.Function], nargs: int, argindex: int) -> sp.Expr:
    """∂f/∂(argument ``argindex``) at dummy arguments, in stand-ins, once per function."""
    key = (f, nargs, argindex)
    if key not in _DERIVATIVES:
        xs = _DUMMIES.setdefault((f, nargs), [sp.Dummy(f"u{i}") for i in range(nargs)])
        _DERIVATIVES[key] = opaque(sp.diff(f(*xs), xs[argindex - 1]))
    return _DERIVATIVES[key]


#: SymPy's functions that get a stand-in (module-level classes, so a proof job pickles for Dask workers).
_STANDS_IN: dict[type, type] = {}
for _f in (sp.tanh, sp.exp, sp.log, sp.sin, sp.cos, sp.tan, sp.sinh, sp.cosh, sp.atan, sp.asinh, sp.atanh, sp.erf):
    _name = f"opaque_{_f.__name__}"
    _cls = type(_name, (_Opaque,), {"_original": _f, "__module__": __name__, "__qualname__": _name})
    globals()[_name] = _STANDS_IN[_f] = _cls


def opaque(expr: sp.Expr) -> sp.Expr:
    """``expr`` with SymPy's elementary functions replaced by their stand-ins (see :class:`_Opaque`)."""
    if not any(type(f) in _STANDS_IN for f in sp.preorder_traversal(expr)):
        return expr
    return expr.replace(lambda e: type(e) in _STANDS_IN, lambda e: _STANDS_IN[type(e)](*e.args))


def for_proof(cell: Cell) -> Cell:
    """The cell as the proof takes it: every float the exact rational of its double (:func:`exact_constants`),
    every SymPy elementary function its stand-in (:func:`opaque`)."""
    cell = exact_constants(cell)
    stages = tuple(st if isinstance(st, Linear) else replace(st, expr=opaque(st.expr)) for st in cell.stages)
    return replace(cell, stages=stages)


def _is_root(e: sp.Basic) -> bool:
    """A power with a fractional rational exponent (√u, u^(−3/2)): algebraic, not rational, at a rational point."""
    return isinstance(e, sp.Pow) and e.exp.is_Rational is True and e.exp.is_Integer is False


def indeterminates(exprs: list[sp.Expr]) -> list[sp.Expr]:
    """Every function application, symbol and power that is not a polynomial operation in ``exprs``, each
    shared subtree visited once.

    Powers with a fractional rational exponent are listed as the power itself (:class:`Point` groups them by
    base); a power with a symbolic exponent is an indeterminate like a function application.
    (``Basic.atoms`` walks the expressions as trees; unrolled nets share subtrees exponentially often.)
    """
    seen: set[sp.Basic] = set()
    found: dict[sp.Expr, None] = {}
    stack: list[sp.Basic] = list(exprs)
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.add(e)
        if isinstance(e, (sp.Function, sp.Symbol)) and not isinstance(e, _EVALUATED):
            found[e] = None
        elif isinstance(e, sp.Pow) and (_is_root(e) or not e.exp.is_Number):
            found[e] = None
        stack.extend(e.args)
    return list(found)


#: Applications evaluated at each point rather than replaced by an indeterminate (see the module docstring).
_EVALUATED = (*NONSMOOTH, sp.DiracDelta)


#: Largest common denominator of a base's exponents taken as one root r = b^(1/L); beyond it (a float exponent
#: such as 0.3 is p/2^52) each class of exponents modulo 1 gets its own value (see :class:`Point`).
MAX_ROOT = 64


@dataclass
class Point:
    """Values of the indeterminates at one point: ``values`` for applications, symbols and symbolic powers;
    ``roots`` for every base b of fractional powers, (r, L) with r standing for b^(1/L), so b^(p/q) = r^(pL/q);
    ``classes`` for bases whose exponents' common denominator exceeds ``MAX_ROOT``: for each exponent class
    e modulo 1, (r, e₀) with r standing for b^e₀, so b^e = r·b^(e − e₀) — the relation differentiation
    needs (b^e · b⁻¹ = b^(e−1)) without powers of r of astronomical degree."""

    values: dict[sp.Expr, sp.Expr]
    roots: dict[sp.Expr, tuple[sp.Expr, int]]
    classes: dict[tuple[sp.Expr, sp.Expr], tuple[sp.Expr, sp.Expr]] = field(default_factory=dict)

    def at(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` with every indeterminate its value (outermost first, as ``xreplace`` matches), b^(p/q) as
        r^(pL/q), and functions with kinks evaluated on their evaluated arguments; shared subtrees once."""
        memo: dict[sp.Basic, sp.Expr] = {}

        def walk(e: sp.Basic) -> sp.Expr:
            hit = memo.get(e)
            if hit is not None:
                return hit
            if e in self.values:
                out = self.values[e]
            elif _is_root(e) and e.base in self.roots:
                r, L = self.roots[e.base]
                out = r ** int(e.exp * L)
            elif _is_root(e) and (e.base, e.exp % 1) in self.classes:
                r, e0 = self.classes[(e.base, e.exp % 1)]
                out = r * walk(e.base) ** int(e.exp - e0)
            elif not e.args:
                out = e
            else:
                out = e.func(*(walk(a) for a in e.args))
            memo[e] = out
            return out

        return walk(expr)


class UnjudgedPointError(Exception):
    """The point lies on a pole (a denominator vanishes) or on a kink (a Max's arguments tie, |0|, a Piecewise
    condition at equality): no verdict there."""


class Evaluator:
    """Exact values and derivatives at one :class:`Point`, in Python fractions, shared subtrees once.

    ``value(e)`` is ``point.at(e)``; ``derivative(e, wrt)`` is ``point.at(sympy.diff(e, wrt))`` — forward-mode
    differentiation of the expression tree: each node's derivative is the chain rule on its own arguments, a
    function application's partials its ``fdiff`` evaluated at the point (σ′ = σ(1 − σ) in σ's own value) —
    without building the derivative's expression, which for a deep cell is most of a proof's time.  Functions
    with kinks take the derivative of the branch the point selects.

    Raises (both):
        UnjudgedPointError: the point is on a pole or a kink.
    """

    def __init__(self, point: Point) -> None:
        self.point = point
        self._values: dict[sp.Basic, Fraction] = {}
        self._partials: dict[tuple[sp.Basic, int], Fraction] = {}
        self._derivatives: dict[sp.Basic, dict[sp.Basic, Fraction]] = {}
        self._deps: dict[sp.Basic, frozenset[sp.Basic]] = {}

    def _depends(self, e: sp.Basic) -> frozenset[sp.Basic]:
        """The symbols ``e`` contains (memoised over shared subtrees, unlike ``free_symbols``)."""
        hit = self._deps.get(e)
        if hit is None:
            if isinstance(e, sp.Symbol):
                hit = frozenset((e,))
            elif not e.args:
                hit = frozenset()
            else:
                hit = frozenset().union(*(self._depends(a) for a in e.args))
            self._deps[e] = hit
        return hit

    def _exact(self, e: sp.Expr) -> Fraction:
        v = self.point.at(e)
        if v.is_Rational:
            return Fraction(int(v.p), int(v.q))
        if v.has(sp.zoo, sp.nan, sp.oo, -sp.oo):
            raise UnjudgedPointError("pole")
        raise ValueError(f"{e} has no rational value at this point ({v}): an indeterminate has no value")

    def value(self, e: sp.Basic) -> Fraction:
        hit = self._values.get(e)
        if hit is not None:
            return hit
        if e.is_Number:
            if not e.is_Rational:
                raise (
                    UnjudgedPointError("pole")
                    if e.has(sp.zoo, sp.nan, sp.oo, -sp.oo)
                    else ValueError(f"not exact: {e}")
                )
            out = Fraction(int(e.p), int(e.q))
        elif e in self.point.values and not isinstance(e, sp.Function):
            out = self._exact(e)
        elif isinstance(e, sp.Add):
            out = sum((self.value(a) for a in e.args), Fraction(0))
        elif isinstance(e, sp.Mul):
            out = Fraction(1)
            for a in e.args:
                out *= self.value(a)
        elif isinstance(e, sp.Pow) and e.exp.is_Integer:
            b, n = self.value(e.base), int(e.exp)
            if b == 0 and n < 0:
                raise UnjudgedPointError("pole")
            out = b**n
        elif isinstance(e, sp.Max):
            out = max(self.value(a) for a in e.args)
        elif isinstance(e, sp.Min):
            out = min(self.value(a) for a in e.args)
        elif isinstance(e, sp.Abs):
            out = abs(self.value(e.args[0]))
        elif isinstance(e, sp.Piecewise):
            out = self.value(self._branch(e))
        elif isinstance(e, (sp.sign, sp.Heaviside, sp.DiracDelta)):
            a = self.value(e.args[0])
            out = self._exact(e.func(sp.Rational(a.numerator, a.denominator), *e.args[1:]))
        else:  # an indeterminate (an activation's application, a root, a symbolic power): the point's value
            out = self._exact(e)
        self._values[e] = out
        return out

    def _branch(self, e: sp.Piecewise) -> sp.Expr:
        """The branch of a Piecewise the point selects (UnjudgedPointError where a condition holds with equality)."""
        for branch, cond in e.args:
            if cond is sp.true or self._holds(cond):
                return branch
        raise UnjudgedPointError("no branch")

    def _holds(self, cond: sp.Basic) -> bool:
        if isinstance(cond, sp.core.relational.Relational):
            a, b = self.value(cond.lhs), self.value(cond.rhs)
            if a == b and not isinstance(cond, (sp.Eq, sp.Ne)):
                raise UnjudgedPointError("kink")
            return bool({"<": a < b, "<=": a <= b, ">": a > b, ">=": a >= b, "==": a == b, "!=": a != b}[cond.rel_op])
        if isinstance(cond, sp.And):
            return all(self._holds(c) for c in cond.args)
        if isinstance(cond, sp.Or):
            return any(self._holds(c) for c in cond.args)
        if isinstance(cond, sp.Not):
            return not self._holds(cond.args[0])
        if cond in (sp.true, sp.false):
            return bool(cond)
        return bool(self.point.at(cond))

    def derivative(self, e: sp.Basic, wrt: sp.Symbol) -> Fraction:
        memo = self._derivatives.setdefault(wrt, {})
        return self._d(e, wrt, memo)

    def _d(self, e: sp.Basic, wrt: sp.Symbol, memo: dict[sp.Basic, Fraction]) -> Fraction:
        hit = memo.get(e)
        if hit is not None:
            return hit
        zero = Fraction(0)
        if e == wrt:
            out = Fraction(1)
        elif e.is_Number or isinstance(e, sp.Symbol) or wrt not in self._depends(e):
            out = zero
        elif isinstance(e, sp.Add):
            out = sum((self._d(a, wrt, memo) for a in e.args), zero)
        elif isinstance(e, sp.Mul):
            out = zero
            for i, a in enumerate(e.args):
                da = self._d(a, wrt, memo)
                if da:
                    rest = Fraction(1)
                    for j, b in enumerate(e.args):
                        if j != i:
                            rest *= self.value(b)
                    out += da * rest
        elif isinstance(e, sp.Pow) and e.exp.is_Integer:
            db = self._d(e.base, wrt, memo)
            n = int(e.exp)
            b = self.value(e.base)
            if b == 0 and n < 1 and db:
                raise UnjudgedPointError("pole")
            out = n * b ** (n - 1) * db if db else zero
        elif isinstance(e, sp.Pow) and _is_root(e):  # (p/q)·b^(p/q − 1)·b′, b^(p/q − 1) a power of b's root
            db = self._d(e.base, wrt, memo)
            exp = Fraction(int(e.exp.p), int(e.exp.q))
            out = exp * self.value(sp.Pow(e.base, e.exp - 1)) * db if db else zero
        elif isinstance(e, (sp.Max, sp.Min)):
            vals = [self.value(a) for a in e.args]
            best = max(vals) if isinstance(e, sp.Max) else min(vals)
            chosen = {self._d(a, wrt, memo) for a, v in zip(e.args, vals, strict=True) if v == best}
            if len(chosen) > 1:
                raise UnjudgedPointError("kink")
            out = chosen.pop()
        elif isinstance(e, sp.Abs):
            v, da = self.value(e.args[0]), self._d(e.args[0], wrt, memo)
            if v == 0 and da:
                raise UnjudgedPointError("kink")
            out = da if v > 0 else -da
        elif isinstance(e, (sp.sign, sp.Heaviside, sp.DiracDelta)):
            v, da = self.value(e.args[0]), self._d(e.args[0], wrt, memo)
            if v == 0 and da:
                raise UnjudgedPointError("kink")
            out = zero
        elif isinstance(e, sp.Piecewise):
            for _, cond in e.args:  # a condition at equality is a kink even when another branch is chosen first
                if cond is not sp.true:
                    self._holds(cond)
            out = self._d(self._branch(e), wrt, memo)
        elif isinstance(e, sp.Function) or isinstance(e, sp.Pow):  # an indeterminate: its partials at the point
            out = zero
            for i, a in enumerate(e.args):
                da = self._d(a, wrt, memo)
                if da:
                    out += self._partial(e, i) * da
        else:
            raise TypeError(f"cannot differentiate {type(e).__name__} at a point: {e}")
        memo[e] = out
        return out

    def _partial(self, e: sp.Expr, i: int) -> Fraction:
        hit = self._partials.get((e, i))
        if hit is None:
            partial = e.fdiff(i + 1) if isinstance(e, sp.Function) else sp.diff(e, e.args[i])
            hit = self._partials[(e, i)] = self.value(partial)
        return hit


def random_point(atoms: list[sp.Expr], rng: random.Random, draw: Callable[[], sp.Expr] | None = None) -> Point:
    """An independent random rational for every indeterminate (``draw``: another kind of value, such as a
    fresh symbol, for the exact expansion), and one for the root of every base of fractional powers."""

    def rational() -> sp.Expr:
        return sp.Rational(rng.randint(-97, 97), rng.randint(1, 89))

    draw = draw or rational
    values = {a: draw() for a in atoms if not _is_root(a)}
    denominators: dict[sp.Expr, int] = {}
    for a in atoms:
        if _is_root(a):
            denominators[a.base] = math.lcm(denominators.get(a.base, 1), int(a.exp.q))
    roots = {b: (draw(), L) for b, L in denominators.items() if L <= MAX_ROOT}
    classes: dict[tuple[sp.Expr, sp.Expr], tuple[sp.Expr, sp.Expr]] = {}
    for a in atoms:
        if _is_root(a) and a.base not in roots and (a.base, a.exp % 1) not in classes:
            classes[(a.base, a.exp % 1)] = (draw(), a.exp)
    return Point(values, roots, classes)


_DERIVATIONS: dict[tuple, StepDerivation] = {}


def derivation_of(cell: Cell) -> StepDerivation:
    """``derive(cell)``, once per cell and engine: the lemma and the induction's T = 1, 2 share it."""
    key = (derive, cell.name, cell.stages, cell.inputs, cell.states, cell.output, cell.vectors, cell.scalars)
    if key not in _DERIVATIONS:
        _DERIVATIONS[key] = derive(cell)
    return _DERIVATIONS[key]


def prove(
    cell: Cell,
    n_a: int = 1,
    n_x: int = 1,
    T: int = 3,
    modes: tuple[LossMode, ...] = LOSS_MODES,
    points: int = 3,
    seed: int = 0,
    exact: bool = False,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> ProofReport:
    """Compare direct differentiation of the unrolled Error with the engine, gradient by gradient.

    Each step's Error is differentiated once per symbol and shared by both loss modes (many-to-one
    scores only the last step).  The differentiations are independent, so they run on ``executor``: by
    default :class:`LocalProcesses` (``workers`` forked processes, default one per CPU, that send back only
    verdicts); :class:`symbolic_lstm.distributed.DaskExecutor` runs one task per gradient entry on a cluster.
    """
    for mode in modes:
        if mode not in LOSS_MODES:
            raise ValueError(f"loss mode must be one of {', '.join(LOSS_MODES)}, got {mode!r}")
    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}")
    cell = for_proof(cell)
    net = UnrolledNet(cell, n_a, n_x, T)
    d = derivation_of(cell)
    ours = {mode: engine_gradients(net, d, mode) for mode in modes}
    wrt = list(net.wrt())
    jobs = [(name, k, sym) for name, syms in wrt for k, sym in enumerate(syms)]
    atoms = indeterminates(net.step_errors + [e for g in ours.values() for m in g.values() for e in m])
    rng = random.Random(seed)
    scored = {mode: frozenset(t for t in range(1, T + 1) if net.scored(t, mode)) for mode in modes}
    job = _Job(net.step_errors, scored, ours, [random_point(atoms, rng) for _ in range(points)], exact)
    verdicts = decide(job, jobs, executor or LocalProcesses(workers), progress)
    method = method_of(points, exact)
    lines = ProofReport()
    for mode in modes:
        for name, syms in wrt:
            ok = all(verdicts[(name, k)][mode] for k in range(len(syms)))
            lines.append(ProofLine(name, tuple(syms.shape), len(syms), ok, n_a, n_x, T, mode, method))
    return lines


@dataclass
class _Job:
    """What every obligation reads (sent once to each process or Dask worker): plain SymPy data."""

    step_errors: list[sp.Expr]
    scored: dict[LossMode, frozenset[int]]  # the steps each loss mode scores
    engine: dict[LossMode, dict[str, sp.Matrix]]
    points: list[Point]
    exact: bool


_JOB: _Job | None = None


class Executor(Protocol):
    """Where a proof's obligations run: ``map(check, context, jobs, progress)`` returns
    ``dict(check(job, context) for job in jobs)``, calling ``progress(done, total, gradient)`` as verdicts
    arrive.  :class:`LocalProcesses` here; :class:`symbolic_lstm.distributed.DaskExecutor` on a cluster."""

    def map(self, check: Callable, context: Any, jobs: list, progress: Progress | None) -> dict: ...


@dataclass(frozen=True)
class LocalProcesses:
    """``workers`` processes forked with the context in hand (default: one per CPU; one runs in this process)."""

    workers: int | None = None

    def map(self, check: Callable, context: Any, jobs: list, progress: Progress | None) -> dict:
        global _JOB
        _JOB = context
        try:
            return _run(check, self.workers, jobs, progress)
        finally:
            _JOB = None


def decide(job: _Job, jobs: list[tuple[str, int, sp.Symbol]], executor: Executor, progress: Progress | None) -> dict:
    """Every obligation's verdicts (one per gradient entry), run on ``executor``."""
    return executor.map(_check, job, jobs, progress)


def method_of(points: int, exact: bool) -> str:
    """How every line's identity was checked, as the lines print it."""
    return f"equal at {points} random rational points" + ("; difference expands to 0" if exact else "")


def _check(
    job: tuple[str, int, sp.Symbol], context: _Job | None = None
) -> tuple[tuple[str, int], dict[LossMode, bool]]:
    """Differentiate every step's Error by one symbol and compare with the engine in each mode."""
    name, k, sym = job
    ctx = context or _JOB
    assert ctx is not None
    # the direct side: ∂(each term)/∂sym at each point, by forward-mode differentiation of the expression
    # (None where the point lies on a pole or a kink: not a point to judge at); the engine's side evaluated in
    # the same exact arithmetic, sharing the forward values
    evaluators = _evaluators(ctx)
    at_points = [_direct_at(ctx.step_errors, sym, ev) for ev in evaluators]
    per_step = [sp.diff(e, sym) for e in ctx.step_errors] if ctx.exact else None
    verdict = {}
    for mode, grads in ctx.engine.items():
        ours = grads[name][k]
        ok, compared = True, 0
        for ev, direct in zip(evaluators, at_points, strict=True):
            if direct is None:
                continue
            try:
                vb = ev.value(ours)
            except UnjudgedPointError:
                continue  # a denominator vanishes here (log's 1/(1 + e^s) where e^s drew −1): not a point to judge at
            compared += 1
            ok = ok and sum((g for t, g in enumerate(direct, 1) if t in ctx.scored[mode]), Fraction(0)) == vb
        ok = ok and compared > 0
        if ok and per_step is not None:
            direct_expr = sp.Add(*(g for t, g in enumerate(per_step, 1) if t in ctx.scored[mode]))
            ok = _polynomial_zero(direct_expr - ours)
        verdict[mode] = bool(ok)
    return (name, k), verdict


#: One evaluator per point of the current job, kept by each process across the entries it checks.
_EVALUATORS: tuple[object, list[Evaluator]] | None = None


def _evaluators(ctx: _Job) -> list[Evaluator]:
    global _EVALUATORS
    if _EVALUATORS is None or _EVALUATORS[0] is not ctx:
        _EVALUATORS = (ctx, [Evaluator(p) for p in ctx.points])
    return _EVALUATORS[1]


def _direct_at(terms: list[sp.Expr], sym: sp.Symbol, ev: Evaluator) -> list[Fraction] | None:
    try:
        return [ev.derivative(e, sym) for e in terms]
    except UnjudgedPointError:
        return None


def _leave_interrupts_to_parent() -> None:
    """Ctrl-C reaches the pool's processes too: only the parent, which stops the pool, should act on it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


#: ``progress(done, total, gradient)``: called as each obligation (a gradient entry) is decided.
Progress = Callable[[int, int, str], None]


def _run(check: Callable, workers: int | None, jobs: list, progress: Progress | None = None) -> dict:
    n = len(jobs)
    workers = min(workers or os.cpu_count() or 1, n)
    out: dict = {}

    def collect(results: Iterator) -> dict:
        for key, verdict in results:
            out[key] = verdict
            if progress is not None:
                progress(len(out), n, key[0])
        return out

    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        with multiprocessing.get_context("fork").Pool(workers, initializer=_leave_interrupts_to_parent) as pool:
            return collect(pool.imap_unordered(check, jobs))
    return collect(map(check, jobs))


def _polynomial_zero(expr: sp.Expr) -> bool:
    """Is ``expr`` 0 as a polynomial in its function applications, symbols and roots?

    Every indeterminate becomes a fresh symbol (outermost applications first, so each is one indeterminate;
    b^(p/q) a power of one symbol per base), then the difference is expanded.
    """
    functions = [a for a in indeterminates([expr]) if not isinstance(a, sp.Symbol)]
    point = random_point(functions, random.Random(0), sp.Dummy)
    return sp.expand(point.at(expr)) == 0


def prove_all(
    cell: Cell,
    sizes: list[tuple[int, int]],
    T: int = 3,
    modes: tuple[LossMode, ...] = LOSS_MODES,
    **kw: object,
) -> Iterator[ProofLine]:
    """Run :func:`prove` for every size (both loss modes at once)."""
    for n_a, n_x in sizes:
        yield from prove(cell, n_a, n_x, T, modes, **kw)  # type: ignore[arg-type]
