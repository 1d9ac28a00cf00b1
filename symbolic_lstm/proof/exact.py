"""Exact comparison at random rational points: the proof's arithmetic.

Identity is checked exactly, with no floating point: every application of an activation (σ(…), tanh(…)) is
replaced by a random rational, as is every remaining symbol (the points: :mod:`symbolic_lstm.proof.points`, which
keys an application by its argument's value, so two spellings of one value are one indeterminate).  Both sides are
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

import random
from dataclasses import replace
from fractions import Fraction

import sympy as sp

from ..engine.cell import Cell
from .points import Point, _is_root, indeterminates, random_point


def exact_constants(cell: Cell) -> Cell:
    """``cell`` with every float in its stages replaced by the exact rational value of that double.

    ``Rational(Float)`` is exact: 0.01 becomes 5764607523034235/576460752303423488, the number the kernels
    multiply by, not 1/100.  Nothing else changes (names, order, LaTeX), so the proof is about the cell as the
    kernels run it.
    """

    def exact(expr: sp.Expr) -> sp.Expr:
        floats = expr.atoms(sp.Float)
        return expr.xreplace({f: sp.Rational(f) for f in floats}) if floats else expr

    stages = tuple(st.map_expressions(exact) for st in cell.stages)
    return replace(cell, stages=stages)


class _Opaque(sp.Function):
    """A function the proof treats as an indeterminate, with the derivative of the SymPy function it stands
    for (``_original``), and none of that function's simplifications: SymPy's tanh asks, for every
    expression it meets, whether its argument is finite by splitting the argument into real and imaginary
    parts — exponential in the depth of an unrolled net (a LayerNorm LSTM over two steps did not finish in
    minutes; with the stand-in it takes a tenth of a second).  The proof never needs those properties."""

    _original: type[sp.Function]

    def _eval_is_real(self) -> bool | None:
        """Real at real arguments where the function is (not log, atanh): what lets SymPy write √(u²) as |u| in
        the unrolled net as the engine's derivative of the same stage does (its nodes are real)."""
        if self._original in (sp.log, sp.atanh):
            return None
        return True if all(a.is_real for a in self.args) else None

    @classmethod
    def eval(cls, *args: sp.Expr) -> sp.Expr | None:
        """At numbers, the function itself: tanh(0) is 0 and Max(2, tanh(1)) can compare, as in the cell."""
        if all(a.is_number for a in args):
            return cls._original(*args)
        return None

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
    stages = tuple(st.map_expressions(opaque) for st in cell.stages)
    return replace(cell, stages=stages)


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
        elif isinstance(e, (sp.re, sp.im)):  # SymPy's |b^z| = b^re(z) where it cannot tell z is real: it is
            out = self.value(e.args[0]) if isinstance(e, sp.re) else Fraction(0)
        elif isinstance(e, sp.Piecewise):
            out = self.value(self._branch(e))
        elif isinstance(e, (sp.sign, sp.Heaviside, sp.DiracDelta)):
            a = self.value(e.args[0])
            if a == 0 and isinstance(e, sp.DiracDelta) and len(e.args) == 1:
                # the derivative of a jump, at the jump: a kink where its argument moves; where it does not (every
                # partial 0: a Heaviside's output, constant nearby), the jump is never crossed and δ(g)·g′ is 0
                if self._moves(e.args[0]):
                    raise UnjudgedPointError("kink")
                out = Fraction(0)
            else:
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
            if cond.lhs == cond.rhs:  # u > u (SymPy keeps it for a node it cannot tell is real): constant, no kink
                return cond.rel_op in ("<=", ">=", "==")
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

    def _moves(self, e: sp.Basic) -> bool:
        """Does ``e`` change, to first order, with any symbol it depends on at this point?"""
        return any(self.derivative(e, s) != 0 for s in sorted(self._depends(e), key=str))

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
        elif isinstance(e, (sp.re, sp.im)):  # of a real value: the value itself, and 0
            out = self._d(e.args[0], wrt, memo) if isinstance(e, sp.re) else zero
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
            if isinstance(e, sp.Function):
                partial = e.fdiff(i + 1)
            elif i == 0:  # ∂(b^v)/∂b = v·b^v/b, through the power itself (b^(v−1) is no indeterminate)
                partial = e.exp * e / e.base
            else:  # ∂(b^v)/∂v = b^v·log b, with SymPy's log, as SymPy's derivative of a power writes it
                partial = e * sp.log(e.base)
            hit = self._partials[(e, i)] = self.value(partial)
        return hit


def polynomial_zero(expr: sp.Expr) -> bool:
    """Is ``expr`` 0 as a polynomial in its function applications, symbols and roots?

    Every indeterminate becomes a fresh symbol (outermost applications first, so each is one indeterminate;
    b^(p/q) a power of one symbol per base), then the difference is expanded.
    """
    functions = [a for a in indeterminates([expr]) if not isinstance(a, sp.Symbol)]
    point = random_point(functions, random.Random(0), sp.Dummy)
    return sp.expand(point.at(expr)) == 0
