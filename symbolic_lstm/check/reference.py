"""The judge's interpreter: a cell's stages evaluated by walking their SymPy expression trees over NumPy arrays.

Nothing here prints code.  Each stage's expression is compiled once into a tree of small Python closures, one per
node of the SymPy tree (``Add`` adds its arguments, ``tanh`` calls ``np.tanh`` on its argument's value, …), and
the stages are run step by step as the cell lists them (a linear stage as ``[inputs…] Wᵀ + b``, a mean over the
units of a row).  It shares nothing with what it judges — no printer, no template, no derivative, none of the
code generator — only SymPy and the cell definition itself; :mod:`symbolic_lstm.check.complex_step` differentiates it.

One evaluator serves real and complex arrays.  On complex arrays (the complex step) every function is its
analytic continuation: the elementary functions are NumPy's complex ufuncs, and a function with a kink or a jump
is the analytic branch the *real part* of its argument selects — ``Max(a, b)`` is ``a`` where Re a ≥ Re b,
``|a|`` is ``a·sign(Re a)``, ``sign``, ``Heaviside`` and ``Piecewise`` conditions read real parts — so the
imaginary part carries the derivative of the side the point lies on.  On real arrays that is the ordinary value.

The package's own functions are evaluated from their definitions, not from how the kernels print them:
σ(z) = 1/(1 + e^{−z}) (in the form that cannot overflow), log σ(z) = −log(1 + e^{−z}), softsign(z) = z/(1 + |z|),
rsqrt(z) = 1/√z.  A
``sympy.Function`` of a user's own is evaluated by SymPy's ``lambdify`` (SymPy's NumPy printer, with the
function's own ``_numpycode``): its definition is the user's.  Heaviside(0) is 0 unless the cell gives another
H0 than SymPy's default ½ — the cell language's convention (relu′(0) = 0, as in PyTorch).
"""

from __future__ import annotations

import operator
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import reduce

import numpy as np
import sympy as sp

from ..engine.cell import Cell
from ..engine.functions import logsigmoid, rsqrt, sigmoid, softsign
from ..engine.stages import Linear, Stage

Arrays = Mapping[str, np.ndarray]
#: A problem's per-step inputs: the first input's array (a cell with one input), or every input by name.
Inputs = np.ndarray | Mapping[str, np.ndarray]
Value = np.ndarray | float
Compiled = Callable[[Arrays], Value]
#: (step, node) → an array added to that node's value at that step (its leading axes are independent copies).
Perturbation = Mapping[tuple[int, str], np.ndarray]


class JudgeError(ValueError):
    """The reference cannot evaluate an expression (a construct outside the cell language)."""


def inputs_of(cell: Cell, x: Inputs) -> dict[str, np.ndarray]:
    """Every per-step input of a problem by name, (…, T, B, width) each: ``x`` itself where it names them, or the
    one input's array.

    Raises:
        ValueError: ``x`` is one array but the cell reads several inputs, or a mapping that misses one.
    """
    if isinstance(x, Mapping):
        missing = [i for i in cell.inputs if i not in x]
        if missing:
            raise ValueError(f"cell {cell.name!r} reads the inputs {cell.inputs}; missing {missing}")
        return {i: x[i] for i in cell.inputs}
    if len(cell.inputs) != 1:
        raise ValueError(f"cell {cell.name!r} reads the inputs {cell.inputs}: pass every one by name, not one array")
    return {cell.inputs[0]: x}


def _sigmoid(z: np.ndarray) -> np.ndarray:
    """1/(1 + e^{−z}), with the exponent's real part never positive (no overflow): e^{z}/(1 + e^{z}) for Re z < 0."""
    right = np.real(z) >= 0
    e = np.exp(np.where(right, -z, z))
    return np.where(right, 1 / (1 + e), e / (1 + e))


def _logsigmoid(z: np.ndarray) -> np.ndarray:
    """log σ(z) = −log(1 + e^{−z}), as z − log(1 + e^{z}) where Re z < 0 (no overflow either side)."""
    right = np.real(z) >= 0
    return np.where(right, 0, z) - np.log1p(np.exp(np.where(right, -z, z)))


def _softsign(z: np.ndarray) -> np.ndarray:
    return z / (1 + _abs(z))


def _rsqrt(z: np.ndarray) -> np.ndarray:
    return 1 / np.sqrt(z)


def _abs(z: np.ndarray) -> np.ndarray:
    return z * np.sign(np.real(z))


#: One-argument functions and what they compute, on real or complex arrays.
UNARY: dict[type, Callable[[np.ndarray], np.ndarray]] = {
    sp.exp: np.exp,
    sp.log: np.log,
    sp.sin: np.sin,
    sp.cos: np.cos,
    sp.tan: np.tan,
    sp.sinh: np.sinh,
    sp.cosh: np.cosh,
    sp.tanh: np.tanh,
    sp.asin: np.arcsin,
    sp.acos: np.arccos,
    sp.atan: np.arctan,
    sp.asinh: np.arcsinh,
    sp.acosh: np.arccosh,
    sp.atanh: np.arctanh,
    sp.Abs: _abs,
    sp.sign: lambda z: np.sign(np.real(z)),
    sigmoid: _sigmoid,
    logsigmoid: _logsigmoid,
    softsign: _softsign,
    rsqrt: _rsqrt,
}

_COMPARE = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


def compile_expression(expr: sp.Basic) -> Compiled:
    """``expr`` as a function of the arrays its symbols name (``{name: array}``), by walking its tree once."""
    if isinstance(expr, sp.Symbol):
        name = expr.name
        return lambda env: env[name]
    if isinstance(expr, sp.Expr) and not expr.free_symbols:
        return _constant(expr)
    if isinstance(expr, sp.Piecewise):
        return _piecewise(expr)
    args = [compile_expression(a) for a in expr.args]
    if isinstance(expr, sp.Add):
        return lambda env: reduce(operator.add, (f(env) for f in args))
    if isinstance(expr, sp.Mul):
        return lambda env: reduce(operator.mul, (f(env) for f in args))
    if isinstance(expr, sp.Pow):
        return _power(expr, *args)
    if isinstance(expr, (sp.Max, sp.Min)):
        keep = operator.ge if isinstance(expr, sp.Max) else operator.le

        def pick(a: Value, b: Value) -> Value:
            return np.where(keep(np.real(a), np.real(b)), a, b)

        return lambda env: reduce(pick, (f(env) for f in args))
    if isinstance(expr, sp.Heaviside):
        at_zero = 0.0 if len(expr.args) == 1 or expr.args[1] == sp.S.Half else _number(expr.args[1])
        arg = args[0]
        return lambda env: _heaviside(np.real(arg(env)), at_zero)
    if type(expr) in UNARY and len(args) == 1:
        fn, arg = UNARY[type(expr)], args[0]
        return lambda env: fn(arg(env))
    if isinstance(expr, sp.UnevaluatedExpr):
        return args[0]
    if isinstance(expr, sp.Function) and type(expr).__module__.split(".")[0] != "symbolic_lstm":
        return _user_function(expr, args)
    raise JudgeError(f"the reference cannot evaluate {type(expr).__name__} (in {expr})")


def _number(expr: sp.Expr) -> float:
    value = complex(sp.N(expr, 30))
    if value.imag != 0 or not np.isfinite(value.real):
        raise JudgeError(f"the constant {expr} is not a finite real number")
    return value.real


def _constant(expr: sp.Expr) -> Compiled:
    value = _number(expr)
    return lambda env: value


def _power(expr: sp.Pow, base: Compiled, exponent: Compiled) -> Compiled:
    e = expr.exp
    if e.is_Integer:  # z**k: exact repeated products for any sign of z
        k = int(e)
        return lambda env: base(env) ** k
    if e == sp.S.Half:
        return lambda env: np.sqrt(base(env))
    return lambda env: base(env) ** exponent(env)


def _heaviside(x: np.ndarray, at_zero: float) -> np.ndarray:
    return np.where(x > 0, 1.0, np.where(x == 0, at_zero, 0.0))


def _condition(cond: sp.Basic) -> Callable[[Arrays], np.ndarray | bool]:
    """A Piecewise condition on the real parts of its sides."""
    if cond == sp.true or cond == sp.false:
        return lambda env: bool(cond)
    if isinstance(cond, sp.core.relational.Relational) and cond.rel_op in _COMPARE:
        op, lhs, rhs = _COMPARE[cond.rel_op], compile_expression(cond.lhs), compile_expression(cond.rhs)
        return lambda env: op(np.real(lhs(env)), np.real(rhs(env)))
    parts = [_condition(c) for c in cond.args]
    if isinstance(cond, sp.ITE):  # if-then-else of conditions, which SymPy makes of nested Piecewise conditions
        return lambda env: np.where(parts[0](env), parts[1](env), parts[2](env))
    if isinstance(cond, sp.Xor):
        return lambda env: reduce(np.logical_xor, (c(env) for c in parts))
    if isinstance(cond, sp.And):
        return lambda env: reduce(np.logical_and, (c(env) for c in parts))
    if isinstance(cond, sp.Or):
        return lambda env: reduce(np.logical_or, (c(env) for c in parts))
    if isinstance(cond, sp.Not):
        return lambda env: np.logical_not(parts[0](env))
    raise JudgeError(f"the reference cannot evaluate the condition {cond}")


def _piecewise(expr: sp.Piecewise) -> Compiled:
    """The first branch whose condition holds, element by element (nan where none does, as SymPy's)."""
    branches = [(compile_expression(e), _condition(c)) for e, c in expr.args]

    def run(env: Arrays) -> Value:
        with np.errstate(all="ignore"):  # a branch not taken may be undefined where it is not taken
            out: Value = np.nan
            for value, cond in reversed(branches):
                out = np.where(cond(env), value(env), out)
        return out

    return run


def _user_function(expr: sp.Function, args: list[Compiled]) -> Compiled:
    """A function of the user's own: SymPy's lambdify of it on its arguments' values."""
    dummies = sp.symbols(f"_u0:{len(args)}")
    try:
        fn = sp.lambdify(dummies, type(expr)(*dummies), modules=[{"np": np}, "numpy"])
        with np.errstate(all="ignore"):
            fn(*(np.full(1, 0.5) for _ in dummies))  # a name SymPy printed but NumPy lacks fails here, not later
    except Exception as e:  # SymPy's printer knows no way to evaluate it with NumPy
        raise JudgeError(f"the reference cannot evaluate {type(expr).__name__} with NumPy: {e}") from None
    return lambda env: fn(*(f(env) for f in args))


def _concatenate(arrays: list[np.ndarray]) -> np.ndarray:
    """The operands of a linear stage side by side (last axis), their leading axes broadcast against each other."""
    lead = np.broadcast_shapes(*(a.shape[:-1] for a in arrays))
    return np.concatenate([np.broadcast_to(a, (*lead, a.shape[-1])) for a in arrays], axis=-1)


def kink_arguments(expr: sp.Expr) -> list[sp.Expr]:
    """Expressions whose sign changes where ``expr`` has a kink or a jump: the argument of |·|, sign and
    Heaviside; a − b for every pair of a Max or Min; lhs − rhs of every Piecewise condition."""
    return [k for k in _kink_arguments(expr) if k.free_symbols]  # a constant never changes sign: no kink


def _kink_arguments(expr: sp.Expr) -> list[sp.Expr]:
    out: list[sp.Expr] = []
    for e in sp.preorder_traversal(expr):
        if isinstance(e, (sp.Abs, sp.sign, sp.Heaviside)):
            out.append(e.args[0])
        elif isinstance(e, (sp.Max, sp.Min)):
            args = list(e.args)
            out += [args[i] - args[j] for i in range(len(args)) for j in range(i + 1, len(args))]
        elif isinstance(e, sp.Piecewise):
            for _, cond in e.args:
                out += [
                    r.lhs - r.rhs for r in sp.preorder_traversal(cond) if isinstance(r, sp.core.relational.Relational)
                ]
    return out


#: A value beyond this is an overflow for the checks: it would be infinite in float32 (3.4e38), and its products
#: soon in float64.
LIMIT = 1e30


@dataclass(frozen=True)
class _Arrays:
    """A stage's value at one step as NumPy arrays, by the judge's own interpreter (its
    :class:`~..engine.stages.StageOps` in arrays): ``env`` the step's values so far, ``p`` the parameters;
    ``kinks``, where given, collects every kink argument's value at every unit (before a mean sums the units)."""

    compiled: Mapping[str, tuple[Compiled, list[Compiled]]]
    env: Mapping[str, np.ndarray]
    p: Arrays
    kinks: list[np.ndarray] | None

    def product(self, st: Linear) -> np.ndarray:
        z = _concatenate([self.env[k] for k in st.inputs])
        value = np.matmul(z, np.swapaxes(np.asarray(self.p[st.weight]), -1, -2))
        return value if st.bias is None else value + np.expand_dims(self.p[st.bias], -2)

    def unitwise(self, st: Stage, expr: sp.Expr) -> np.ndarray:
        fn, kink_fns = self.compiled[st.name]
        value = np.asarray(fn(self.env))
        if self.kinks is not None:
            self.kinks.extend(np.broadcast_to(k(self.env), value.shape).ravel() for k in kink_fns)
        return value

    def mean(self, st: Stage, value: np.ndarray) -> np.ndarray:
        return np.mean(value, axis=-1, keepdims=True)


@dataclass(frozen=True)
class NotFinite:
    """The first stage whose value is not finite (or beyond :data:`LIMIT`) on a problem, and why."""

    step: int  # 1-based
    stage: str
    count: int  # values not finite, of
    size: int
    overflow: bool  # too large (an exponential of a large sum), rather than undefined (a log of a negative, x/0)


class Reference:
    """The cell's stages compiled once, then run on any number of problems at once (real or complex arrays)."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.compiled: dict[str, tuple[Compiled, list[Compiled]]] = {
            st.name: (compile_expression(expr), [compile_expression(k) for k in kink_arguments(expr)])
            for st in cell.stages
            for expr in st.expressions
        }

    @property
    def nodes(self) -> tuple[str, ...]:
        """Every node of a step, in the order a step computes them: previous states, inputs, then the stages."""
        return (*self.cell.leaves, *(st.name for st in self.cell.stages))

    def run(
        self, x: Inputs, p: Arrays, init: Arrays, kinks: bool = False, perturb: Perturbation | None = None
    ) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
        """Every node's value at every step (x: (T, B, n_x), or every input by name, each (T, B, its width);
        init: ``{state}0`` arrays (B, n_a)) and, with
        ``kinks``, the value of every kink argument at every step and unit, flattened into one array (complex on
        complex arrays: its imaginary part carries the argument's derivative).

        Every array may have the same leading axes as well (x: (…, T, B, n_x), a weight (…, n_a, columns), a
        bias or unit parameter (…, n_a), an initial state (…, B, n_a)): independent problems run at once.
        ``perturb``: ``{(t, node): array}`` added to a node's value at step t (0-based) as soon as it is known —
        to a previous state or an input as the step reads it — so its effect flows on through the graph; the
        arrays may bring leading axes of their own.
        """
        cell = self.cell
        perturb = perturb or {}
        inputs = inputs_of(cell, x)
        state = {s: np.asarray(init[f"{s}0"]) for s in cell.states}
        steps, found = [], []
        for t in range(inputs[cell.inputs[0]].shape[-3]):
            env: dict[str, np.ndarray] = {f"{s}_prev": state[s] for s in cell.states}
            env.update({i: v[..., t, :, :] for i, v in inputs.items()})
            for leaf in cell.leaves:
                if (t, leaf) in perturb:
                    env[leaf] = env[leaf] + perturb[(t, leaf)]
            env.update({v: np.expand_dims(p[v], -2) for v in cell.vectors})  # a row: every batch row reads it
            ops = _Arrays(self.compiled, env, p, found if kinks else None)
            for st in cell.stages:
                value = st.compose(ops)
                if (t, st.name) in perturb:
                    value = value + perturb[(t, st.name)]
                env[st.name] = value
            steps.append(env)
            state = {s: env[s] for s in cell.states}
        return steps, (np.concatenate(found) if found else np.zeros(0))

    def first_not_finite(self, x: Inputs, p: Arrays, init: Arrays, limit: float = LIMIT) -> NotFinite | None:
        """The first stage (in step order) whose value is NaN, infinite or beyond ``limit`` on this real problem,
        and whether that is an overflow (the stage evaluated again with floating-point errors raised says
        "overflow", or its value is merely too large) or a domain error (an invalid operation, a division by 0)."""
        with np.errstate(all="ignore"):
            steps, _ = self.run(x, p, init)
        for t, env in enumerate(steps):
            for st in self.cell.stages:
                value = np.asarray(env[st.name])
                bad = ~np.isfinite(value) | (np.abs(value) > limit)
                if bad.any():
                    return NotFinite(t + 1, st.name, int(bad.sum()), value.size, self._overflows(st.name, env, value))
        return None

    def _overflows(self, stage: str, env: Arrays, value: np.ndarray) -> bool:
        if stage not in self.compiled:  # a linear stage: its operands were finite, so its products are too large
            return True
        try:
            with np.errstate(over="raise", divide="raise", invalid="raise", under="ignore"):
                self.compiled[stage][0](env)
        except FloatingPointError as e:
            return "overflow" in str(e)
        return not np.isnan(value).any()
