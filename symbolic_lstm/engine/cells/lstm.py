"""The article's LSTM block, stage by stage (Kang & Seo, "Understanding Backpropagation as Applied to LSTM").

sum_g = W_g [a<t-1>, x<t>] + b_g            for g in f, u, c, o
Γ_f = σ(sum_f)   Γ_u = σ(sum_u)   c̃ = tanh(sum_c)   Γ_o = σ(sum_o)
c<t> = c<t-1>·Γ_f + Γ_u·c̃
a<t> = tanh(c<t>)·Γ_o
"""

from __future__ import annotations

from collections.abc import Callable

import sympy as sp

from ..cell import Cell, CellBuilder
from ..functions import sigmoid

Activation = Callable[[sp.Expr], sp.Expr]


def build(
    candidate: Activation = sp.tanh,
    output_activation: Activation = sp.tanh,
    name: str = "lstm",
) -> Cell:
    """The article's LSTM; ``candidate`` and ``output_activation`` may be swapped to make variants."""
    cell = CellBuilder(
        name,
        inputs=("x",),
        states=("a", "c"),
        output="a",
        description="LSTM block of the article: forget, update, output gates and a tanh candidate",
    )
    a_prev, c_prev, x = cell.prev("a"), cell.prev("c"), cell.input("x")
    sums = {g: cell.linear(f"sum_{g}", [a_prev, x], weight=f"W_{g}", bias=f"b_{g}") for g in "fuco"}
    gamma_f = cell.stage("Gamma_f", sigmoid(sums["f"]), latex=r"\Gamma_f")
    gamma_u = cell.stage("Gamma_u", sigmoid(sums["u"]), latex=r"\Gamma_u")
    c_tilde = cell.stage("c_tilde", candidate(sums["c"]), latex=r"\tilde{c}")
    gamma_o = cell.stage("Gamma_o", sigmoid(sums["o"]), latex=r"\Gamma_o")
    c = cell.stage("c", c_prev * gamma_f + gamma_u * c_tilde)
    cell.stage("a", output_activation(c) * gamma_o)
    return cell.build()
