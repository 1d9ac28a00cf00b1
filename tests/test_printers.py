"""Every printer's text means the expression it printed (issue 36): a property test over random expression trees.

Random trees over the language a cell stage may use (:func:`strategies.expressions`) are printed by each printer —
the kernels' NumPy printer, the ``xp.`` printer of the array-API and JAX backends (run on NumPy's and on JAX's
namespace), the in-place ufunc lowering, the comments of generated code, the article's LaTeX — and what each
printed is evaluated at random points and compared with the exact value.

The judge shares nothing with the printers: the exact value is SymPy's ``evalf`` at 30 digits of the expression
with the point substituted; a walk of the tree in mpmath (written here) gives, at each point, the largest
magnitude of any subexpression that contributes (the scale of any cancellation), whether a kink is near (an
argument of Abs/sign/Heaviside within 1e-9 of 0, Max/Min arguments or a Piecewise relation's two sides within
1e-9 of each other), and whether float64 can get the value at all (every contributing value finite, real, and
within float64's range; and the value stable when every node's result is perturbed by a few ulps, the way
stochastic arithmetic estimates rounding error).  At the points that pass, every printer must agree with the
exact value to 1e-12 of max(|value|, scale).

Then the test shows it can fail: with the old ``_print_Pow`` (``n*n`` for a squared symbol) or with a dropped
parenthesis in any printer, the same property finds a counterexample.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import random
import re
import warnings
from collections.abc import Callable

import mpmath
import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, Phase, find, given, settings
from hypothesis import strategies as st
from hypothesis.errors import NoSuchExample
from latex_reader import LatexReadError, read_latex
from strategies import CONSTRUCTS, expressions, kink_arguments_far
from sympy.printing.latex import LatexPrinter

from symbolic_lstm import get_cell
from symbolic_lstm.codegen.backends.numpy import inplace as inplace_module
from symbolic_lstm.codegen.backends.numpy.inplace import inplace, scratch_needed
from symbolic_lstm.codegen.expressions import ExpressionPrinter
from symbolic_lstm.codegen.lines import CommentPrinter
from symbolic_lstm.codegen.printer_numpy import KernelPrinter
from symbolic_lstm.document.printer_latex import ArticleLatexPrinter
from symbolic_lstm.engine.functions import rsqrt, sigmoid, softsign

SYMBOLS = sp.symbols("u0:3")  # any real value
POSITIVE = sp.symbols("p0:2")  # values in [0.25, 4]: what safe trees divide by (a normaliser n, q = 1 + a²)
N_POINTS = 8
RTOL = 1e-12  # printed vs exact, relative to max(|exact|, scale)
KINK = 1e-9  # a kink this close (relative) makes a point unjudgeable
STABLE = 1e-14  # perturbing every node by a few ulps must move the value less than this (relative to the scale)
ULPS = 4 * 2.0**-53

TREES = st.one_of(
    expressions(SYMBOLS, max_depth=3, safe=True, positive=POSITIVE),
    expressions(SYMBOLS, max_depth=3, safe=False, positive=POSITIVE),
)
CASES = st.tuples(TREES, st.integers(0, 2**32 - 1))  # a tree and the seed of its points


def points(seed: int) -> dict[sp.Symbol, np.ndarray]:
    """N_POINTS values of each symbol: uniform in (−3, 3); the positive ones log-uniform in [0.25, 4]."""
    rng = np.random.default_rng(seed)
    env = {s: rng.uniform(-3, 3, N_POINTS) for s in SYMBOLS}
    env.update({s: np.exp(rng.uniform(np.log(0.25), np.log(4), N_POINTS)) for s in POSITIVE})
    return env


# -- the judge -------------------------------------------------------------------------------------------------
class _UnjudgeableError(Exception):
    """This point is near a kink, out of float64's range, not real, or ill-conditioned."""


class _Walk:
    """Values of a tree's nodes at one point in mpmath (30 digits), the largest contributing magnitude, and
    kinks: raises :class:`_UnjudgeableError` where float64 can't be judged.  ``noise`` perturbs every node's
    value by up to ULPS (relative), as rounding would.  ``judge=False`` only evaluates (no kink or range checks:
    for reading back what a printer wrote, at points the original was judged at)."""

    def __init__(self, point: dict[sp.Symbol, float], noise: random.Random | None = None, judge: bool = True) -> None:
        self.point, self.noise, self.judge = point, noise, judge
        self.scale = mpmath.mpf(0)

    def __call__(self, e: sp.Basic) -> mpmath.mpf:
        v = self._value(e)
        if isinstance(v, bool):
            return v
        if isinstance(v, mpmath.mpc):
            if abs(v.imag) > 1e-25 * max(abs(v.real), 1):
                raise _UnjudgeableError("not real")
            v = v.real
        if self.judge and (not mpmath.isfinite(v) or abs(v) > 1e300 or 0 < abs(v) < 1e-290):
            raise _UnjudgeableError("out of float64's range")
        if self.noise is not None:
            v *= 1 + self.noise.uniform(-ULPS, ULPS)
        self.scale = max(self.scale, abs(v))
        return v

    def scaled(self, e: sp.Basic) -> tuple[mpmath.mpf, mpmath.mpf]:
        """``e``'s value and the largest magnitude in its subtree."""
        outer, self.scale = self.scale, mpmath.mpf(0)
        v = self(e)
        inner = self.scale
        self.scale = max(outer, inner)
        return v, inner

    def kink(self, d: mpmath.mpf, scale: mpmath.mpf) -> None:
        """A kink's argument ``d`` (computed from values up to ``scale``) too close to 0 to say which side."""
        if self.judge and abs(d) <= KINK * max(scale, mpmath.mpf(1e-300)):
            raise _UnjudgeableError("near a kink")

    def _value(self, e: sp.Basic) -> mpmath.mpf | bool:
        if e.is_Symbol:
            return mpmath.mpf(self.point[e])
        if e.is_Integer or e.is_Rational:
            return mpmath.mpf(int(e.p)) / int(e.q)
        if e.is_Float:
            return mpmath.mpf(e._mpf_)
        if e is sp.E:
            return mpmath.e
        if e in (sp.true, sp.false):
            return bool(e)
        if e.is_Add:
            return mpmath.fsum(self(a) for a in e.args)
        if e.is_Mul:
            return mpmath.fprod(self(a) for a in e.args)
        if e.is_Pow:
            b, x = self(e.base), self(e.exp)
            if b == 0 and x <= 0:
                raise _UnjudgeableError("0 to a negative power")
            if b != 0 and abs(x * mpmath.log(abs(b))) > 1000:  # far outside float64 (mpmath would take ages)
                raise _UnjudgeableError("out of float64's range")
            return mpmath.power(b, x)
        if isinstance(e, sp.Piecewise):
            for expr, cond in e.args:
                if self(cond):
                    return self(expr)
            raise _UnjudgeableError("no piece applies (nan)")
        if isinstance(e, sp.ITE):
            return self(e.args[1]) if self(e.args[0]) else self(e.args[2])
        if isinstance(e, sp.And):
            return all([self(a) for a in e.args])  # every relation evaluated: its kinks count
        if isinstance(e, sp.Or):
            return any([self(a) for a in e.args])
        if isinstance(e, sp.Not):
            return not self(e.args[0])
        if isinstance(e, sp.core.relational.Relational):
            (lhs, sl), (rhs, sr) = self.scaled(e.lhs), self.scaled(e.rhs)
            self.kink(lhs - rhs, max(sl, sr))
            return {"<": lhs < rhs, "<=": lhs <= rhs, ">": lhs > rhs, ">=": lhs >= rhs}[e.rel_op]
        scaled = [self.scaled(a) for a in e.args]
        args = [v for v, _ in scaled]
        x = args[0]
        if isinstance(e, (sp.Max, sp.Min)):
            for i, (a, sa) in enumerate(scaled):
                for b, sb in scaled[i + 1 :]:
                    self.kink(a - b, max(sa, sb))
            return max(args) if isinstance(e, sp.Max) else min(args)
        if isinstance(e, (sp.Abs, sp.sign, sp.Heaviside, sp.DiracDelta)):
            self.kink(x, scaled[0][1])
            return {sp.Abs: abs(x), sp.sign: mpmath.sign(x), sp.Heaviside: mpmath.mpf(x > 0), sp.DiracDelta: 0}[type(e)]
        smooth: dict[type, Callable[[mpmath.mpf], mpmath.mpf]] = {
            sp.exp: mpmath.exp,
            sp.log: lambda x: mpmath.log(x) if x > 0 else mpmath.mpc(0, 1),
            sp.tanh: mpmath.tanh,
            sigmoid: lambda x: 1 / (1 + mpmath.exp(-x)),
            softsign: lambda x: x / (1 + abs(x)),
            rsqrt: lambda x: 1 / mpmath.sqrt(x) if x > 0 else mpmath.mpc(0, 1),
        }
        if type(e) in smooth:
            return smooth[type(e)](x)
        raise NotImplementedError(f"the judge has no rule for {type(e).__name__}")


def exact(expr: sp.Expr, env: dict[sp.Symbol, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """The exact value at every point (SymPy's evalf, 30 digits) and the tolerance's scale max(|value|,
    contributing subexpressions); NaN at the points that can't be judged (module docstring)."""
    values, scales = np.full(N_POINTS, np.nan), np.full(N_POINTS, np.nan)
    symbols = sorted(expr.free_symbols, key=str)
    with mpmath.workdps(30):
        for i in range(N_POINTS):
            point = {s: float(env[s][i]) for s in env}
            try:
                walk = _Walk(point)
                v = walk(expr)
                scale = max(abs(v), walk.scale)
                for k in range(2):
                    noisy = _Walk(point, random.Random(1000 * i + k))(expr)
                    if abs(noisy - v) > STABLE * scale:
                        raise _UnjudgeableError("ill-conditioned")
            except (_UnjudgeableError, ZeroDivisionError):
                continue
            try:
                truth = expr.xreplace({s: sp.Float(point[s], 30) for s in symbols}).evalf(30)
            except (ValueError, TypeError):  # SymPy evaluates every piece: Max(x, log(x)) in one not taken, x < 0
                continue
            if not (truth.is_number and truth.is_extended_real and truth.is_finite):
                raise AssertionError(f"the two judges disagree on {expr} at {point}: SymPy says {truth}")
            # SymPy's evalf is as precise as the tree's Floats (53 bits): the judges agree far inside the tolerance
            assert abs(mpmath.mpf(sp.Float(truth, 30)._mpf_) - v) <= 1e-14 * scale, (expr, point, truth, v)
            values[i], scales[i] = float(truth), float(scale)
    return values, scales


# -- what each printer's text evaluates to -----------------------------------------------------------------------
def _names(env: dict[sp.Symbol, np.ndarray], convert: Callable = np.asarray) -> dict[str, object]:
    return {s.name: convert(v.copy()) for s, v in env.items()}


def numpy_values(expr: sp.Expr, env: dict[sp.Symbol, np.ndarray]) -> np.ndarray:
    """The kernels' NumPy printer, evaluated with ``np``."""
    return eval(KernelPrinter().doprint(expr), {"np": np}, _names(env))


def array_api_values(expr: sp.Expr, env: dict[sp.Symbol, np.ndarray]) -> np.ndarray:
    """The array-API / JAX printer, evaluated with the array-API namespace of NumPy arrays."""
    xp = importlib.import_module("array_api_compat").array_namespace(np.zeros(1))
    return eval(ExpressionPrinter().doprint(expr), {"xp": xp}, _names(env))


def jax_values(expr: sp.Expr, env: dict[sp.Symbol, np.ndarray]) -> np.ndarray:
    """The array-API / JAX printer, evaluated with ``jax.numpy`` in float64."""
    jax = importlib.import_module("jax")
    with jax.enable_x64(True):
        import jax.numpy as jnp

        out = eval(ExpressionPrinter().doprint(expr), {"xp": jnp}, _names(env, jnp.asarray))
        return np.asarray(out)


def inplace_values(expr: sp.Expr, env: dict[sp.Symbol, np.ndarray]) -> np.ndarray:
    """The NumPy backend's in-place lowering: its statements run with scratch buffers; inputs must not change."""
    scratch = [f"tmp{i}" for i in range(scratch_needed(expr))]
    ns: dict[str, object] = {"np": np, **_names(env), "out": np.full(N_POINTS, np.nan)}
    ns.update({s: np.full(N_POINTS, np.nan) for s in scratch})
    exec("\n".join(inplace(expr, "out", scratch)), ns)
    for s, v in env.items():
        np.testing.assert_array_equal(ns[s.name], v, err_msg=f"the in-place code wrote into its input {s}")
    return ns["out"]  # type: ignore[return-value]


def _heaviside(x: np.ndarray, h0: float = 0.0) -> np.ndarray:
    return np.heaviside(x, h0)


def _piecewise(*pieces: tuple[object, object]) -> np.ndarray:
    out = np.nan
    for value, cond in reversed(pieces):
        out = np.where(cond, value, out)
    return out


COMMENT_NAMES = {
    "sigmoid": lambda x: 1 / (1 + np.exp(-x)), "softsign": lambda x: x / (1 + np.abs(x)), "tanh": np.tanh,
    "exp": np.exp, "log": np.log, "sqrt": np.sqrt, "Abs": np.abs, "sign": np.sign, "H": _heaviside,
    "DiracDelta": np.zeros_like, "max": lambda *a: np.maximum.reduce(np.broadcast_arrays(*a)),
    "min": lambda *a: np.minimum.reduce(np.broadcast_arrays(*a)), "Piecewise": _piecewise, "E": np.e,
    "ITE": np.where,
}  # fmt: skip


def comment_as_python(text: str) -> str:
    """A comment read back as Python: ``·`` → ``*``, ``²`` → ``**2``, ``σ(`` → ``sigmoid(``, ``√(`` → ``sqrt(``.
    Refuses a comment a reader could take two ways: anything after a denominator at the same level
    (``a/n·n``)."""
    _assert_division_ends_product(text)
    return text.replace("·", "*").replace("²", "**2").replace("σ(", "sigmoid(").replace("√(", "sqrt(")


def _assert_division_ends_product(text: str) -> None:
    """After ``/`` and its operand (a name, number or call, or a parenthesised group, with any ``²`` or ``**x``),
    the product must end: ``a/n·n`` and ``a/b/c`` read two ways."""
    i = 0
    while (i := text.find("/", i)) != -1:
        j, depth = i + 1, 0
        while j < len(text):
            c = text[j]
            if c == "(":
                depth += 1
            elif c == ")":
                if depth == 0:
                    break
                depth -= 1
            elif depth == 0 and c in " ,·/+-<>&|=":
                if c == "-" and text[j - 1] in "*e(":  # x**-1, 1e-5
                    j += 1
                    continue
                break
            j += 1
        rest = text[j:].lstrip()
        if rest[:1] in ("·", "/") or (rest[:1] == "*" and rest[:2] != "**"):
            raise AssertionError(f"comment {text!r}: '{text[i:j]}' is followed by {rest[:1]!r} (reads two ways)")
        i += 1


def comment_values(expr: sp.Expr, env: dict[sp.Symbol, np.ndarray]) -> np.ndarray:
    """The comment printer's text, read back as Python with NumPy functions."""
    code = comment_as_python(CommentPrinter().doprint(expr))
    return eval(code, {**COMMENT_NAMES}, _names(env))


_CELL = get_cell("lstm")


def latex_values(expr: sp.Expr, env: dict[sp.Symbol, np.ndarray]) -> np.ndarray:
    """The article's LaTeX, read back by a strict reader (latex_reader.py) into an unevaluated tree, which the
    judge's walk evaluates at each point."""
    text = ArticleLatexPrinter(_CELL).doprint(expr)
    try:
        back = read_latex(text)
    except LatexReadError as e:
        raise AssertionError(f"LaTeX {text!r} of {expr}: {e}") from e
    out = np.full(N_POINTS, np.nan)
    with mpmath.workdps(30):
        for i in range(N_POINTS):
            try:
                out[i] = float(_Walk({s: float(env[s][i]) for s in env}, judge=False)(back))
            except (_UnjudgeableError, ZeroDivisionError):
                continue
    return out


PRINTERS: dict[str, Callable[[sp.Expr, dict[sp.Symbol, np.ndarray]], np.ndarray]] = {
    "numpy": numpy_values,
    "array-api": array_api_values,
    "jax": jax_values,
    "inplace": inplace_values,
    "comment": comment_values,
    "latex": latex_values,
}
#: The printers whose namespace is installed here (array-api-compat is in the [test] extra, JAX is optional).
MISSING = {"array-api": "array_api_compat", "jax": "jax"}
PRINTERS = {k: v for k, v in PRINTERS.items() if k not in MISSING or importlib.util.find_spec(MISSING[k])}


def check(printer: str, expr: sp.Expr, seed: int, want: tuple[np.ndarray, np.ndarray] | None = None) -> None:
    """Assert that ``printer``'s text of ``expr`` evaluates to the exact value at every judgeable point."""
    env = points(seed)
    values, scales = want if want is not None else exact(expr, env)
    judged = ~np.isnan(values)
    if not judged.any():
        return  # nowhere real and finite: nothing to compare
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        got = np.broadcast_to(np.asarray(PRINTERS[printer](expr, env), dtype=float), (N_POINTS,))
    bad = judged & ~(np.abs(got - values) <= RTOL * scales)
    if bad.any():
        i = int(np.argmax(bad))
        at = {s.name: float(env[s][i]) for s in sorted(expr.free_symbols, key=str)}
        raise AssertionError(
            f"{printer} printer: {expr} at {at} gives {got[i]!r}, exact {values[i]!r} (scale {scales[i]:.3g})"
        )


# -- the property --------------------------------------------------------------------------------------------
SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


@SETTINGS
@given(CASES)
def test_every_printer_computes_the_expression(case: tuple[sp.Expr, int]) -> None:
    expr, seed = case
    want = exact(expr, points(seed))
    for printer in PRINTERS:
        check(printer, expr, seed, want)


def test_the_trees_cover_the_language() -> None:
    """Every construct of the language turns up (the strategy is not silently narrower than its docstring)."""
    seen: set[str] = set()

    def covers_everything(e: sp.Expr) -> bool:
        seen.update(name for name, has in CONSTRUCTS.items() if name not in seen and has(e))
        return len(seen) == len(CONSTRUCTS)

    quick = settings(max_examples=3000, deadline=None, database=None, derandomize=True, phases=[Phase.generate])
    try:
        find(TREES, covers_everything, settings=quick)
    except NoSuchExample:
        pytest.fail(f"never drawn in 3000 trees: {sorted(set(CONSTRUCTS) - seen)}")


def test_kink_arguments_far_says_where_a_point_is_too_close_to_a_kink() -> None:
    u0, u1, u2 = SYMBOLS
    near, far = {u0: 1.0, u1: 1.0 + 1e-12, u2: 0.5}, {u0: 1.0, u1: 1.5, u2: 0.5}
    for expr in (sp.Abs(u0 - u1), sp.Max(u0, u1) * u2, sp.Piecewise((u2, u0 < u1), (u0, True)), sp.sign(u1 - u0)):
        assert not kink_arguments_far(expr, near) and kink_arguments_far(expr, far), expr
    assert kink_arguments_far(u0 * u1, near)  # no kink
    assert not kink_arguments_far(sp.Heaviside(sp.log(u2 - u0)), far)  # not real there


ISSUE_FORMS = [
    "u0/p0**2", "-u0*u1/p0**2", "(u0 + u1)**2/p0**2", "1/p0**2",  # issue 36
    "u0 + 0.15/p1**2", "tanh(u0)/p0**2", "-u1*u2*u0/p1**2 + p0", "u0/(p0*p1)**2", "-(u0 + u1)**2/p0",
    "u0**(1/p0**2)", "p0**(p1**(-2))", "(1/p0)**u0", "(p0**u0)**2", "u0/rsqrt(p0)", "p0**rsqrt(p1)",
    "sigmoid(u0)**(-1.0)", "tanh(p0)**(-0.5)", "softsign(p0)**(-u0)", "exp(-u0**2)/p0",
    "Max(u0, u1)**2/p0**2", "Abs(u0 - u1)*u2/p0", "1/(u0*u1)", "(-u0)**p0", "p0**(-1/2)*u0",
    "Piecewise((u0, (u0 < 1) & (u1 > 0)), (1.5, True))", "Heaviside(u0, 1)*u1", "sqrt(p0)**u0",
    "Piecewise((u0, ITE(u0 < 1, u1/Heaviside(u0) < 1, u0 > 2)), (u1, True))",
]  # fmt: skip


@functools.cache
def _form(text: str) -> tuple[sp.Expr, tuple[np.ndarray, np.ndarray]]:
    names = {s.name: s for s in (*SYMBOLS, *POSITIVE)} | {"rsqrt": rsqrt, "sigmoid": sigmoid, "softsign": softsign}
    expr = sp.sympify(text, locals=names)
    return expr, exact(expr, points(7))


@pytest.mark.parametrize("printer", list(PRINTERS))
@pytest.mark.parametrize("form", ISSUE_FORMS)
def test_forms_that_need_parentheses(printer: str, form: str) -> None:
    """The forms of issue 36 and those that broke a printer while this test was written, with every printer."""
    expr, want = _form(form)
    assert not np.isnan(want[0]).all(), "judged nowhere"
    check(printer, expr, 7, want)


# -- it can fail -----------------------------------------------------------------------------------------------
FIND = settings(
    max_examples=3000, deadline=None, database=None, derandomize=True, phases=[Phase.generate],
    suppress_health_check=list(HealthCheck),
)  # fmt: skip


def _fails(printer: str) -> Callable[[tuple[sp.Expr, int]], bool]:
    """Whether the property fails for ``printer`` on a case: a wrong value, or text that doesn't even run."""

    def fails(case: tuple[sp.Expr, int]) -> bool:
        expr, seed = case
        try:
            check(printer, expr, seed)
        except Exception:
            return True
        return False

    return fails


def counterexample(printer: str, mutations: list[tuple[type, str, object]]) -> tuple[sp.Expr, int]:
    """A case on which ``printer``, mutated, fails the property — and the printer as it is passes."""
    with pytest.MonkeyPatch.context() as m:
        for cls, name, mutant in mutations:
            m.setattr(cls, name, mutant)
        case = find(CASES, _fails(printer), settings=FIND)  # NoSuchExample if the property can't see it
    check(printer, *case)
    return case


def _old_print_pow(self: KernelPrinter, expr: sp.Pow, rational: bool = False) -> str:
    """The kernel printer's _print_Pow before issue 36 (``n*n`` for a squared symbol)."""
    if expr.exp.is_Integer and expr.exp.is_negative:
        denom = self._print(sp.Pow(expr.base, -expr.exp, evaluate=False))
        return f"1/({denom})" if -expr.exp != 1 else f"1/{self.parenthesize(expr.base, 60)}"
    if expr.exp.is_Integer and expr.exp == 2 and expr.base.is_Symbol:
        return f"{self._print(expr.base)}*{self._print(expr.base)}"
    return super(KernelPrinter, self)._print_Pow(expr, rational=rational)


@pytest.mark.parametrize("printer", [p for p in ("numpy", "array-api", "jax") if p in PRINTERS])
def test_the_old_print_pow_fails_the_property(printer: str) -> None:
    expr, _ = counterexample(printer, [(KernelPrinter, "_print_Pow", _old_print_pow)])
    assert any(p.is_Pow and p.exp == -2 and p.base.is_Symbol for p in sp.preorder_traversal(expr))


def _no_parentheses(self: object, item: sp.Basic, level: float, *args: object, **kwargs: object) -> str:
    return self._print(item)  # type: ignore[attr-defined]


def _subtract_the_wrong_way(add: Callable) -> Callable:
    """The in-place lowering's ``c − x`` rule with its operands swapped."""

    def mutant(self: object, e: sp.Add, dest: str) -> None:
        add(self, e, dest)
        for k, line in enumerate(self.lines):  # type: ignore[attr-defined]
            m = re.fullmatch(r"np\.subtract\(([^,]+), ([^,]+), out=(\w+)\)", line)
            if m:
                self.lines[k] = f"np.subtract({m[2]}, {m[1]}, out={m[3]})"  # type: ignore[attr-defined]

    return mutant


_Lowering = inplace_module._Lowering
MUTATIONS = {
    "numpy: parenthesize": ("numpy", [(KernelPrinter, "parenthesize", _no_parentheses)]),
    "array-api: parenthesize": ("array-api", [(ExpressionPrinter, "parenthesize", _no_parentheses)]),
    "jax: parenthesize": ("jax", [(ExpressionPrinter, "parenthesize", _no_parentheses)]),
    "inplace: its fallback's parenthesize": ("inplace", [(KernelPrinter, "parenthesize", _no_parentheses)]),
    "inplace: c - x": ("inplace", [(_Lowering, "add", _subtract_the_wrong_way(_Lowering.add))]),
    "comment: parenthesize": ("comment", [(CommentPrinter, "parenthesize", _no_parentheses)]),
    "latex: parenthesize": ("latex", [(LatexPrinter, "parenthesize", _no_parentheses)]),
    "latex: brackets in products": ("latex", [(LatexPrinter, "_needs_mul_brackets", lambda *a, **k: False)]),
}


@pytest.mark.parametrize("mutation", list(MUTATIONS))
def test_a_dropped_parenthesis_fails_the_property(mutation: str) -> None:
    printer, mutations = MUTATIONS[mutation]
    if printer not in PRINTERS:
        pytest.skip(f"{MISSING[printer]} is not installed")
    counterexample(printer, mutations)
