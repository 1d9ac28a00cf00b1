"""The output heads' backward statements, printed from their derivations (:mod:`symbolic_lstm.heads`) by any
backend's printer: ∂Error/∂z of the softmax cross-entropy and of the linear read-out, and the projection's rules
(∂W_y, ∂b_y, ∂a) from SymPy's matrix calculus."""

from __future__ import annotations

import sympy as sp

from ..heads import linear_mse, softmax_ce
from ..printer_numpy import KernelPrinter
from .lines import matrix_symbol


def head_code(printer: KernelPrinter) -> dict[str, str]:
    """The softmax cross-entropy head's statements: ``dz`` (P − Y), ``dW``, ``db``, ``da``, in the names the
    templates use (P, Y, A, dZ, W_y)."""
    h = softmax_ce()
    r = h.rules
    ms = matrix_symbol
    return {
        "dz": printer.doprint(h.dz.xreplace({sp.Symbol("p"): sp.Symbol("P"), sp.Symbol("y"): sp.Symbol("Y")})),
        "dW": printer.doprint(r.weight["a"].xreplace({r.D: ms("dZ"), r.Z["a"]: ms("A")})),
        "db": printer.doprint(r.bias.xreplace({r.D: ms("dZ")})),
        "da": printer.doprint(r.operand["a"].xreplace({r.D: ms("dZ"), r.W["a"]: ms("W_y")})),
    }


def regression_dz(printer: KernelPrinter) -> str:
    """∂Error/∂ŷ of the linear read-out's ½ Σ (ŷ − y)², in the names Z (ŷ) and Y."""
    return printer.doprint(linear_mse().dz.xreplace({sp.Symbol("z"): sp.Symbol("Z"), sp.Symbol("y"): sp.Symbol("Y")}))
