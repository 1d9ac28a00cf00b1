"""SymPy's LaTeX printer, taught the article's notation.

Adds only what SymPy lacks: the unevaluated partial ∂num/∂den, and time-indexed names
(symbols named ``node<time>``: ``Gamma_f<t+1>`` prints as ``\\Gamma_f^{<t+1>}``), and two rules for reading
unambiguously: a function raised to a negative power is ``\\left(\\tanh(x)\\right)^{-0.5}``, not SymPy's
``\\tanh^{-0.5}(x)`` (a negative superscript on a function's name reads as its inverse), and a sum over units
Σ_i that a factor follows is bracketed, as SymPy brackets its own ``Sum``.  Everything else — fractions,
powers, tanh², parentheses — is SymPy's own ``latex()``, with its precedence rules.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import sympy as sp
from sympy.printing.latex import LatexPrinter

from ..engine.functions import UnitSum
from ..engine.notation import latex_symbol

if TYPE_CHECKING:
    from ..engine.cell import Cell

_TIMED = re.compile(r"^(?P<delta>delta_)?(?P<name>.+)<(?P<time>[^<>]+)>$")


class ArticleLatexPrinter(LatexPrinter):
    """LaTeX in the article's notation for one cell (``order='none'`` keeps the chain's order)."""

    printmethod = "_latex"  # the package's functions print themselves (functions.py)

    def __init__(self, cell: Cell, settings: dict[str, Any] | None = None) -> None:
        super().__init__({"order": "none", **(settings or {})})
        self.cell = cell

    # -- names -----------------------------------------------------------------------------------
    def base(self, name: str) -> str:
        if name == "Error":
            return r"\mathrm{Error}"
        if name.endswith("_hat"):
            return r"\hat{%s}" % self.cell.latex_name(name[: -len("_hat")])
        return self.cell.latex_name(name)

    def _print_Symbol(self, expr: sp.Symbol, style: str = "plain") -> str:
        m = _TIMED.match(expr.name)
        if m is None:
            if "|" in expr.name:  # columns of W over one operand: W_f|a_prev → W_f^{(a)}
                weight, operand = expr.name.split("|")
                return r"%s^{(%s)}" % (self._print(sp.Symbol(weight)), self.base(operand))
            return (
                latex_symbol(expr.name) if expr.name.replace("_", "").isalnum() else super()._print_Symbol(expr, style)
            )
        name, time = m.group("name"), m.group("time")
        if name.startswith("[") and name.endswith("]"):  # [a<t-1>, x<t>]: time is the step's
            parts = [self._timed(p, time) for p in name[1:-1].split(",")]
            return r"\left[%s\right]" % ", ".join(parts)
        text = r"%s^{<%s>}" % (self.base(name), time)
        return r"\delta %s" % text if m.group("delta") else text

    def _timed(self, node: str, time: str) -> str:
        state = self.cell.state_of_prev(node)
        if state is None:
            return r"%s^{<%s>}" % (self.base(node), time)
        return r"%s^{<%s>}" % (self.base(state), shift_label(time, -1))

    # -- functions and partials -----------------------------------------------------------------
    def _print_Partial(self, expr: sp.Expr) -> str:
        return r"\frac{\partial %s}{\partial %s}" % (self._print(expr.num), self._print(expr.den))

    def _print_Pow(self, expr: sp.Pow) -> str:
        r"""SymPy's power, except a function to a negative power that SymPy would write on the function's name
        (``\tanh^{-1.0}(x)``, which reads as artanh): the call parenthesised, ``\left(\tanh(x)\right)^{-1.0}``.
        (A negative rational power is SymPy's fraction, ``\frac{1}{\tanh(x)}``.)"""
        if expr.base.is_Function and not expr.exp.is_Rational and expr.exp.could_extract_minus_sign():
            return r"\left(%s\right)^{%s}" % (self._print(expr.base), self._print(expr.exp))
        return super()._print_Pow(expr)

    def _needs_mul_brackets(self, expr: sp.Expr, first: bool = False, last: bool = False) -> bool:
        """SymPy's rule, and Σ_i (a :class:`~symbolic_lstm.engine.functions.UnitSum`) bracketed unless it is the last
        factor, as SymPy brackets its own ``Sum``: the big operator would take in the factors after it."""
        return super()._needs_mul_brackets(expr, first=first, last=last) or (not last and expr.has(UnitSum))

    unit_depth = 0  # how many sums over units enclose what is being printed (their indices must differ)


def shift_label(time: str, off: int) -> str:
    """'t' shifted by ``off`` ('t-1', 't+1', …); an integer label shifted as a number."""
    if time.lstrip("-").isdigit():
        return str(int(time) + off)
    m = re.fullmatch(r"t([+-]\d+)?", time)
    if m is None:
        raise ValueError(f"bad time label {time!r}")
    k = int(m.group(1) or 0) + off
    return "t" if k == 0 else f"t{k:+d}"


def latex(expr: sp.Expr, cell: Cell) -> str:
    """Print ``expr`` in the article's notation."""
    return ArticleLatexPrinter(cell).doprint(expr)
