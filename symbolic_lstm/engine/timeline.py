"""The derivation unrolled over t, t+1: step-local symbols in the article's time-indexed notation.

A :class:`Timeline` turns the engine's step-local symbols into time-indexed ones (``c_prev`` at step t →
c<t-1>) and writes the gradient arriving from the next step as the article does: δc<t+1>·∂c<t+1>/∂c<t>
where the state has one consumer, ∂Error<t+1>/∂a<t> where it forks (its own derivation is a<t-1>'s).
Read by the LaTeX (:mod:`symbolic_lstm.document.emit_latex`) and by the kernels' comments
(:mod:`symbolic_lstm.codegen`), so neither depends on the other.
"""

from __future__ import annotations

import sympy as sp

from .derivation import LossMode, StepDerivation, concat_symbol
from .functions import UnitSum
from .notation import ERROR, Partial, future


class Timeline:
    """Translate step-local expressions to the time-indexed notation of step ``t`` (None: symbolic t).

    With a concrete ``t`` and the unroll length ``T`` the boundary conditions apply.  Values of every
    partial met on the way are collected in :attr:`values`, ready for ``xreplace``.
    """

    def __init__(
        self,
        d: StepDerivation,
        t: int | None = None,
        T: int | None = None,
        mode: LossMode = "many-to-many",
        values: dict[sp.Expr, sp.Expr] | None = None,
        shift: int = 0,
    ) -> None:
        self.d, self.t, self.T, self.mode, self.shift = d, t, T, mode, shift
        self.values: dict[sp.Expr, sp.Expr] = {} if values is None else values
        self._symbols: dict[sp.Symbol, sp.Expr] = {}

    def label(self, off: int = 0) -> str:
        k = self.shift + off
        if self.t is not None:
            return str(self.t + k)
        return "t" if k == 0 else f"t{k:+d}"

    @property
    def is_last(self) -> bool:
        return self.t is not None and self.T is not None and self.t + self.shift >= self.T

    @property
    def is_scored(self) -> bool:
        """Many-to-one scores only the last step; a symbolic step is shown scored."""
        if self.mode == "many-to-many" or self.t is None or self.T is None:
            return True
        return self.t + self.shift >= self.T

    def next(self) -> Timeline:
        """The same timeline, one step later (where the gradient arriving from t+1 is written)."""
        return Timeline(self.d, self.t, self.T, self.mode, self.values, self.shift + 1)

    # -- translation ----------------------------------------------------------------------------
    def symbol(self, s: sp.Symbol) -> sp.Expr:
        if s not in self._symbols:
            self._symbols[s] = self._symbol(s)
        return self._symbols[s]

    def _symbol(self, s: sp.Symbol) -> sp.Expr:
        cell, name = self.d.cell, s.name
        if s == ERROR:
            return sp.Symbol(f"Error<{self.label()}>")
        if name.startswith("delta_"):
            return sp.Symbol(f"delta_{name[6:]}<{self.label()}>")
        state = cell.state_of_prev(name)
        if state is not None:
            return sp.Symbol(f"{state}<{self.label(-1)}>")
        if name in cell.vectors:
            return s  # unit parameters are shared by all steps
        if name in self.d.graph.nodes or name.endswith("_hat"):
            return sp.Symbol(f"{name}<{self.label()}>")
        for st in cell.linear_stages:
            if s == concat_symbol(st):
                return sp.Symbol(f"{name}<{self.label()}>", commutative=False)
        return s  # parameters and weight blocks carry no time

    def value(self, expr: sp.Expr) -> sp.Expr:
        """Translate an evaluated expression (SymPy may reorder it)."""
        return expr.xreplace({s: self.symbol(s) for s in expr.free_symbols})

    def chain(self, expr: sp.Expr) -> sp.Expr:
        """Translate a chain of partials, keeping its written order and the boundary zeros visible."""
        if isinstance(expr, Partial):
            return self._partial(expr)
        if expr.is_Symbol:
            for s in self.d.cell.states:
                if expr == future(s):
                    return self._future(s)
            return self.symbol(expr)
        if isinstance(expr, UnitSum):
            return UnitSum(self.chain(expr.args[0]))
        if expr.is_Add:
            return sp.Add(*(self.chain(a) for a in expr.args), evaluate=False)
        if expr.is_Mul:
            return sp.Mul(*(self.chain(a) for a in expr.args), evaluate=False)
        return self.value(expr)

    def _partial(self, p: Partial) -> sp.Expr:
        if p.num == ERROR and not self.is_scored:
            return sp.S.Zero
        shown = Partial(self.chain(p.num), self.chain(p.den))
        if p in self.d.partials:
            self.values[shown] = self.value(self.d.partials[p])
        return shown

    def _future(self, state: str) -> sp.Expr:
        if self.is_last:
            return sp.S.Zero
        uses = self.d.graph.uses(f"{state}_prev")
        if len(uses) == 1 and self.d.graph.stage(uses[0].consumer).unitwise:
            return self.next().chain(self.d.chain[f"{state}_prev"])
        return Partial(sp.Symbol(f"Error<{self.label(1)}>"), sp.Symbol(f"{state}<{self.label()}>"))
