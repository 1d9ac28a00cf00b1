"""Cells with more than one per-step input: x<t> (n_x wide) and a context z<t> of its own width n_z.

* ``decoder_gru``: a decoder's GRU — the update gate reads [a<t-1>, x<t>, z<t>], the reset gate only z<t>, the
  candidate [Γ_r·a<t-1>, x<t>, z<t>] (an inner node beside both inputs);
* ``decoder_lstm``: an LSTM whose forget and output gates read [a<t-1>, x<t>, z<t>], whose input gate reads
  [z<t>, a<t-1>] (operands in another order) and whose candidate reads [a<t-1>, x<t>] (not z);
* ``one_reader``: z<t> read by one stage only (a bias-free product added to the state's update);
* ``z_unitwise``: z<t> squashed unit by unit (a node n_z wide) before a product reads it: the stage-by-stage
  layout.
"""

import sympy as sp

from symbolic_lstm import CellBuilder, sigmoid


def decoder_gru():
    cell = CellBuilder("decoder_gru", inputs=("x", "z"), states=("a",), output="a", description="decoder GRU")
    a_prev, x, z = cell.prev("a"), cell.input("x"), cell.input("z")
    u = cell.stage("Gamma_u", sigmoid(cell.linear("sum_u", [a_prev, x, z], weight="W_u", bias="b_u")))
    r = cell.stage("Gamma_r", sigmoid(cell.linear("sum_r", [z], weight="W_r", bias="b_r")))
    ra = cell.stage("ra", r * a_prev)
    h = cell.stage("h_tilde", sp.tanh(cell.linear("sum_h", [ra, x, z], weight="W_h", bias="b_h")))
    cell.stage("a", u * a_prev + (1 - u) * h)
    return cell.build()


def decoder_lstm():
    cell = CellBuilder("decoder_lstm", inputs=("x", "z"), states=("a", "c"), output="a", description="decoder LSTM")
    a_prev, c_prev, x, z = cell.prev("a"), cell.prev("c"), cell.input("x"), cell.input("z")
    f = cell.stage("Gamma_f", sigmoid(cell.linear("sum_f", [a_prev, x, z], weight="W_f", bias="b_f")))
    i = cell.stage("Gamma_i", sigmoid(cell.linear("sum_i", [z, a_prev], weight="W_i", bias="b_i")))
    g = cell.stage("g", sp.tanh(cell.linear("sum_g", [a_prev, x], weight="W_g", bias="b_g")))
    o = cell.stage("Gamma_o", sigmoid(cell.linear("sum_o", [a_prev, x, z], weight="W_o", bias=None)))
    c = cell.stage("c", f * c_prev + i * g)
    cell.stage("a", o * sp.tanh(c))
    return cell.build()


def one_reader():
    cell = CellBuilder("one_reader", inputs=("x", "z"), states=("a",), output="a", description="z read once")
    a_prev, x, z = cell.prev("a"), cell.input("x"), cell.input("z")
    s = cell.linear("sum_a", [a_prev, x], weight="W_a", bias="b_a")
    q = cell.linear("q", [z], weight="W_q", bias=None)
    cell.stage("a", sp.tanh(s) + sp.Rational(1, 2) * sp.tanh(q))
    return cell.build()


def z_unitwise():
    cell = CellBuilder("z_unitwise", inputs=("x", "z"), states=("a",), output="a", description="z squashed")
    a_prev, x, z = cell.prev("a"), cell.input("x"), cell.input("z")
    zz = cell.stage("zz", sp.tanh(z))
    s = cell.linear("sum_a", [a_prev, x, zz], weight="W_a", bias="b_a")
    cell.stage("a", sp.tanh(s))
    return cell.build()
