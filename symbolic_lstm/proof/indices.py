"""Index notation with symbolic bounds, decided exactly: sums over units, rows and columns whose sizes are symbols.

A derivative of ``Σ_i Λ_i f(u_i)`` by one entry ``u_p`` is, by SymPy's ``diff``, a sum of products with Kronecker
deltas (``Σ_i Λ_i f'(u_i) δ_ip``).  :func:`settle` takes every such sum apart: each product becomes one term with
its summation limits hoisted, a delta that binds a summed index substitutes it (``Σ_i δ_ip g(i) = g(p)`` where
``lo ≤ p ≤ hi``), and what is left is written over canonically named indices — so two sides are equal when their
settled forms are the same expression (:func:`same`).  Whether an index lies in a range is decided by
:class:`Ranges`: every free index ``p`` with ``0 ≤ p ≤ N − 1`` is written ``p = κ`` and ``N = κ + 1 + ℓ`` with
κ, ℓ non-negative integers — the same set of cases, in which SymPy decides each inequality by its assumptions.
Nothing here is approximate: a condition SymPy cannot decide stays a ``Piecewise`` factor, and the sides differ.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import sympy as sp

Limit = tuple[sp.Symbol, sp.Expr, sp.Expr]


@dataclass(frozen=True)
class Ranges:
    """The free indices of an identity and their ranges: ``index → N``, meaning ``0 ≤ index ≤ N − 1`` (each
    index its own size symbol)."""

    of: dict[sp.Symbol, sp.Symbol] = field(default_factory=dict)

    def decide(self, condition: sp.Basic) -> bool | None:
        """True or False for every value of the indices in their ranges (and every size), None if undecided."""
        cases: dict[sp.Basic, sp.Expr] = {}
        for k, (index, size) in enumerate(self.of.items()):
            kappa = sp.Symbol(f"kappa{k}", integer=True, nonnegative=True)
            ell = sp.Symbol(f"ell{k}", integer=True, nonnegative=True)
            cases[index] = kappa
            cases[size] = kappa + 1 + ell
        verdict = condition.xreplace(cases) if cases else condition
        if verdict in (sp.true, True):
            return True
        if verdict in (sp.false, False):
            return False
        return None


def terms(expr: sp.Expr) -> list[tuple[sp.Expr, tuple[Limit, ...]]]:
    """``expr`` as a sum of products, each with the limits of the sums it stands in hoisted (bound indices renamed
    apart, so hoisting never captures one)."""
    if isinstance(expr, sp.Add):
        return [t for a in expr.args for t in terms(a)]
    if isinstance(expr, sp.Sum):
        fresh = {v: sp.Dummy(str(v), integer=True) for v, *_ in expr.limits}
        limits = tuple((fresh[v], lo.xreplace(fresh), hi.xreplace(fresh)) for v, lo, hi in expr.limits)
        return [(f, inner + limits) for f, inner in terms(expr.function.xreplace(fresh))]
    if isinstance(expr, sp.Mul):
        out: list[tuple[sp.Expr, tuple[Limit, ...]]] = [(sp.S.One, ())]
        for a in expr.args:
            out = [(f1 * f2, l1 + l2) for f1, l1 in out for f2, l2 in terms(a)]
        return out
    return [(expr, ())]


def _bound_by(delta: sp.KroneckerDelta, v: sp.Symbol) -> sp.Expr | None:
    """The value ``δ(a, b)`` gives ``v`` (a − b = ±v + rest, free of v), or None."""
    diff = sp.expand(delta.args[0] - delta.args[1])
    slope = diff.diff(v)
    if slope not in (sp.S.One, sp.S.NegativeOne):
        return None
    rest = sp.expand(diff - slope * v)
    return None if v in rest.free_symbols else -rest / slope


def settle(expr: sp.Expr, ranges: Ranges) -> sp.Expr:
    """``expr`` with every delta that binds a summed index summed out, its range condition decided by
    ``ranges`` (True: the term stays, False: it is 0, undecided: a ``Piecewise`` factor stays), and the remaining
    summed indices named canonically (k0, k1, … in the order of their limits)."""
    out = []
    for f, limits in terms(sp.expand(expr)):
        f, limits = _sum_out(f, list(limits), ranges)
        if f is sp.S.Zero:
            continue
        canon = {v: sp.Symbol(f"k{i}", integer=True) for i, (v, _, _) in enumerate(limits)}
        f = f.xreplace(canon)
        limits = [(canon[v], lo.xreplace(canon), hi.xreplace(canon)) for v, lo, hi in limits]
        out.append(sp.Sum(f, *limits) if limits else f)
    return sp.Add(*out)


def _sum_out(f: sp.Expr, limits: list[Limit], ranges: Ranges) -> tuple[sp.Expr, list[Limit]]:
    while True:
        found = None
        for delta in (a for a in sp.Mul.make_args(f) if isinstance(a, sp.KroneckerDelta)):
            for lim in limits:
                value = _bound_by(delta, lim[0]) if lim[0] in delta.free_symbols else None
                if value is not None:
                    found = (delta, lim, value)
                    break
            if found:
                break
        if found is None:
            break
        delta, (v, lo, hi), value = found
        limits.remove((v, lo, hi))
        rest = sp.Mul(*(a for a in sp.Mul.make_args(f) if a is not delta)).xreplace({v: value})
        limits = [(w, a.xreplace({v: value}), b.xreplace({v: value})) for w, a, b in limits]
        inside = ranges.decide(sp.And(sp.Le(lo, value), sp.Le(value, hi)))
        if inside is False:
            return sp.S.Zero, []
        f = rest if inside else sp.Piecewise((rest, sp.And(sp.Le(lo, value), sp.Le(value, hi))), (0, True))
    for factor in sp.Mul.make_args(f):  # a delta of two free indices in their ranges: decided if it can be
        if isinstance(factor, sp.KroneckerDelta) and not any(v in factor.free_symbols for v, _, _ in limits):
            equal = ranges.decide(sp.Eq(*factor.args))
            if equal is not None:
                f = f.xreplace({factor: sp.S.One if equal else sp.S.Zero})
    return sp.expand(f), limits


def same(a: sp.Expr, b: sp.Expr, ranges: Ranges) -> bool:
    """Whether ``a`` and ``b`` settle to the same expression: equal for every value of the sizes and of the free
    indices in their ranges.  (Not equal does not always mean different — a form SymPy cannot settle counts as
    not equal, so an identity fails rather than passes when undecided.)"""
    return sp.expand(settle(a, ranges) - settle(b, ranges)) == 0
