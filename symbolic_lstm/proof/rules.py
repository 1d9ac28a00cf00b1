"""Every n: each stage kind's rule, as the engine produces it, proved at symbolic sizes (:mod:`.sizes` collects them).

The one-step lemma (:mod:`.step`) decides the engine's backward at the sizes tried.  What makes a step's backward
depend on n at all is inside the stage rules — a matrix product over n units and m_k columns per operand, a unit
reading its own unit, a mean's Σ over n units and its 1/n — so those are proved here with n, m_k and B symbols:

* **linear** ``sum = W [u₁, …, u_k] + b``: the engine's :class:`~..engine.derivation.LinearRules` (SymPy's matrix
  calculus at symbolic sizes) and its blocks (:meth:`~..engine.stages.Linear.columns`), each entry read in index
  notation, equal ∂⟨Λ, W[u] + b⟩ by ``u_i[p, q]``, ``W[p, start_i + q]`` and ``b[p]`` — with ``[u]`` the
  concatenation, W's column ``m₁ + … + m_{i−1} + c`` multiplying ``u_i``'s column c.  Once per number of operands.
* **elementwise** ``y = f(operands)``: for a *generic* f (its partials f_1, f_2, … free functions), the engine's δ
  of each operand — derived by :func:`~..engine.derivation.derive` over a cell of that one stage — read at a
  symbolic unit p equals ∂(Σ_{i<n} Λ_i y_i)/∂operand at p: no other unit enters, and a row scalar's δ is Σ over the
  n units.  Once per operand pattern (how many per-unit nodes, unit parameters, row scalars it reads).
* **mean** ``μ = (1/n) Σ_i f(operands)_i``: the same with ∂(Λ μ)/∂operand — the 1/n included.
* **loss** Error<t> = Σ_i ½(â_i − a_i)²: the engine's ∂Error/∂a at unit p.

The value ``y_i`` the direct side differentiates is the stage's own :meth:`compose` over index-notation operations
(:class:`IndexOps`); the engine's side is what the derivation wrote, read at a unit the way the proof reads it at
every size (:func:`at_unit`: a node at unit p, a row scalar its one value, Σ_i over the n units).  Each identity is
decided exactly by :mod:`.indices`.  Nothing is restated here but the definitions of the stages' values.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Protocol

import sympy as sp
from sympy.matrices.expressions.matexpr import MatrixElement

from ..engine.cell import Cell
from ..engine.derivation import LinearRules, StepDerivation
from ..engine.derivation import derive as engine_derive
from ..engine.functions import UnitSum
from ..engine.notation import delta, node, target
from ..engine.stages import N_A, Elementwise, Linear, Reduce, Stage
from . import indices
from .indices import Ranges, same

#: The number of units, rows and operand columns of the symbolic sizes.
N = sp.Symbol("n", integer=True, positive=True)
P, Q = sp.Symbol("p", integer=True, nonnegative=True), sp.Symbol("q", integer=True, nonnegative=True)


# -- values in index notation --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Value:
    """A node's value in index notation: per unit (``at(i)``, i from 0 to n − 1) or one per row (``row``)."""

    at: Callable[[sp.Expr], sp.Expr]
    row: bool = False


def per_unit(name: str) -> Value:
    base = sp.IndexedBase(name)
    return Value(lambda i: base[i])


def row_scalar(name: str) -> Value:
    s = sp.Symbol(name)
    return Value(lambda i: s, row=True)


class IndexOps:
    """The stage operations (:class:`~..engine.stages.StageOps`) in index notation at n symbolic units: what an
    elementwise stage and a mean *are*, the definitions the direct side differentiates."""

    def __init__(self, values: dict[str, Value]) -> None:
        self.values = values

    def product(self, st: Linear) -> Value:
        raise NotImplementedError("a linear stage is proved by its matrix rules (LinearObligation)")

    def unitwise(self, st: Elementwise | Reduce, expr: sp.Expr) -> Value:
        """Unit i of ``expr``: every operand at unit i, a row scalar its one value."""
        vals = self.values

        def at(i: sp.Expr) -> sp.Expr:
            return expr.xreplace({node(r): vals[r].at(i) for r in st.reads})

        return Value(at, row=all(vals[r].row for r in st.reads) and not st.sums_units)

    def mean(self, st: Reduce, value: Value) -> Value:
        i = sp.Dummy("i", integer=True)
        total = sp.Sum(value.at(i), (i, 0, N - 1)) / N
        return Value(lambda _: total, row=True)


def at_unit(expr: sp.Expr, unit: sp.Expr, values: dict[sp.Symbol, Value]) -> sp.Expr:
    """An engine expression in step-local symbols read at ``unit``: a node (or target) its value there
    (``values``), a row scalar its one value, ``UnitSum(e)`` the sum of e over the n units, ``n_a`` the number n."""
    if isinstance(expr, UnitSum):
        j = sp.Dummy("j", integer=True)
        return sp.Sum(at_unit(expr.args[0], j, values), (j, 0, N - 1))
    if expr == N_A:
        return N
    if isinstance(expr, sp.Symbol):
        v = values.get(expr)
        if v is None:
            raise ValueError(f"the engine's rule reads {expr}, which is no operand of the stage")
        return v.at(unit)
    if not expr.args:
        return expr
    return expr.func(*(at_unit(a, unit, values) for a in expr.args))


# -- generic functions ----------------------------------------------------------------------------------------


class _Generic(sp.Function):
    """A differentiable function of its arguments and nothing else: its partial by argument k is the free function
    ``<name>_k`` of the same arguments (so no rewriting can confuse it with a stored value)."""

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.Function(f"{type(self).__name__}_{argindex}")(*self.args)


def generic(name: str) -> type[sp.Function]:
    return type(name, (_Generic,), {})


# -- the obligations ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Verdict:
    """An obligation decided: ``ok``, and what differs where it does not hold."""

    ok: bool
    differs: tuple[str, ...] = ()


class Rule(Protocol):
    """One rule to prove at symbolic sizes: ``name`` (what the proof prints), ``statement`` (the identity in the
    article's notation), ``key`` (a hash of what the engine produced, so a changed rule is proved again) and
    :meth:`decide`."""

    name: str
    statement: str

    @property
    def key(self) -> str: ...

    def decide(self) -> Verdict: ...


@functools.lru_cache(maxsize=1)
def _checker_source() -> str:
    """The source of this module and :mod:`.indices` (hashed): a changed checker proves every rule again."""
    files = (Path(__file__), Path(indices.__file__ or ""))
    return hashlib.sha256(b"".join(f.read_bytes() for f in files)).hexdigest()


def _hash(*parts: object) -> str:
    text = "\x00".join([sp.__version__, _checker_source(), *map(str, parts)])
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _size(i: int) -> sp.Symbol:
    return sp.Symbol(f"m_{i}", integer=True, positive=True)


@dataclass
class LinearObligation:
    """The matrix rules of a linear stage with ``k`` operands, renamed to positional operands u_1 … u_k of widths
    m_1 … m_k (a stage's rules depend on its operands' names only as labels).

    Args:
        rules: the engine's rules of the stage (:attr:`StepDerivation.rules`).
        stage: the stage (its :meth:`~..engine.stages.Linear.columns` place each operand's block).
    """

    rules: LinearRules
    stage: Linear
    name: str = field(init=False)
    statement: str = field(init=False)

    def __post_init__(self) -> None:
        r, st = self.rules, self.stage
        k = len(st.inputs)
        self.name = f"linear rule, {k} operand{'s' if k > 1 else ''}"
        us = ", ".join(f"u_{i}" for i in range(1, k + 1))
        self.statement = f"sum = W[{us}] + b: δu_i = Λ·W_(:, block i), δW = Λᵀ[{us}], δb = Σ_rows Λ"
        B, n = r.D.shape
        self.B, self.n = B, n
        self.m = {op: _size(i) for i, op in enumerate(st.inputs, 1)}
        rename: dict[sp.Basic, sp.Basic] = {}
        for i, op in enumerate(st.inputs, 1):
            rename[r.Z[op]] = sp.MatrixSymbol(f"Z_{i}", B, self.m[op])
            rename[r.W[op]] = sp.MatrixSymbol(f"W_{i}", n, self.m[op])
        self.operand = [r.operand[op].xreplace(rename) for op in st.inputs]
        self.weight = [r.weight[op].xreplace(rename) for op in st.inputs]
        self.bias = r.bias.xreplace(rename)
        self.Z = [rename[r.Z[op]] for op in st.inputs]
        self.Wk = [rename[r.W[op]] for op in st.inputs]
        self.columns = [st.columns(op, self.m.__getitem__) for op in st.inputs]

    @cached_property
    def key(self) -> str:
        parts = [sp.srepr(e) for e in (*self.operand, *self.weight, self.bias)]
        return _hash(self.name, *parts, self.columns, sp.srepr(self.rules.D), sp.srepr(self.rules.b))

    def decide(self) -> Verdict:
        st, r = self.stage, self.rules
        k = len(st.inputs)
        B, n = self.B, self.n
        m = [self.m[op] for op in st.inputs]
        Lam, W, b = sp.IndexedBase("Lambda"), sp.IndexedBase("W"), sp.IndexedBase("b")
        u = [sp.IndexedBase(f"u_{i}") for i in range(1, k + 1)]
        row, unit, col = (sp.Dummy(s, integer=True) for s in "rjc")
        # the definition: column m_1 + … + m_{i−1} + c of W multiplies column c of u_i (the concatenation [u])
        offsets = [sum(m[:i], sp.S.Zero) for i in range(k)]
        product = sum(
            (sp.Sum(W[unit, offsets[i] + col] * u[i][row, col], (col, 0, m[i] - 1)) for i in range(k)), sp.S.Zero
        )
        L = sp.Sum(Lam[row, unit] * (product + b[unit]), (unit, 0, n - 1), (row, 0, B - 1))

        def engine(entry: sp.Expr, i: int | None = None) -> sp.Expr:
            """An entry of an engine rule in the same index notation: D is Λ, Z_i is u_i, W_i's column c is the
            weight's column start_i + c (the engine's block), b is b."""

            def element(e: MatrixElement) -> sp.Expr:
                parent, a, c = e.args
                if parent == r.D:
                    return Lam[a, c]
                if parent == r.b:
                    return b[c]
                for j in range(k):
                    if parent == self.Z[j]:
                        return u[j][a, c]
                    if parent == self.Wk[j]:
                        return W[a, self.columns[j][0] + c]
                raise ValueError(f"the engine's rule reads {parent}, which is no operand of the stage")

            return entry.replace(lambda e: isinstance(e, MatrixElement), element)

        differs = []
        for i in range(k):
            start, stop = self.columns[i]
            if sp.simplify(stop - start - m[i]) != 0:
                differs.append(f"the block of u_{i + 1} has {stop - start} columns, not m_{i + 1}")
            if self.operand[i].shape != (B, m[i]) or not same(
                engine(self.operand[i][P, Q]), sp.diff(L, u[i][P, Q]), Ranges({P: B, Q: m[i]})
            ):
                differs.append(f"δu_{i + 1}")
            if self.weight[i].shape != (n, m[i]) or not same(
                engine(self.weight[i][P, Q]), sp.diff(L, W[P, start + Q]), Ranges({P: n, Q: m[i]})
            ):
                differs.append(f"δW (block {i + 1})")
        if self.bias.shape != (1, n) or not same(engine(self.bias[0, P]), sp.diff(L, b[P]), Ranges({P: n})):
            differs.append("δb")
        return Verdict(not differs, tuple(differs))


#: Operand kinds of a stage that reads them unit by unit: a per-unit node, a unit parameter, a row scalar.
OPERANDS = ("node", "unit parameter", "row scalar")


def pattern_of(cell: Cell, st: Elementwise | Reduce) -> tuple[int, int, int]:
    """How many per-unit nodes, unit parameters and row scalars ``st`` reads."""
    kinds = ["unit parameter" if r in cell.vectors else "row scalar" if r in cell.scalars else "node" for r in st.reads]
    return tuple(kinds.count(k) for k in OPERANDS)  # type: ignore[return-value]


def _plural(count: int, what: str) -> str:
    return f"{count} {what}{'s' if count != 1 else ''}"


@dataclass
class UnitObligation:
    """The rule of an elementwise (``kind`` "elementwise") or mean ("mean") stage that reads ``pattern`` operands
    (per-unit nodes, unit parameters, row scalars), for a generic f: the engine derives one stage ``y = f(…)``
    and every operand's δ is compared at a symbolic unit with ∂(Σ_i Λ_i y_i)/∂operand (a row y: ∂(Λ y))."""

    kind: str
    pattern: tuple[int, int, int]
    name: str = field(init=False)
    statement: str = field(init=False)

    def __post_init__(self) -> None:
        counts = ", ".join(_plural(c, k) for c, k in zip(self.pattern, OPERANDS, strict=True) if c)
        self.name = f"{self.kind} rule, {counts}"
        scalars = self.pattern[2]
        if self.kind == "mean":
            self.statement = "μ = (1/n) Σ_i f(…_i): δv_i = δμ · (1/n) ∂f/∂v at unit i"
            self.statement += "; δr = Σ_i δμ · (1/n) ∂f/∂r at unit i" if scalars else ""
        elif self.pattern[0] + self.pattern[1] == 0:
            self.statement = "y = f(row scalars): δr = δy · ∂f/∂r"
        else:
            self.statement = "y_i = f(…_i): δv_i = δy_i · ∂f/∂v at unit i, no other unit"
            self.statement += "; δr = Σ_i δy_i · ∂f/∂r at unit i" if scalars else ""
        nodes, params, scalars = self.pattern
        names = {
            kind: [f"{letter}{i}" for i in range(1, count + 1)]
            for kind, letter, count in zip(OPERANDS, "upr", self.pattern, strict=True)
        }
        self.operands = [o for k in OPERANDS for o in names[k]]
        f = generic("f")
        expr = f(*(sp.Symbol(o) for o in self.operands))
        scalar_stages = tuple(Reduce(r, generic("g")(sp.Symbol("w")), ("w",)) for r in names["row scalar"])
        kind = Reduce if self.kind == "mean" else Elementwise
        self.stage: Stage = kind("y", expr, tuple(self.operands))
        row = self.kind == "mean" or nodes + params == 0
        self.cell = Cell(
            name="rule",
            inputs=(*names["node"], *(("w",) if scalars else ())),
            states=(),
            stages=(*scalar_stages, self.stage),
            output="y",
            vectors=tuple(names["unit parameter"]),
            scalars=(*names["row scalar"], *(("y",) if row else ())),
        )
        self.row = row

    def _engine(self) -> StepDerivation:
        # Λ: the loss hat(y)·y makes ∂Error/∂y the free adjoint hat(y), as the next step's δ is in the lemma
        return engine_derive(self.cell, scored=("y",), loss=lambda out, hat: hat * out)

    @cached_property
    def _deltas(self) -> dict[str, sp.Expr]:
        """The engine's δ of every operand, every named δ in it replaced by its own (step-local symbols)."""
        d = self._engine()
        memo: dict[str, sp.Expr] = {}

        def full(v: str) -> sp.Expr:
            if v not in memo:
                e = d.evaluate(d.chain[v])
                named = {delta(k): full(k) for k in d.materialised if delta(k) in e.free_symbols}
                memo[v] = e.xreplace(named)
            return memo[v]

        return {o: full(o) for o in self.operands}

    @cached_property
    def key(self) -> str:
        return _hash(self.name, *(sp.srepr(e) for e in self._deltas.values()), sp.srepr(self.stage.unit_expr))

    def decide(self) -> Verdict:
        values: dict[str, Value] = {}
        for o in self.operands:
            values[o] = row_scalar(o) if o.startswith("r") else per_unit(o)
        y = self.stage.compose(IndexOps(values))
        hat = row_scalar("y_hat") if y.row else per_unit("y_hat")
        i = sp.Dummy("i", integer=True)
        L = hat.at(sp.S.Zero) * y.at(sp.S.Zero) if y.row else sp.Sum(hat.at(i) * y.at(i), (i, 0, N - 1))
        symbols = {node(o): v for o, v in values.items()} | {node("y"): y, target("y"): hat}
        differs = []
        for o, ours in self._deltas.items():
            wrt = values[o].at(P)
            if not same(at_unit(ours, P, symbols), sp.diff(L, wrt), Ranges({P: N})):
                differs.append(f"δ{o}")
        return Verdict(not differs, tuple(differs))


@dataclass
class LossObligation:
    """The engine's loss branch: ∂Error<t>/∂a at unit p, for Error<t> = Σ_i ½(â_i − a_i)² over n units."""

    name: str = "loss rule"
    statement: str = "Error<t> = Σ_i ½(â_i − a_i)²: ∂Error<t>/∂a_i = a_i − â_i, no other unit"

    def __post_init__(self) -> None:
        self.cell = Cell(name="rule", inputs=("a",), states=(), stages=(), output="a")

    @cached_property
    def _delta(self) -> sp.Expr:
        d = engine_derive(self.cell, scored=("a",))
        return d.evaluate(d.chain["a"])

    @cached_property
    def key(self) -> str:
        return _hash(self.name, sp.srepr(self._delta))

    def decide(self) -> Verdict:
        a, hat = per_unit("a"), per_unit("a_hat")
        i = sp.Dummy("i", integer=True)
        L = sp.Sum(sp.Rational(1, 2) * (hat.at(i) - a.at(i)) ** 2, (i, 0, N - 1))
        ours = at_unit(self._delta, P, {node("a"): a, target("a"): hat})
        ok = same(ours, sp.diff(L, a.at(P)), Ranges({P: N}))
        return Verdict(ok, () if ok else ("∂Error/∂a",))
