"""LSTM with peephole connections (Gers & Schmidhuber 2000; Gers, Schraudolph & Schmidhuber 2002).

The gates also look at the cell state through elementwise (diagonal) peephole weights: the forget and
update gates at c<t-1>, the output gate at the new c<t>.

sum_g = W_g [a<t-1>, x<t>] + b_g                 for g in f, u, c, o
Γ_f = σ(sum_f + p_f·c<t-1>)   Γ_u = σ(sum_u + p_u·c<t-1>)   c̃ = tanh(sum_c)
c<t> = c<t-1>·Γ_f + Γ_u·c̃
Γ_o = σ(sum_o + p_o·c<t>)
a<t> = tanh(c<t>)·Γ_o
"""

from __future__ import annotations

import sympy as sp

from ..cell import Cell, CellBuilder
from ..functions import sigmoid


def build(name: str = "peephole") -> Cell:
    cell = CellBuilder(
        name,
        inputs=("x",),
        states=("a", "c"),
        output="a",
        description="LSTM with peephole connections: Γ_f, Γ_u see c<t-1>, Γ_o sees c<t>",
    )
    a_prev, c_prev, x = cell.prev("a"), cell.prev("c"), cell.input("x")
    sums = {g: cell.linear(f"sum_{g}", [a_prev, x], weight=f"W_{g}", bias=f"b_{g}") for g in "fuco"}
    p_f, p_u, p_o = (cell.vector(f"p_{g}") for g in "fuo")
    gamma_f = cell.stage("Gamma_f", sigmoid(sums["f"] + p_f * c_prev), latex=r"\Gamma_f")
    gamma_u = cell.stage("Gamma_u", sigmoid(sums["u"] + p_u * c_prev), latex=r"\Gamma_u")
    c_tilde = cell.stage("c_tilde", sp.tanh(sums["c"]), latex=r"\tilde{c}")
    c = cell.stage("c", c_prev * gamma_f + gamma_u * c_tilde)
    gamma_o = cell.stage("Gamma_o", sigmoid(sums["o"] + p_o * c), latex=r"\Gamma_o")
    cell.stage("a", sp.tanh(c) * gamma_o)
    return cell.build()
