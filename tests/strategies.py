"""Hypothesis strategies for random SymPy expression trees over the language a cell's elementwise stage may use.

:func:`expressions` draws trees of ``+ − × ÷``; integer, negative, fractional (Rational and Float) and symbolic
powers; ``exp``, ``log``, ``sqrt``, σ (:class:`~symbolic_lstm.engine.functions.sigmoid`), ``tanh``, ``softsign``,
``rsqrt``; ``Max``, ``Min``, ``Abs``, ``sign``, ``Heaviside``, ``Piecewise`` (conditions with ``<``, ``<=``, ``>``,
``>=``, ``And``, ``Or``); integers, rationals and floats — over the symbols it is given.  The printer property
test (``test_printers.py``) prints them with every printer; a cell generator builds stages from them.

``safe=True`` draws only trees that are finite and real wherever their symbols are finite and real, with margin:
a denominator is kept away from zero (``1 + u²``, ``2 + tanh(u)``, ``exp(tanh(u))``, ``1 + |u|`` …), ``log``,
``sqrt``, ``rsqrt`` and fractional or symbolic powers only take such positive arguments, ``exp`` takes only
bounded arguments (tanh, σ, softsign inside), and symbolic exponents are bounded (magnitudes stay far inside
float64's range at the default depth).  Symbols given as ``positive`` are promised to be positive, away from
zero and bounded (a normaliser ``n``, ``q = 1 + a²``, a gate σ(…)): safe trees divide by them and take their
powers, logs and roots, the pattern ``a/n²`` of issue 36.
``safe=False`` draws the language without those guards (any denominator, log of anything, ``x**y``, and
``DiracDelta``, which derivatives of jumps contain): its values may be infinite or complex at some points.

SymPy evaluates as it builds (``x − x`` is 0, ``Max(x, x)`` is x, ``Heaviside(2)`` is 1), so some trees
collapse; that is SymPy's canonical form, which is what the code generator sees too.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import sympy as sp
from hypothesis import strategies as st

from symbolic_lstm.engine.functions import rsqrt, sigmoid, softsign

__all__ = ["CONSTRUCTS", "OPERATIONS", "expressions", "kink_arguments_far", "numbers"]

#: Exponents of the power nodes: integer (positive and negative), Rational, Float.
INTEGER_EXPONENTS = (2, 3, 4, -1, -2, -3)
RATIONAL_EXPONENTS = tuple(sp.Rational(p, q) for p, q in ((1, 2), (-1, 2), (3, 2), (-3, 2), (1, 3), (-1, 3), (2, 3)))
FLOAT_EXPONENTS = tuple(sp.Float(f) for f in (0.5, -0.5, 1.5, 0.3, -1.0, 2.0, -2.0, 2.5))

#: What a tree may contain, by name: (strategy-independent) predicates that say whether an expression contains
#: it.  The coverage test checks that :func:`expressions` reaches each of them.
CONSTRUCTS: dict[str, Callable[[sp.Basic], bool]] = {
    "add": lambda e: any(a.is_Add for a in _nodes(e)),
    "subtraction": lambda e: any(a.is_Add and any(t.could_extract_minus_sign() for t in a.args) for a in _nodes(e)),
    "product": lambda e: any(a.is_Mul and sum(not t.is_Number for t in a.args) >= 2 for a in _nodes(e)),
    "division": lambda e: any(a.is_Mul and any(_is_neg_pow(t) for t in a.args) for a in _nodes(e)),
    "negation": lambda e: any(a.is_Mul and a.args[0] == -1 for a in _nodes(e)),
    "square": lambda e: any(a.is_Pow and a.exp == 2 for a in _nodes(e)),
    "integer power": lambda e: any(a.is_Pow and a.exp.is_Integer and a.exp > 2 for a in _nodes(e)),
    "negative integer power": lambda e: any(a.is_Pow and a.exp.is_Integer and a.exp < 0 for a in _nodes(e)),
    "division by a squared symbol": lambda e: any(a.is_Pow and a.exp == -2 and a.base.is_Symbol for a in _nodes(e)),
    "rational power": lambda e: any(a.is_Pow and a.exp.is_Rational and not a.exp.is_Integer for a in _nodes(e)),
    "float power": lambda e: any(a.is_Pow and a.exp.is_Float for a in _nodes(e)),
    "symbolic power": lambda e: any(a.is_Pow and a.exp.free_symbols for a in _nodes(e)),
    "exp": lambda e: e.has(sp.exp),
    "log": lambda e: e.has(sp.log),
    "sqrt": lambda e: any(a.is_Pow and abs(a.exp) == sp.S.Half for a in _nodes(e)),
    "sigmoid": lambda e: e.has(sigmoid),
    "tanh": lambda e: e.has(sp.tanh),
    "softsign": lambda e: e.has(softsign),
    "rsqrt": lambda e: e.has(rsqrt),
    "Max": lambda e: e.has(sp.Max),
    "Min": lambda e: e.has(sp.Min),
    "Abs": lambda e: e.has(sp.Abs),
    "sign": lambda e: e.has(sp.sign),
    "Heaviside": lambda e: e.has(sp.Heaviside),
    "Piecewise": lambda e: e.has(sp.Piecewise),
    "And": lambda e: any(isinstance(a, sp.Piecewise) and a.has(sp.And) for a in _nodes(e)),
    "Or": lambda e: any(isinstance(a, sp.Piecewise) and a.has(sp.Or) for a in _nodes(e)),
    "<": lambda e: e.has(sp.StrictLessThan),
    "<=": lambda e: e.has(sp.LessThan),
    ">": lambda e: e.has(sp.StrictGreaterThan),
    ">=": lambda e: e.has(sp.GreaterThan),
    "float": lambda e: any(a.is_Float for a in _nodes(e)),
    "rational": lambda e: any(a.is_Rational and not a.is_Integer for a in _nodes(e)),
    "negative number": lambda e: any(a.is_Number and a.is_negative for a in _nodes(e)),
}


def _nodes(e: sp.Basic) -> list[sp.Basic]:
    return list(sp.preorder_traversal(e))


def _is_neg_pow(t: sp.Basic) -> bool:
    return bool(t.is_Pow and t.exp.is_number and t.exp.is_negative)


def numbers() -> st.SearchStrategy[sp.Expr]:
    """Integers (negative ones too), rationals (some exact in binary, some not) and floats."""
    return st.one_of(
        st.integers(-4, 4).filter(bool).map(sp.Integer),
        st.sampled_from([(1, 2), (-1, 2), (1, 3), (-2, 3), (3, 4), (-5, 7), (7, 2), (1, 10)]).map(
            lambda pq: sp.Rational(*pq)
        ),
        st.floats(-4, 4, allow_nan=False, allow_subnormal=False).filter(lambda f: abs(f) > 1e-3).map(sp.Float),
    )


def expressions(
    symbols: Sequence[sp.Symbol],
    max_depth: int = 3,
    safe: bool = True,
    positive: Sequence[sp.Symbol] = (),
) -> st.SearchStrategy[sp.Expr]:
    """Random expression trees of at most ``max_depth`` levels of operations over ``symbols`` (any real value)
    and ``positive`` (values promised positive and away from 0, e.g. in [0.25, 4]), in the language a cell stage
    may use (module docstring).  ``safe``: finite and real wherever the symbols are (denominators, logs and
    roots of positive arguments only, exp of bounded arguments).  Shrinks towards leaves and towards the first
    operations of :data:`OPERATIONS`."""
    symbols, positive = tuple(symbols), tuple(positive)
    if not symbols + positive:
        raise ValueError("expressions() needs at least one symbol")
    return _tree(symbols, positive, max_depth, safe, top=True)


@st.composite
def _tree(
    draw: st.DrawFn,
    symbols: tuple[sp.Symbol, ...],
    positive: tuple[sp.Symbol, ...],
    depth: int,
    safe: bool,
    top: bool = False,
) -> sp.Expr:
    leaf = _leaves(symbols + positive)
    if depth == 0 or (not top and draw(st.integers(0, 3)) == 0):  # below the root, a leaf a quarter of the time
        return draw(leaf)
    ops = OPERATIONS if safe else OPERATIONS + UNSAFE_OPERATIONS
    op = draw(st.sampled_from(ops))
    try:
        out = op(_Draws(draw, symbols, positive, depth - 1, safe))
    except (ValueError, TypeError, KeyError, IndexError, NotImplementedError):
        return draw(leaf)  # SymPy refused: Max of a complex constant (log(−2)); a KeyError rewriting a condition
    if out.has(*_NOT_REAL) or any(p.is_number and p.is_extended_real is False for p in out.atoms(sp.Pow)):
        return draw(leaf)  # unsafe trees only: 1/0, log(0), sqrt(−2), (−2)**(1/3) of constants
    if any(isinstance(f, sp.Function) and not isinstance(f, LANGUAGE) for f in out.atoms(sp.Function)):
        return draw(leaf)  # SymPy's own rewriting left the language: |exp(x)| is exp(re(x)) for a complex x
    return out


def _leaves(symbols: tuple[sp.Symbol, ...]) -> st.SearchStrategy[sp.Expr]:
    """A symbol two times in three, else a number (SymPy folds operations on numbers into one)."""
    return st.integers(0, 2).flatmap(lambda k: numbers() if k == 0 else st.sampled_from(symbols))


_NOT_REAL = (sp.I, sp.zoo, sp.nan, sp.oo, sp.S.NegativeInfinity)
#: The functions a tree may contain (SymPy's Piecewise may fold conditions into an ITE).
LANGUAGE = (sp.exp, sp.log, sp.tanh, sigmoid, softsign, rsqrt, sp.Abs, sp.sign, sp.Heaviside, sp.DiracDelta,
            sp.Max, sp.Min, sp.Piecewise)  # fmt: skip


class _Draws:
    """What an operation draws its operands from: subtrees one level down, positive and bounded forms."""

    def __init__(
        self, draw: st.DrawFn, symbols: tuple[sp.Symbol, ...], positive: tuple[sp.Symbol, ...], depth: int, safe: bool
    ) -> None:
        self.draw, self.symbols, self.positive, self.depth, self.safe = draw, symbols, positive, depth, safe

    def sub(self) -> sp.Expr:
        """A subtree one level down."""
        return self.draw(_tree(self.symbols, self.positive, self.depth, self.safe))

    def leaf(self) -> sp.Expr:
        return self.draw(_leaves(self.symbols + self.positive))

    def num(self) -> sp.Expr:
        return self.draw(numbers())

    def pick(self, options: Sequence[object]) -> object:
        return self.draw(st.sampled_from(options))

    def bounded(self) -> sp.Expr:
        """A subtree inside tanh, σ or softsign: in (−1, 1) whatever its value."""
        f = self.pick([sp.tanh, sigmoid, softsign, lambda e: -sp.tanh(e)])
        return f(self.sub())  # type: ignore[operator]

    def positive_form(self) -> sp.Expr:
        """Positive and away from zero (≥ 0.3, or a product of ``positive`` symbols), whatever x is."""
        forms = ["1 + x**2", "2 + tanh(x)", "exp(tanh(x))", "1 + |x|", "sigmoid(x) + 1/2", "1.5 + bounded"]
        if self.positive:
            forms += ["p", "p", "p*p", "p + |x|"]
        form = self.pick(forms)
        if form == "1.5 + bounded":
            return sp.Float(1.5) + self.bounded()
        if form.startswith("p"):
            p = self.pick(self.positive)
            return {"p": p, "p*p": p * self.pick(self.positive), "p + |x|": p + sp.Abs(self.sub())}[form]
        x = self.sub()
        return {
            "1 + x**2": 1 + x**2,
            "2 + tanh(x)": 2 + sp.tanh(x),
            "exp(tanh(x))": sp.exp(sp.tanh(x)),
            "1 + |x|": 1 + sp.Abs(x),
            "sigmoid(x) + 1/2": sigmoid(x) + sp.S.Half,
        }[form]

    def den(self) -> sp.Expr:
        """What may stand under a fraction bar, a log, a root or a fractional power: positive when safe."""
        return self.positive_form() if self.safe else self.sub()

    def exponent_arg(self) -> sp.Expr:
        """An exponent or exp's argument: bounded when safe."""
        return self.bounded() if self.safe else self.sub()

    def condition(self) -> sp.Basic:
        """``lhs op rhs`` with op one of < <= > >=, or And / Or of two of them (never a constant)."""
        for _ in range(5):
            kind = self.pick(["rel", "rel", "and", "or"])
            if kind == "rel":
                c = self._relation()
            else:
                c = (sp.And if kind == "and" else sp.Or)(self._relation(), self._relation())
            if c not in (sp.true, sp.false):
                return c
        return sp.StrictLessThan(self.pick(self.symbols + self.positive), self.num())

    def _relation(self) -> sp.Basic:
        op = self.pick([sp.StrictLessThan, sp.LessThan, sp.StrictGreaterThan, sp.GreaterThan])
        return op(self.sub(), self.leaf())  # type: ignore[operator]


#: The operations a safe tree is built of, simplest first (hypothesis shrinks towards the start).
OPERATIONS: tuple[Callable[[_Draws], sp.Expr], ...] = (
    lambda d: d.sub() + d.sub(),
    lambda d: d.sub() - d.sub(),
    lambda d: -d.sub(),
    lambda d: d.sub() * d.sub(),
    lambda d: d.num() * d.sub(),
    lambda d: d.sub() / d.den(),
    lambda d: d.sub() / d.den() ** d.pick([2, 3]),  # a/n², a/(1 + u²)³
    lambda d: d.num() * d.sub() * d.sub() / d.den() ** d.pick([1, 2]),  # −a·c/n²
    lambda d: d.sub() ** d.pick([2, 3, 4]),
    lambda d: d.den() ** d.pick(INTEGER_EXPONENTS),
    lambda d: d.den() ** d.pick(RATIONAL_EXPONENTS),
    lambda d: d.den() ** d.pick(FLOAT_EXPONENTS),
    lambda d: d.den() ** d.exponent_arg(),
    lambda d: sp.exp(d.exponent_arg()),
    lambda d: sp.log(d.den()),
    lambda d: sp.sqrt(d.den()),
    lambda d: rsqrt(d.den()),
    lambda d: sigmoid(d.sub()),
    lambda d: sp.tanh(d.sub()),
    lambda d: softsign(d.sub()),
    lambda d: sp.Abs(d.sub()),
    lambda d: sp.sign(d.sub()),
    lambda d: sp.Heaviside(d.sub()),
    lambda d: sp.Heaviside(d.sub(), d.pick([sp.S.Zero, sp.S.One])),
    lambda d: sp.Max(d.sub(), d.sub()),
    lambda d: sp.Min(d.sub(), d.sub()),
    lambda d: sp.Max(d.sub(), d.num()),
    lambda d: sp.Min(d.sub(), d.sub(), d.sub()),
    lambda d: sp.Piecewise((d.sub(), d.condition()), (d.sub(), True)),
    lambda d: sp.Piecewise((d.sub(), d.condition()), (d.sub(), d.condition()), (d.sub(), True)),
)
#: Added when ``safe=False``: the derivative of a jump (what δ statements of a cell with sign/Heaviside contain).
UNSAFE_OPERATIONS: tuple[Callable[[_Draws], sp.Expr], ...] = (lambda d: sp.DiracDelta(d.sub()),)


def kink_arguments_far(expr: sp.Basic, at: Mapping[sp.Symbol, object], rel: float = 1e-9) -> bool:
    """Whether every kink of ``expr`` is clearly on one side at the point ``at`` (symbol → value): the argument of
    each Abs, sign, Heaviside and DiracDelta, the pairwise differences of each Max's and Min's arguments, and
    lhs − rhs of each relation (Piecewise and ITE conditions, taken or not) is farther than
    ``rel``·max(1, |lhs|, |rhs|) from 0, evaluated by SymPy at 30 digits.  Near a kink a float64 evaluation and
    an exact one may take different sides, and the derivative jumps; a kink argument that is not a finite real
    number at the point counts as near."""
    subs = {s: v if isinstance(v, sp.Float) else sp.Float(v, 30) for s, v in at.items()}
    pairs: list[tuple[sp.Expr, sp.Expr]] = []
    for node in sp.preorder_traversal(expr):
        if isinstance(node, (sp.Abs, sp.sign, sp.Heaviside, sp.DiracDelta)):
            pairs.append((node.args[0], sp.S.Zero))
        elif isinstance(node, (sp.Max, sp.Min)):
            pairs += [(a, b) for i, a in enumerate(node.args) for b in node.args[i + 1 :]]
        elif isinstance(node, sp.core.relational.Relational):
            pairs.append((node.lhs, node.rhs))
    for lhs, rhs in pairs:
        try:
            a, b = (sp.sympify(side).xreplace(subs).evalf(30) for side in (lhs, rhs))
        except (ValueError, TypeError):  # Max of a complex value, Heaviside of one: refused by SymPy
            return False
        if not all(v.is_number and v.is_extended_real and v.is_finite for v in (a, b)):
            return False
        if abs(a - b) <= rel * max(1, abs(a), abs(b)):
            return False
    return True
