"""The layer-normalised LSTM (Ba, Kiros & Hinton 2016, "Layer Normalization", §3.1 and Appendix).

Each gate's pre-activation is normalised over the n_a units of its row — mean μ, variance σ², then a
learned gain γ and bias β per unit — and so is c<t> before its tanh.  The matrix products carry no bias
of their own (β takes its place; a bias before the mean subtraction would cancel).  Mean and variance
are *mean stages* (reductions over units); the engine derives their gradients like every other stage.

sum_g = W_g [a<t-1>, x<t>]                                      for g in f, u, c, o
μ_g = mean_i(sum_g)   σ²_g = mean_i((sum_g − μ_g)²)   r_g = 1/√(σ²_g + ε)
Γ_f = σ(γ_f·(sum_f − μ_f)·r_f + β_f)   (likewise Γ_u, Γ_o;  c̃ = tanh(γ_c·(sum_c − μ_c)·r_c + β_c))
c<t> = c<t-1>·Γ_f + Γ_u·c̃
μ_s, σ²_s, r_s of c<t>;   a<t> = Γ_o·tanh(γ_s·(c<t> − μ_s)·r_s + β_s)
"""

from __future__ import annotations

import sympy as sp

from ..cell import Cell, CellBuilder
from ..functions import rsqrt, sigmoid

#: ε of the variance, as in most LayerNorm implementations.
EPS = sp.Rational(1, 10**5)


def build(name: str = "layernorm") -> Cell:
    cell = CellBuilder(
        name,
        inputs=("x",),
        states=("a", "c"),
        output="a",
        description="layer-normalised LSTM (Ba et al. 2016): LayerNorm on every gate pre-activation and on c<t>",
    )
    a_prev, c_prev, x = cell.prev("a"), cell.prev("c"), cell.input("x")

    def layer_norm(v: sp.Symbol, tag: str) -> sp.Expr:
        mu = cell.mean(f"mu_{tag}", v, latex=r"\mu_{%s}" % tag)
        var = cell.mean(f"var_{tag}", (v - mu) ** 2, latex=r"{\sigma^2_{%s}}" % tag)
        r = cell.stage(f"r_{tag}", rsqrt(var + EPS), latex=r"r_{%s}" % tag)
        gain = cell.vector(f"gamma_{tag}", latex=r"\gamma_{%s}" % tag, init=1.0)
        bias = cell.vector(f"beta_{tag}", latex=r"\beta_{%s}" % tag, init=0.0)
        return gain * (v - mu) * r + bias

    sums = {g: cell.linear(f"sum_{g}", [a_prev, x], weight=f"W_{g}", bias=None) for g in "fuco"}
    gamma_f = cell.stage("Gamma_f", sigmoid(layer_norm(sums["f"], "f")), latex=r"\Gamma_f")
    gamma_u = cell.stage("Gamma_u", sigmoid(layer_norm(sums["u"], "u")), latex=r"\Gamma_u")
    c_tilde = cell.stage("c_tilde", sp.tanh(layer_norm(sums["c"], "c")), latex=r"\tilde{c}")
    gamma_o = cell.stage("Gamma_o", sigmoid(layer_norm(sums["o"], "o")), latex=r"\Gamma_o")
    c = cell.stage("c", c_prev * gamma_f + gamma_u * c_tilde)
    cell.stage("a", sp.tanh(layer_norm(c, "s")) * gamma_o)
    return cell.build()
