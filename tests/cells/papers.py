"""Cells written from papers as a user would, in their own file: none of them is built in.

* ``gru_torch``: PyTorch's GRU (also built in as ``gru_torch``), the candidate's two products separate;
* ``mi_rnn``: the multiplicative-integration RNN (Wu et al. 2016, "On Multiplicative Integration with
  Recurrent Neural Networks"): a<t> = tanh(α ⊙ Wx ⊙ Ua + β₁ ⊙ Ua + β₂ ⊙ Wx + b), W x<t> and U a<t-1>
  as two bias-free products;
* ``indrnn``: the independently recurrent network (Li et al. 2018): a<t> = relu(W x<t> + u ⊙ a<t-1> + b),
  the recurrence unit by unit, written with ``sp.Max``;
* ``leaky``: a leaky-relu RNN written with a ``Piecewise``; ``hard``: a clipped (hard tanh) RNN with an
  |x| term, reading a<t-1> through a product of its own;
* ``mi_rnn_biased``: the multiplicative-integration RNN as the paper writes it, U a<t-1> with its bias b;
* ``sru``: an SRU whose output is not a state (generate must refuse it, or get it right);
* written the way everyone writes them, with float constants and roots: ``half_tanh`` (tanh(0.5·s)),
  ``leaky_max`` (Max(0.01·s, s)), ``sqrt_unit`` (s/√(1 + s²)), ``softplus_beta`` (log(1 + e^(βs))/β, β = 1.5,
  shifted by −0.3), ``piecewise_float`` (a Piecewise whose condition and branch hold floats), ``float_power``
  ((1 + s²)^0.3 − 1: 0.3 is p/2⁵⁴ exactly).
"""

import sympy as sp

from symbolic_lstm import CellBuilder, sigmoid


def gru_torch():
    cell = CellBuilder("gru_torch_user", inputs=("x",), states=("a",), output="a", description="PyTorch's GRU")
    a_prev, x = cell.prev("a"), cell.input("x")
    s_r = cell.linear("sum_r", [a_prev, x], weight="W_r", bias="b_r")
    s_z = cell.linear("sum_z", [a_prev, x], weight="W_z", bias="b_z")
    s_in = cell.linear("sum_in", [x], weight="W_in", bias="b_in")
    s_hn = cell.linear("sum_hn", [a_prev], weight="W_hn", bias="b_hn")
    r = cell.stage("Gamma_r", sigmoid(s_r))
    z = cell.stage("Gamma_z", sigmoid(s_z))
    n = cell.stage("n", sp.tanh(s_in + r * s_hn))
    cell.stage("a", (1 - z) * n + z * a_prev)
    return cell.build()


def mi_rnn():
    cell = CellBuilder("mi_rnn", inputs=("x",), states=("a",), output="a", description="multiplicative integration")
    a_prev, x = cell.prev("a"), cell.input("x")
    wx = cell.linear("Wx", [x], weight="W", bias=None)
    ua = cell.linear("Ua", [a_prev], weight="U", bias=None)
    alpha, beta1, beta2, b = (cell.vector(n) for n in ("alpha", "beta1", "beta2", "b"))
    cell.stage("a", sp.tanh(alpha * wx * ua + beta1 * ua + beta2 * wx + b))
    return cell.build()


def indrnn():
    cell = CellBuilder("indrnn", inputs=("x",), states=("a",), output="a", description="IndRNN with relu")
    a_prev, x = cell.prev("a"), cell.input("x")
    s = cell.linear("sum_a", [x], weight="W", bias="b")
    u = cell.vector("u")
    cell.stage("a", sp.Max(0, s + u * a_prev))
    return cell.build()


def leaky():
    cell = CellBuilder("leaky", inputs=("x",), states=("a",), output="a", description="leaky-relu RNN")
    a_prev, x = cell.prev("a"), cell.input("x")
    s = cell.linear("sum_a", [a_prev, x], weight="W_a", bias="b_a")
    cell.stage("a", sp.Piecewise((s, s > 0), (s / 10, True)))
    return cell.build()


def hard():
    cell = CellBuilder("hard", inputs=("x",), states=("a",), output="a", description="hard-tanh RNN")
    a_prev, x = cell.prev("a"), cell.input("x")
    sx = cell.linear("sum_x", [x], weight="W_x", bias="b")
    sa = cell.linear("sum_h", [a_prev], weight="W_h", bias=None)
    h = cell.stage("h", sp.Min(1, sp.Max(-1, sx + sa)))
    cell.stage("a", h + sp.Abs(sx) / 4)
    return cell.build()


def mi_rnn_biased():
    cell = CellBuilder("mi_rnn_biased", inputs=("x",), states=("a",), output="a", description="MI-RNN, U a + b")
    a_prev, x = cell.prev("a"), cell.input("x")
    wx = cell.linear("Wx", [x], weight="W", bias=None)
    ua = cell.linear("Ua", [a_prev], weight="U", bias="b")
    alpha, beta1, beta2 = (cell.vector(n) for n in ("alpha", "beta1", "beta2"))
    cell.stage("a", sp.tanh(alpha * wx * ua + beta1 * ua + beta2 * wx))
    return cell.build()


def _simple(name, activation):
    cell = CellBuilder(name, inputs=("x",), states=("a",), output="a", description=name)
    s = cell.linear("s", [cell.prev("a"), cell.input("x")], weight="W", bias="b")
    cell.stage("a", activation(s))
    return cell.build()


def half_tanh():
    return _simple("half_tanh", lambda s: sp.tanh(0.5 * s))


def leaky_max():
    return _simple("leaky_max", lambda s: sp.Max(0.01 * s, s))


def sqrt_unit():
    return _simple("sqrt_unit", lambda s: s / sp.sqrt(1 + s**2))


def softplus_beta():
    beta = 1.5
    return _simple("softplus_beta", lambda s: sp.log(1 + sp.exp(beta * s)) / beta - 0.3)


def piecewise_float():
    return _simple("piecewise_float", lambda s: sp.Piecewise((0.25 * s + 0.375, s > 0.5), (sp.tanh(s), True)))


def sru():
    """SRU (Lei et al. 2018): the state is c, the output h = r ⊙ tanh(c) + (1 − r) ⊙ (a projection of x) is not
    a state (the paper's highway reads x itself; a bias-free projection stands in for it here)."""
    cell = CellBuilder("sru", inputs=("x",), states=("c",), output="h", description="SRU, output not a state")
    x, c_prev = cell.input("x"), cell.prev("c")
    xt = cell.linear("xt", [x], weight="W", bias=None)
    f = cell.stage("f", sigmoid(cell.linear("sum_f", [x], weight="W_f", bias="b_f")))
    r = cell.stage("r", sigmoid(cell.linear("sum_r", [x], weight="W_r", bias="b_r")))
    hw = cell.linear("hw", [x], weight="W_h", bias=None)
    c = cell.stage("c", f * c_prev + (1 - f) * xt)
    cell.stage("h", r * sp.tanh(c) + (1 - r) * hw)
    return cell.build()


def float_power():
    return _simple("float_power", lambda s: (1 + s**2) ** 0.3 - 1)
