"""The GRU as PyTorch's ``nn.GRU`` (and cuDNN, and Keras with ``reset_after=True``) computes it.

The reset gate scales the recurrent product *after* it is taken, bias included, so the candidate has two
products of its own, one over x<t> and one over a<t-1>; they cannot share one weight as in the paper's GRU
(``gru``), whose reset acts before W_h.

sum_r = W_r [a<t-1>, x<t>] + b_r      Γ_r = σ(sum_r)          (reset gate; b_r = b_ir + b_hr)
sum_z = W_z [a<t-1>, x<t>] + b_z      Γ_z = σ(sum_z)          (update gate; b_z = b_iz + b_hz)
sum_in = W_in [x<t>] + b_in                                   (candidate, input half)
sum_hn = W_hn [a<t-1>] + b_hn                                 (candidate, recurrent half)
n = tanh(sum_in + Γ_r·sum_hn)
a<t> = (1 − Γ_z)·n + Γ_z·a<t-1>

From ``torch.nn.GRU`` (gate rows r, z, n in ``weight_ih_l0`` (3H, I) and ``weight_hh_l0`` (3H, H)):
W_r = [W_hr | W_ir], W_z = [W_hz | W_iz], W_in = W_ih[n], W_hn = W_hh[n]; b_r = b_ir + b_hr, b_z = b_iz + b_hz,
b_in = b_ih[n], b_hn = b_hh[n] (see the README's recipe).
"""

from __future__ import annotations

import sympy as sp

from ..cell import Cell, CellBuilder
from ..functions import sigmoid


def build(name: str = "gru_torch") -> Cell:
    cell = CellBuilder(
        name,
        inputs=("x",),
        states=("a",),
        output="a",
        description="GRU as torch.nn.GRU computes it: the reset gate scales W_hn a<t-1> + b_hn",
    )
    a_prev, x = cell.prev("a"), cell.input("x")
    s_r = cell.linear("sum_r", [a_prev, x], weight="W_r", bias="b_r")
    s_z = cell.linear("sum_z", [a_prev, x], weight="W_z", bias="b_z")
    s_in = cell.linear("sum_in", [x], weight="W_in", bias="b_in")
    s_hn = cell.linear("sum_hn", [a_prev], weight="W_hn", bias="b_hn")
    gamma_r = cell.stage("Gamma_r", sigmoid(s_r), latex=r"\Gamma_r")
    gamma_z = cell.stage("Gamma_z", sigmoid(s_z), latex=r"\Gamma_z")
    n = cell.stage("n", sp.tanh(s_in + gamma_r * s_hn))
    cell.stage("a", (1 - gamma_z) * n + gamma_z * a_prev)
    return cell.build()
