"""SymPy's LaTeX printer, taught the article's notation.

Adds only what SymPy lacks: the unevaluated partial ∂num/∂den, and time-indexed names
(symbols named ``node<time>``: ``Gamma_f<t+1>`` prints as ``\\Gamma_f^{<t+1>}``).  Everything else —
fractions, powers, tanh², parentheses — is SymPy's own ``latex()``.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import sympy as sp
from sympy.printing.latex import LatexPrinter

from .notation import latex_symbol

if TYPE_CHECKING:
    from .cell import Cell

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
