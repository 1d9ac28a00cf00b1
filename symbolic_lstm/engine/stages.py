"""The stage kinds a cell is written in, each carrying what every consumer asks of it.

A stage says what it computes in three operations — a matrix product over concatenated operands, an expression
applied unit by unit, a mean over the units of a row — and :meth:`compose` puts its own value together from them.
A consumer supplies the operations in its own terms (:class:`StageOps`): the reference judge as NumPy arrays, the
proof as SymPy matrices, the LaTeX and the kernels' comments as text, the code generators as code.  So no consumer
asks which kind a stage is; a new kind is one class here (and, where it needs one, one new operation).

What the engine and the schedule ask besides:

* :attr:`~Linear.expressions` — the SymPy expressions the stage applies (none for a product);
* :meth:`~Linear.map_expressions` — the same stage with its expressions rewritten (the proof's exact stand-ins);
* :attr:`~Linear.unitwise` — its value at unit i depends only on its operands at unit i (a value the backward
  may read again by name: σ(sum_f) is Γ_f);
* :attr:`~Linear.sums_units` — it reads every unit of its operands into one number per row (its operands' δ
  fan out to every unit);
* :attr:`~Linear.unit_expr` — what one unit contributes, whose derivative by an operand is the stage's local
  partial (None for a product, whose reverse rule is matrix calculus: :class:`~.derivation.LinearRules`);
* :attr:`~Linear.rule` — the name of the kind's vector–Jacobian rule, which :mod:`symbolic_lstm.proof.rules` proves
  at symbolic sizes once per kind and operand pattern ("linear", "elementwise", "mean");
* :meth:`Linear.columns` — where an operand's block of columns lies in the weight.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import ClassVar, Protocol, TypeVar

import sympy as sp

T = TypeVar("T")
E = TypeVar("E", bound="_OfExpression")
W = TypeVar("W", int, sp.Expr)

#: The number of units, as it appears in mean stages' derivatives (1/n_a).
N_A = sp.Symbol("n_a", integer=True, positive=True)


class StageOps(Protocol[T]):
    """A consumer's terms for the three operations a stage is composed of."""

    def product(self, st: Linear) -> T:
        """``W [u₁, …, u_k] + b``: the linear stage's value."""
        ...

    def unitwise(self, st: Elementwise | Reduce, expr: sp.Expr) -> T:
        """``expr`` evaluated unit by unit (over every unit of its operands for a stage that then sums them)."""
        ...

    def mean(self, st: Reduce, value: T) -> T:
        """``(1/n_a) Σ_i value_i``: one number per row."""
        ...


@dataclass(frozen=True)
class Linear:
    """``name = weight [inputs…] + bias``: one matrix product over the concatenated inputs (bias may be None);
    ``units`` rows ("n_a", or "n_x" for a node the size of the input)."""

    name: str
    inputs: tuple[str, ...]
    weight: str
    bias: str | None
    units: str = "n_a"

    expressions: ClassVar[tuple[sp.Expr, ...]] = ()
    unitwise: ClassVar[bool] = False
    sums_units: ClassVar[bool] = False
    unit_expr: ClassVar[None] = None
    rule: ClassVar[str] = "linear"  # δu_k = δsum·W_{:, block k}, δW = δsumᵀ[u₁, …], δb = Σ_rows δsum

    @property
    def reads(self) -> tuple[str, ...]:
        return self.inputs

    def columns(self, operand: str, width: Callable[[str], W]) -> tuple[W, W]:
        """(start, stop) of ``operand``'s block of columns in the weight: the operands before it, in the order they
        are listed, then its own (``width``: an operand's number of units — a number or a SymPy size)."""
        i = self.inputs.index(operand)
        start = sum((width(k) for k in self.inputs[:i]), 0)
        return start, start + width(operand)  # type: ignore[return-value]

    def compose(self, ops: StageOps[T]) -> T:
        return ops.product(self)

    def map_expressions(self, f: Callable[[sp.Expr], sp.Expr]) -> Linear:
        return self

    def fingerprint(self) -> str:
        return repr(self)


@dataclass(frozen=True)
class _OfExpression:
    """A stage computed from one SymPy expression ``expr`` in the symbols of earlier nodes (``reads``)."""

    name: str
    expr: sp.Expr
    reads: tuple[str, ...]

    @property
    def expressions(self) -> tuple[sp.Expr, ...]:
        return (self.expr,)

    def map_expressions(self: E, f: Callable[[sp.Expr], sp.Expr]) -> E:
        return replace(self, expr=f(self.expr))

    def fingerprint(self) -> str:
        return repr((self.name, sp.srepr(self.expr), self.reads))


@dataclass(frozen=True)
class Elementwise(_OfExpression):
    """``name = expr``, evaluated unit by unit; ``expr`` is written in the symbols of earlier nodes."""

    unitwise: ClassVar[bool] = True
    sums_units: ClassVar[bool] = False
    rule: ClassVar[str] = "elementwise"  # δv_i = δname_i · ∂expr/∂v at unit i (a row scalar v: Σ_i of those)

    @property
    def unit_expr(self) -> sp.Expr:
        """Unit i's value: ∂name_i/∂v_i is its derivative."""
        return self.expr

    def compose(self, ops: StageOps[T]) -> T:
        return ops.unitwise(self, self.expr)


@dataclass(frozen=True)
class Reduce(_OfExpression):
    """``name = (1/n_a) Σ_i expr_i``: the mean over the units of one row of a per-unit expression."""

    unitwise: ClassVar[bool] = False
    sums_units: ClassVar[bool] = True
    rule: ClassVar[str] = "mean"  # δv_i = δname · (1/n_a) ∂expr/∂v at unit i

    @property
    def unit_expr(self) -> sp.Expr:
        """Unit i's share of the mean: ∂μ/∂v_i = (1/n_a) ∂expr_i/∂v_i."""
        return self.expr / N_A

    def compose(self, ops: StageOps[T]) -> T:
        return ops.mean(self, ops.unitwise(self, self.expr))


Stage = Linear | Elementwise | Reduce
