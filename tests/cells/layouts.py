"""Cells whose layout exercises the backends' grouping of products, not a paper's math.

* ``operands_reversed``: one gate reads [x<t>, a<t-1>] where the others read [a<t-1>, x<t>] (the candidate
  without a bias): the weight gradients' one product over both operands must still hand each weight its own
  columns in its own order.
"""

import sympy as sp

from symbolic_lstm import CellBuilder, sigmoid


def operands_reversed():
    cell = CellBuilder("operands_reversed", inputs=("x",), states=("a", "c"), output="a", description="layout test")
    a_prev, c_prev, x = cell.prev("a"), cell.prev("c"), cell.input("x")
    f = cell.stage("Gamma_f", sigmoid(cell.linear("sum_f", [a_prev, x], weight="W_f", bias="b_f")))
    g = cell.stage("g", sp.tanh(cell.linear("sum_g", [a_prev, x], weight="W_g", bias=None)))
    o = cell.stage("Gamma_o", sigmoid(cell.linear("sum_o", [x, a_prev], weight="W_o", bias="b_o")))
    c = cell.stage("c", f * c_prev + (1 - f) * g)
    cell.stage("a", o * sp.tanh(c))
    return cell.build()
