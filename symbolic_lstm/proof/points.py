"""The proof's random points: a value for every indeterminate of both sides of an identity.

An indeterminate is a symbol (a weight, an input, an initial state), an application of a function that is not a
polynomial operation (σ(…), tanh(…) as its stand-in, a user's function), a power with a symbolic exponent, or a
root (a power with a fractional exponent).  Both sides are polynomials (rational functions) in them, so agreeing
at random values proves the identity with overwhelming probability (Schwartz–Zippel).

**An application's value is keyed by its argument's value, not by how SymPy wrote the argument.**  SymPy
rewrites as it builds — (1 − σ) in one place, −(σ − 1) in another, after |…| took a sign out of a product — so
one function of one value can appear in two spellings; keyed by spelling they would be two independent
indeterminates and a true identity would fail.  So a symbol is drawn up front, and an application is drawn the
first time it is met, from a generator seeded by the point's seed and (function, argument values): the same
wherever and in whatever process it is met (a proof's obligations run in forked processes or on Dask workers).

**Roots.** For every base b whose powers b^(p/q) occur, one random rational r stands for b^(1/L) (L the common
denominator of those exponents), so that b^(p/q) = r^(pL/q); bases equal at the point share their r, and a base
that is an application itself (e^u under √) takes the value r^L.  A root of an even power that the exponent
clears ((u²)^(1/2) = |u|) is no root: it is evaluated exactly.  Beyond a common denominator of ``MAX_ROOT`` (a
float exponent 0.3 is p/2⁵²), each exponent class modulo 1 gets its own value.

**Perfect powers.** SymPy writes (g²)^z as |g|^(2z) and log(g²) as 2·log|g| where it knows g is real, and
leaves them where it does not: a power is keyed by (ρ, k·z) and a log's value is k·log ρ, for the base's value
written as ρ^k with k as large as can be (:func:`perfect_power`), so both spellings meet one value.

**Ranges.** Values are drawn in the range of the function an indeterminate stands for (σ in (0, 1), tanh in
(−1, 1), e^u positive …): the identity holds whatever the values, but the points decide which branch a kink
takes, and in the functions' own ranges they take branches the cell can reach.  A function applied to a number
(rsqrt(3/2), tanh(1)) takes its own value, which SymPy compared when it built a Min or a Piecewise.
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field

import sympy as sp

from ..engine.functions import NONSMOOTH

#: Applications evaluated at each point rather than replaced by an indeterminate (see :mod:`.proof_exact`).
_EVALUATED = (*NONSMOOTH, sp.DiracDelta)
#: Largest common denominator of a base's exponents taken as one root r = b^(1/L); beyond it (a float exponent
#: such as 0.3 is p/2^52) each class of exponents modulo 1 gets its own value (see :class:`Point`).
MAX_ROOT = 64
#: The range of the function an indeterminate stands for, by its class name (see :func:`_range`).
RANGES = {
    "sigmoid": "unit", "opaque_tanh": "signed unit", "tanh": "signed unit", "softsign": "signed unit",
    "logsigmoid": "negative", "opaque_exp": "positive", "exp": "positive", "rsqrt": "positive",
}  # fmt: skip
#: A stand-in for "a root": positive, as the kernels' real root of a positive base is.
_POSITIVE = sp.Symbol("_positive")


def _is_root(e: sp.Basic) -> bool:
    """A power with a fractional rational exponent (√u, u^(−3/2)): algebraic, not rational, at a rational point —
    but not a root of an even power that the exponent clears ((u²)^(1/2) = |u|, (u⁴)^(−3/4) = |u|^(−3)): SymPy
    writes that as |u| wherever it knows u is real and leaves it a root elsewhere, so both forms must take the
    one value |u| at a point (a root is evaluated exactly at a rational point when its base is a perfect power)."""
    if not (isinstance(e, sp.Pow) and e.exp.is_Rational is True and e.exp.is_Integer is False):
        return False
    base = e.base
    return not (isinstance(base, sp.Pow) and base.exp.is_Integer and base.exp.is_even and (base.exp * e.exp).is_Integer)


def _is_application(e: sp.Basic) -> bool:
    """An indeterminate drawn by its argument values: a function application (not one with a kink, which is
    evaluated) or a power with a symbolic exponent."""
    if isinstance(e, sp.Function):
        return not isinstance(e, _EVALUATED)
    return isinstance(e, sp.Pow) and not e.exp.is_Number


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
        if isinstance(e, sp.Symbol) or _is_application(e) or _is_root(e):
            found[e] = None
        stack.extend(e.args)
    return list(found)


def _range(atom: sp.Expr | None) -> str | None:
    """Where an indeterminate's value lies for the function it stands for (:data:`RANGES`; a symbolic power and a
    root positive; anything else any rational)."""
    if atom is None:
        return None
    if atom == _POSITIVE or (isinstance(atom, sp.Pow) and not atom.exp.is_Number):
        return "positive"
    return RANGES.get(type(atom).__name__)


def _rational(rng: random.Random, kind: str | None) -> sp.Expr:
    """A random rational in a range (see :func:`_range`), from many possible values (Schwartz–Zippel's bound)."""
    if kind is None:
        return sp.Rational(rng.randint(-97, 97), rng.randint(1, 89))
    q = rng.randint(2, 9973)
    if kind == "unit":
        return sp.Rational(rng.randint(1, q - 1), q)
    if kind == "signed unit":
        return sp.Rational(rng.randint(1 - q, q - 1), q)
    if kind == "negative":
        return sp.Rational(-rng.randint(1, 9973), rng.randint(1, 89))
    return sp.Rational(rng.randint(1, 9973), rng.randint(1, 89))


#: The functions whose value at a perfect power ρ^k is k times their value at ρ (log ρ^k = k log ρ).
_LOGS = ("log", "opaque_log")
#: The primes tried when a value is written as a perfect power: the squares and cubes SymPy folds, and more.
_PRIMES = (2, 3, 5, 7)


def perfect_power(r: sp.Expr) -> tuple[sp.Expr, int]:
    """``r`` as ρ^k with k as large as the primes reach (ρ > 0 for an even k): (ρ, k); (r, 1) where r is no
    rational, or 0 or ±1.  SymPy writes (g²)^z as |g|^(2z) and log(g²) as 2 log|g| where it knows g is real and
    leaves them elsewhere: keyed by (ρ, k·z) and ρ, both spellings meet one value."""
    if not r.is_Rational or r in (0, 1, -1):
        return r, 1
    k = 1
    while True:
        for prime in _PRIMES:
            num, exact_num = sp.integer_nthroot(abs(int(r.p)), prime)
            den, exact_den = sp.integer_nthroot(int(r.q), prime)
            if exact_num and exact_den and (r > 0 or prime % 2):
                r, k = sp.Rational(num, den) * (1 if r > 0 else -1), k * prime
                break
        else:
            return r, k


def _constant(atom: sp.Expr) -> sp.Expr:
    """A function applied to a number (rsqrt(3/2), tanh(1)) at its own value (the exact rational of its double):
    SymPy compares such constants by value as it builds a Min or a Piecewise, so a random value would take a
    branch the cell never takes on one side of the identity and not on the other."""
    return sp.Rational(float(atom.evalf(30)))


@dataclass
class Point:
    """Values of the indeterminates at one point: ``values`` for symbols (and, where given, applications);
    ``roots`` for every base b of fractional powers, (r, L) with r standing for b^(1/L), so b^(p/q) = r^(pL/q);
    ``classes`` for bases whose exponents' common denominator exceeds ``MAX_ROOT``: for each exponent class
    e modulo 1, (r, e₀) with r standing for b^e₀, so b^e = r·b^(e − e₀) — the relation differentiation
    needs (b^e · b⁻¹ = b^(e−1)) without powers of r of astronomical degree.

    With a ``seed``, an application not in ``values`` is drawn by (function, argument values) (module
    docstring), a fresh symbol instead of a rational where ``symbolic``; ``by_value`` shares roots between
    bases of equal value.  Without one (a point written by hand), such an application stays as it is.
    """

    values: dict[sp.Expr, sp.Expr]
    roots: dict[sp.Expr, tuple[sp.Expr, int]]
    classes: dict[tuple[sp.Expr, sp.Expr], tuple[sp.Expr, sp.Expr]] = field(default_factory=dict)
    seed: int | None = None
    symbolic: bool = False
    by_value: dict[sp.Expr, tuple[sp.Expr, int]] = field(default_factory=dict)
    drawn: dict[tuple[str, tuple[sp.Expr, ...]], sp.Expr] = field(default_factory=dict)

    def draw(self, kind: str | None, key: object) -> sp.Expr:
        """The value of ``key`` at this point: the same for the same key in every process."""
        if self.symbolic:
            return sp.Dummy()
        digest = hashlib.sha256(f"{self.seed}|{key!r}".encode()).digest()
        return _rational(random.Random(int.from_bytes(digest[:8], "big")), kind)

    def power_class(self, value: sp.Expr, frac: sp.Rational) -> sp.Expr:
        """b^f for a base of this value and an exponent's fractional part f whose denominator exceeds MAX_ROOT:
        drawn by value, so every spelling of the base — and every exponent b^(n + f) — meets one number."""
        key = ("power class", (value, frac))
        if key not in self.drawn:
            self.drawn[key] = self.draw("positive", key)  # type: ignore[index]
        return self.drawn[key]  # type: ignore[index]

    def key(self, e: sp.Expr, walk: Callable[[sp.Basic], sp.Expr] | None = None) -> tuple[str, tuple[sp.Expr, ...]]:
        """An application's key: its function and the values of its arguments; a power b^z by (ρ, k·z) for
        b = ρ^k (:func:`perfect_power`)."""
        walk = walk or self.at
        if isinstance(e, sp.Pow):
            rho, k = perfect_power(walk(e.base))
            return "Pow", (rho, k * walk(e.exp))
        return type(e).__name__, tuple(walk(a) for a in e.args)

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
            elif isinstance(e, (sp.re, sp.im)):  # every value is real (SymPy's |b^z| = b^re(z) for unknown z)
                out = walk(e.args[0]) if isinstance(e, sp.re) else sp.S.Zero
            elif _is_root(e):
                out = self._root(e, walk)
            elif self.seed is not None and _is_application(e):
                if e.is_number and not self.symbolic:
                    out = _constant(e)
                else:
                    key, scale = self.key(e, walk), 1
                    if key[0] in _LOGS and len(key[1]) == 1:  # log ρ^k = k log ρ
                        rho, scale = perfect_power(key[1][0])
                        key = (key[0], (rho,))
                    out = self.drawn.get(key)
                    if out is None:
                        out = self.drawn[key] = self.draw(_range(e), key)
                    out = scale * out
            elif not e.args:
                out = e
            else:
                out = e.func(*(walk(a) for a in e.args))
            memo[e] = out
            return out

        return walk(expr)

    def _root(self, e: sp.Pow, walk: Callable[[sp.Basic], sp.Expr]) -> sp.Expr:
        if e.base in self.roots:
            r, L = self.roots[e.base]
            return r ** int(e.exp * L)
        if (e.base, e.exp % 1) in self.classes:
            r, e0 = self.classes[(e.base, e.exp % 1)]
            return r * walk(e.base) ** int(e.exp - e0)
        if self.seed is None:
            return e.func(*(walk(a) for a in e.args))
        value = walk(e.base)  # a base SymPy spelled otherwise than where the point's roots were drawn
        if e.exp.q > MAX_ROOT:  # b^(n + f), f = p/2^52: b^f a value of its own, by b's value and f
            frac = e.exp % 1
            return self.power_class(value, frac) * value ** int(e.exp - frac)
        r, L = self.by_value.get(value, (None, 0))
        if r is None or not (e.exp * L).is_Integer:
            L = int(e.exp.q)
            r, L = self.by_value.setdefault(value, (self.draw("positive", ("root", value, L)), L))
        return r ** int(e.exp * L)


def random_point(atoms: list[sp.Expr], rng: random.Random, draw: Callable[[], sp.Expr] | None = None) -> Point:
    """A point for these indeterminates: a random rational for every symbol (``draw``: fresh symbols instead,
    for the exact expansion — and then every application and root a fresh symbol too), applications drawn by
    argument values as they are met, and one root per base of fractional powers (module docstring)."""
    symbolic = draw is not None
    point = Point({}, {}, seed=rng.getrandbits(64), symbolic=symbolic)
    for a in atoms:
        if isinstance(a, sp.Symbol):
            point.values[a] = draw() if draw is not None else _rational(rng, _range(a))

    def fresh() -> sp.Expr:
        return draw() if draw is not None else _rational(rng, "positive")

    denominators: dict[sp.Expr, int] = {}
    for a in atoms:
        if _is_root(a):
            denominators[a.base] = math.lcm(denominators.get(a.base, 1), int(a.exp.q))
    for b in sorted((b for b, L in denominators.items() if L <= MAX_ROOT), key=_sizes()):  # inner bases first
        L = denominators[b]
        if _is_application(b):  # e^u under √: e^u is its root's power
            r = fresh()
            point.roots[b] = (r, L)
            point.values[b] = point.drawn[point.key(b)] = r**L
            continue
        value = point.at(b)  # bases equal at the point share their root: SymPy writes one base two ways
        shared = point.by_value.get(value)
        r, L = shared if shared is not None and shared[1] % L == 0 else (fresh(), L)
        point.roots[b] = (r, L)
        point.by_value.setdefault(value, (r, L))
    for a in atoms:
        if _is_root(a) and a.base not in point.roots and (a.base, a.exp % 1) not in point.classes:
            frac = a.exp % 1
            point.classes[(a.base, frac)] = (point.power_class(point.at(a.base), frac), frac)
    return point


def _sizes() -> Callable[[sp.Expr], int]:
    """The number of distinct subtrees of an expression (shared ones once), memoised: a sort key that puts a
    base before every base that contains it."""
    memo: dict[sp.Basic, int] = {}

    def size(e: sp.Basic) -> int:
        if e not in memo:
            memo[e] = 1 + sum(size(a) for a in e.args)
        return memo[e]

    return size
