"""The output heads' backward statements, printed from their derivations (:mod:`symbolic_lstm.heads`) by any
backend's printer: ∂Error/∂z of the softmax cross-entropy and of the linear read-out, and the projection's rules
(∂W_y, ∂b_y, ∂a) from SymPy's matrix calculus."""

from __future__ import annotations

import sympy as sp

from ..engine.heads import linear_mse, softmax_ce
from .lines import matrix_symbol
from .printer_numpy import KernelPrinter


def head_code(printer: KernelPrinter) -> dict[str, str]:
    """The softmax cross-entropy head's statements: ``dz`` (_P − _Y), ``dW``, ``db``, ``da``, in the names the
    templates use (_P, _Y, _A, _dZ, _W_y: the modules' own)."""
    h = softmax_ce()
    r = h.rules
    ms = matrix_symbol
    return {
        "dz": printer.doprint(h.dz.xreplace({sp.Symbol("p"): sp.Symbol("_P"), sp.Symbol("y"): sp.Symbol("_Y")})),
        "dW": printer.doprint(r.weight["a"].xreplace({r.D: ms("_dZ"), r.Z["a"]: ms("_A")})),
        "db": printer.doprint(r.bias.xreplace({r.D: ms("_dZ")})),
        "da": printer.doprint(r.operand["a"].xreplace({r.D: ms("_dZ"), r.W["a"]: ms("_W_y")})),
    }


def regression_dz(printer: KernelPrinter) -> str:
    """∂Error/∂ŷ of the linear read-out's ½ Σ (ŷ − y)², in the names _Z (ŷ) and _Y."""
    return printer.doprint(linear_mse().dz.xreplace({sp.Symbol("z"): sp.Symbol("_Z"), sp.Symbol("y"): sp.Symbol("_Y")}))
