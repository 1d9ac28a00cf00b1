"""Coupled input-forget gate LSTM (CIFG; Greff et al. 2017, "LSTM: A Search Space Odyssey").

The update gate is tied to the forget gate, Γ_u = 1 − Γ_f: what the cell forgets it replaces, with one
gate product fewer than the LSTM.

sum_g = W_g [a<t-1>, x<t>] + b_g            for g in f, c, o
Γ_f = σ(sum_f)   c̃ = tanh(sum_c)   Γ_o = σ(sum_o)
c<t> = c<t-1>·Γ_f + (1 − Γ_f)·c̃
a<t> = tanh(c<t>)·Γ_o
"""

from __future__ import annotations

import sympy as sp

from ..cell import Cell, CellBuilder
from ..functions import sigmoid


def build(name: str = "cifg") -> Cell:
    cell = CellBuilder(
        name,
        inputs=("x",),
        states=("a", "c"),
        output="a",
        description="LSTM with coupled input and forget gates: Γ_u = 1 − Γ_f",
    )
    a_prev, c_prev, x = cell.prev("a"), cell.prev("c"), cell.input("x")
    sums = {g: cell.linear(f"sum_{g}", [a_prev, x], weight=f"W_{g}", bias=f"b_{g}") for g in "fco"}
    gamma_f = cell.stage("Gamma_f", sigmoid(sums["f"]), latex=r"\Gamma_f")
    c_tilde = cell.stage("c_tilde", sp.tanh(sums["c"]), latex=r"\tilde{c}")
    gamma_o = cell.stage("Gamma_o", sigmoid(sums["o"]), latex=r"\Gamma_o")
    c = cell.stage("c", c_prev * gamma_f + (1 - gamma_f) * c_tilde)
    cell.stage("a", sp.tanh(c) * gamma_o)
    return cell.build()
