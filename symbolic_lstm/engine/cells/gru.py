"""The gated recurrent unit of Cho et al. 2014 ("Learning Phrase Representations using RNN Encoder–Decoder").

The reset gate scales the previous state *before* the candidate's matrix product, so the candidate's
linear stage reads an inner node, r<t>·a<t-1>, instead of a<t-1> itself.

sum_z = W_z [a<t-1>, x<t>] + b_z      Γ_z = σ(sum_z)          (update gate)
sum_r = W_r [a<t-1>, x<t>] + b_r      Γ_r = σ(sum_r)          (reset gate)
ra = Γ_r·a<t-1>
sum_h = W_h [ra<t>, x<t>] + b_h       h~ = tanh(sum_h)        (candidate)
a<t> = Γ_z·a<t-1> + (1 − Γ_z)·h~
"""

from __future__ import annotations

import sympy as sp

from ..cell import Cell, CellBuilder
from ..functions import sigmoid


def build(name: str = "gru") -> Cell:
    cell = CellBuilder(
        name,
        inputs=("x",),
        states=("a",),
        output="a",
        description="GRU of Cho et al. 2014: update and reset gates, the reset applied before W_h",
    )
    a_prev, x = cell.prev("a"), cell.input("x")
    s_z = cell.linear("sum_z", [a_prev, x], weight="W_z", bias="b_z")
    s_r = cell.linear("sum_r", [a_prev, x], weight="W_r", bias="b_r")
    gamma_z = cell.stage("Gamma_z", sigmoid(s_z), latex=r"\Gamma_z")
    gamma_r = cell.stage("Gamma_r", sigmoid(s_r), latex=r"\Gamma_r")
    ra = cell.stage("ra", gamma_r * a_prev, latex=r"r\!a")
    s_h = cell.linear("sum_h", [ra, x], weight="W_h", bias="b_h")
    h_tilde = cell.stage("h_tilde", sp.tanh(s_h), latex=r"\tilde{h}")
    cell.stage("a", gamma_z * a_prev + (1 - gamma_z) * h_tilde)
    return cell.build()
