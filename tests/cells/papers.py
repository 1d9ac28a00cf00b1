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
  ((1 + s²)^0.3 − 1: 0.3 is p/2⁵⁴ exactly);
* the cells of issue 36, whose modules the old printer got wrong or refused: ``slstm`` and ``slstm_exp``, xLSTM's
  sLSTM (Beck et al. 2024) with its normaliser n and stabiliser m, σ and exponential forget gates — h = o ⊙ c/n;
  ``qcell`` (a = tanh(s)/q², q = 1 + a<t-1>²); ``minlstm`` (Feng et al. 2024, the paper's f_prime and i_prime);
  ``exp_rnn`` (a = e^(W [a<t-1>, x<t>] + b) − 1, which overflows at random scale); ``delta_rnn`` (Ororbia et al.
  2017, the simple Delta-RNN: its gate r = σ(b_r) reads only a unit parameter).
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


# -- issue 27: cells as their papers write them ------------------------------------------------------------


def sru_paper():
    """SRU (Lei et al. 2018, eqs. 3–5): f = σ(W_f x + v_f ⊙ c<t-1> + b_f), r = σ(W_r x + v_r ⊙ c<t-1> + b_r),
    c = f ⊙ c<t-1> + (1 − f) ⊙ (W x), h = r ⊙ c + (1 − r) ⊙ x — the highway reads x itself (n_x = n_a)."""
    cell = CellBuilder("sru_paper", inputs=("x",), states=("c",), output="h", square=True, description="SRU")
    x, c_prev = cell.input("x"), cell.prev("c")
    v_f, v_r = cell.vector("v_f"), cell.vector("v_r")
    f = cell.stage("f", sigmoid(cell.linear("sum_f", [x], weight="W_f", bias="b_f") + v_f * c_prev))
    r = cell.stage("r", sigmoid(cell.linear("sum_r", [x], weight="W_r", bias="b_r") + v_r * c_prev))
    xt = cell.linear("xt", [x], weight="W", bias=None)
    c = cell.stage("c", f * c_prev + (1 - f) * xt)
    cell.stage("h", r * c + (1 - r) * x)
    return cell.build()


def minimal_rnn():
    """MinimalRNN (Chen 2017): z = W_z x, u = σ(U_h h<t-1> + U_z z + b_u), h = u ⊙ h<t-1> + (1 − u) ⊙ z —
    a linear stage (u's sum) that reads another linear stage (z)."""
    cell = CellBuilder("minimal_rnn", inputs=("x",), states=("h",), output="h", description="MinimalRNN")
    x, h_prev = cell.input("x"), cell.prev("h")
    z = cell.linear("z", [x], weight="W_z", bias=None)
    u = cell.stage("u", sigmoid(cell.linear("sum_u", [h_prev, z], weight="U", bias="b_u")))
    cell.stage("h", u * h_prev + (1 - u) * z)
    return cell.build()


def linear_over_linear():
    """The smallest linear-over-linear cell: z = W x; s = V [a<t-1>, z] + b; a = tanh(s)."""
    cell = CellBuilder("linear_over_linear", inputs=("x",), states=("a",), output="a")
    z = cell.linear("z", [cell.input("x")], weight="W", bias=None)
    cell.stage("a", sp.tanh(cell.linear("s", [cell.prev("a"), z], weight="V", bias="b")))
    return cell.build()


def cornn():
    """coRNN (Rusch & Mishra 2021, eq. 3): z<n> = z<n-1> + Δt σ(W y<n-1> + 𝒲 z<n-1> + V u<n> + b)
    − Δt γ y<n-1> − Δt ε z<n-1>; y<n> = y<n-1> + Δt z<n>; σ = tanh, output y (the papers' names)."""
    dt, gamma, eps = 0.042, 2.7, 4.7
    cell = CellBuilder("cornn", inputs=("u",), states=("y", "z"), output="y", description="coRNN")
    y_prev, z_prev, u = cell.prev("y"), cell.prev("z"), cell.input("u")
    s = cell.linear("s", [y_prev, z_prev, u], weight="W", bias="b")
    z = cell.stage("z", z_prev + dt * sp.tanh(s) - dt * gamma * y_prev - dt * eps * z_prev)
    cell.stage("y", y_prev + dt * z)
    return cell.build()


def lem():
    """LEM (Rusch et al. 2022, eq. 3): Δt<n> = Δt σ̂(W_1 y<n-1> + V_1 u<n> + b_1), Δt̄ likewise (2);
    z<n> = (1 − Δt<n>) ⊙ z<n-1> + Δt<n> ⊙ σ(W_z y<n-1> + V_z u<n> + b_z);
    y<n> = (1 − Δt̄<n>) ⊙ y<n-1> + Δt̄<n> ⊙ σ(W_y z<n> + V_y u<n> + b_y) — W_y reads z after its update."""
    dt = 1.0
    cell = CellBuilder("lem", inputs=("u",), states=("y", "z"), output="y", description="LEM")
    y_prev, z_prev, u = cell.prev("y"), cell.prev("z"), cell.input("u")
    d1 = cell.stage("dt1", dt * sigmoid(cell.linear("s1", [y_prev, u], weight="W_1", bias="b_1")))
    d2 = cell.stage("dt2", dt * sigmoid(cell.linear("s2", [y_prev, u], weight="W_2", bias="b_2")))
    sz = cell.linear("sz", [y_prev, u], weight="W_z", bias="b_z")
    z = cell.stage("z", (1 - d1) * z_prev + d1 * sp.tanh(sz))
    sy = cell.linear("sy", [z, u], weight="W_y", bias="b_y")
    cell.stage("y", (1 - d2) * y_prev + d2 * sp.tanh(sy))
    return cell.build()


def mogrifier(rounds: int = 4):
    """Mogrifier LSTM (Melis et al. 2020, eq. 1–2): x¹ = 2σ(Q¹ h⁰) ⊙ x, h² = 2σ(R² x¹) ⊙ h⁰, x³ = 2σ(Q³ h²) ⊙ x¹,
    h⁴ = 2σ(R⁴ x³) ⊙ h², then an LSTM on x^↑ and h^↑ — Q h and x^i have n_x units."""
    cell = CellBuilder(f"mogrifier{rounds}", inputs=("x",), states=("h", "c"), output="h", description="Mogrifier")
    xs = {-1: cell.input("x")}
    hs = {0: cell.prev("h")}
    for i in range(1, rounds + 1):
        if i % 2:
            q = cell.linear(f"q{i}", [hs[i - 1]], weight=f"Q{i}", bias=None, units="n_x")
            xs[i] = cell.stage(f"x{i}", 2 * sigmoid(q) * xs[i - 2])
            hs[i] = hs[i - 1]
        else:
            r = cell.linear(f"r{i}", [xs[i - 1]], weight=f"R{i}", bias=None)
            hs[i] = cell.stage(f"h{i}", 2 * sigmoid(r) * hs[i - 2])
            xs[i] = xs[i - 1]
    x_up, h_up = xs[rounds], hs[rounds]
    gates = {}
    for g in ("f", "u", "o"):
        gates[g] = cell.stage(
            f"Gamma_{g}", sigmoid(cell.linear(f"sum_{g}", [h_up, x_up], weight=f"W_{g}", bias=f"b_{g}"))
        )
    cc = cell.stage("cc", sp.tanh(cell.linear("sum_c", [h_up, x_up], weight="W_c", bias="b_c")))
    c = cell.stage("c", cell.prev("c") * gates["f"] + gates["u"] * cc)
    cell.stage("h", sp.tanh(c) * gates["o"])
    return cell.build()


def mogrifier2():
    return mogrifier(2)


def slstm(forget: str = "sigmoid"):
    """sLSTM (Beck et al. 2024, xLSTM §2.2 and appendix): z = tanh(z~), i = exp(i~), f = σ(f~) or exp(f~),
    o = σ(o~), each ~ = W [h<t-1>, x<t>] + b; stabilised: m = max(log f + m<t-1>, log i), i' = exp(log i − m),
    f' = exp(log f + m<t-1> − m); c = f' ⊙ c<t-1> + i' ⊙ z, n = f' ⊙ n<t-1> + i', h = o ⊙ c/n."""
    cell = CellBuilder(f"slstm_{forget}", inputs=("x",), states=("h", "c", "n", "m"), output="h", description="sLSTM")
    h_prev, c_prev, n_prev, m_prev = (cell.prev(s) for s in ("h", "c", "n", "m"))
    x = cell.input("x")
    i_t, f_t, z_t, o_t = (
        cell.linear(f"{g}_tilde", [h_prev, x], weight=f"W_{g}", bias=f"b_{g}") for g in ("i", "f", "z", "o")
    )
    log_f = f_t if forget == "exp" else sp.log(sigmoid(f_t))
    m = cell.stage("m", sp.Max(log_f + m_prev, i_t))
    f_stab = cell.stage("f_stab", sp.exp(log_f + m_prev - m))
    i_stab = cell.stage("i_stab", sp.exp(i_t - m))
    c = cell.stage("c", f_stab * c_prev + i_stab * sp.tanh(z_t))
    n = cell.stage("n", f_stab * n_prev + i_stab)
    cell.stage("h", sigmoid(o_t) * c / n)
    return cell.build()


def slstm_exp():
    return slstm("exp")


def qcell():
    """A state divided by a power of a node: a = tanh(W [a<t-1>, x<t>] + b)/q², q = 1 + a<t-1>²."""
    cell = CellBuilder("qcell", inputs=("x",), states=("a",), output="a")
    a_prev = cell.prev("a")
    s = cell.linear("s", [a_prev, cell.input("x")], weight="W", bias="b")
    q = cell.stage("q", 1 + a_prev**2)
    cell.stage("a", sp.tanh(s) / q**2)
    return cell.build()


def minlstm():
    """minLSTM (Feng et al. 2024, "Were RNNs All We Needed?"): f = σ(Linear(x)), i = σ(Linear(x)),
    h~ = Linear(x); f_prime = f/(f + i), i_prime = i/(f + i); h = f_prime ⊙ h<t-1> + i_prime ⊙ h~."""
    cell = CellBuilder("minlstm", inputs=("x",), states=("h",), output="h", description="minLSTM")
    x, h_prev = cell.input("x"), cell.prev("h")
    f = cell.stage("f", sigmoid(cell.linear("sum_f", [x], weight="W_f", bias="b_f")))
    i = cell.stage("i", sigmoid(cell.linear("sum_i", [x], weight="W_i", bias="b_i")))
    h_tilde = cell.linear("h_tilde", [x], weight="W_h", bias="b_h")
    f_prime = cell.stage("f_prime", f / (f + i))
    i_prime = cell.stage("i_prime", i / (f + i))
    cell.stage("h", f_prime * h_prev + i_prime * h_tilde)
    return cell.build()


def exp_rnn():
    """a<t> = exp(W [a<t-1>, x<t>] + b) − 1: finite for small weights, overflowing by step 3 at random scale."""
    cell = CellBuilder("exp_rnn", inputs=("x",), states=("a",), output="a")
    s = cell.linear("s", [cell.prev("a"), cell.input("x")], weight="W", bias="b")
    cell.stage("a", sp.exp(s) - 1)
    return cell.build()


def delta_rnn():
    """The simple Delta-RNN (Ororbia et al. 2017): d1 = α ⊙ V h<t-1> ⊙ W x<t>, d2 = β₁ ⊙ V h<t-1> + β₂ ⊙ W x<t>,
    z = tanh(d1 + d2 + b), r = σ(b_r) (a gate of unit parameters only), h = tanh((1 − r) ⊙ z + r ⊙ h<t-1>)."""
    cell = CellBuilder("delta_rnn", inputs=("x",), states=("h",), output="h", description="Delta-RNN")
    h_prev, x = cell.prev("h"), cell.input("x")
    vh = cell.linear("Vh", [h_prev], weight="V", bias=None)
    wx = cell.linear("Wx", [x], weight="W", bias=None)
    alpha, beta1, beta2, b, b_r = (cell.vector(n) for n in ("alpha", "beta1", "beta2", "b", "b_r"))
    z = cell.stage("z", sp.tanh(alpha * vh * wx + beta1 * vh + beta2 * wx + b))
    r = cell.stage("r", sigmoid(b_r))
    cell.stage("h", sp.tanh((1 - r) * z + r * h_prev))
    return cell.build()
