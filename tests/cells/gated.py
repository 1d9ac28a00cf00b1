"""A one-gate user cell for the tests that need a cell from a file (copied into a temporary folder first)."""

import sympy as sp

from symbolic_lstm import CellBuilder, sigmoid


def build():
    cell = CellBuilder("gated", inputs=("x",), states=("a",), output="a", description="one gate")
    a_prev, x = cell.prev("a"), cell.input("x")
    f = cell.stage("Gamma_f", sigmoid(cell.linear("sum_f", [a_prev, x], weight="W_f", bias="b_f")))
    h = cell.stage("h", sp.tanh(cell.linear("sum_h", [a_prev, x], weight="W_h", bias="b_h")))
    cell.stage("a", (1 - f) * a_prev + f * h)
    return cell.build()
