"""Stage 1: cell definitions. Bad definitions give a CellError naming the stage at fault."""

from __future__ import annotations

import pytest
import sympy as sp

from symbolic_lstm import CellBuilder, CellError, get_cell, sigmoid
from symbolic_lstm.engine.cell import Elementwise, Linear


def test_lstm_has_the_article_stages(lstm):
    names = [st.name for st in lstm.stages]
    assert names == ["sum_f", "sum_u", "sum_c", "sum_o", "Gamma_f", "Gamma_u", "c_tilde", "Gamma_o", "c", "a"]
    for g in "fuco":
        st = lstm.stage(f"sum_{g}")
        assert isinstance(st, Linear)
        # concatenation order of the article: a<t-1> first, then x<t>
        assert st.inputs == ("a_prev", "x") and st.weight == f"W_{g}" and st.bias == f"b_{g}"
    assert lstm.params == ("W_f", "b_f", "W_u", "b_u", "W_c", "b_c", "W_o", "b_o")
    c = lstm.stage("c")
    assert isinstance(c, Elementwise)
    s = sp.symbols("c_prev Gamma_f Gamma_u c_tilde")
    assert sp.expand(c.expr - (s[0] * s[1] + s[2] * s[3])) == 0
    assert lstm.states == ("a", "c") and lstm.output == "a"


def test_unknown_builtin_cell_lists_choices():
    with pytest.raises(ValueError, match="lstm"):
        get_cell("nope")


def _builder():
    return CellBuilder("t", inputs=("x",), states=("a",), output="a")


def test_unknown_input_names_the_stage():
    b = _builder()
    with pytest.raises(CellError, match=r"stage 's' reads 'y'"):
        b.stage("s", sp.Symbol("y") + 1)


def test_cycle_inside_one_step_is_named():
    b = _builder()
    with pytest.raises(CellError, match="cycle"):
        b.stage("s", sp.tanh(sp.Symbol("s")))


def test_duplicate_stage():
    b = _builder()
    a = b.prev("a")
    b.stage("s", sp.tanh(a))
    with pytest.raises(CellError, match="defined twice"):
        b.stage("s", sp.tanh(a))


def test_parameter_name_reused():
    b = _builder()
    a, x = b.prev("a"), b.input("x")
    b.linear("s1", [a, x], weight="W", bias="b")
    with pytest.raises(CellError, match="already used"):
        b.linear("s2", [a, x], weight="W", bias="b2")


def test_state_never_produced():
    b = _builder()
    b.linear("s", [b.prev("a"), b.input("x")], weight="W", bias="b")
    b.stage("h", sp.tanh(sp.Symbol("s")))
    with pytest.raises(CellError, match="state 'a' is never produced"):
        b.build()


def test_unused_node():
    b = _builder()
    a, x = b.prev("a"), b.input("x")
    s = b.linear("s", [a, x], weight="W", bias="b")
    b.stage("unused", sigmoid(s))
    b.stage("a", sp.tanh(s))
    with pytest.raises(CellError, match="'unused' is computed but never used"):
        b.build()


def test_unknown_state_and_input():
    b = _builder()
    with pytest.raises(CellError, match="not a state"):
        b.prev("c")
    with pytest.raises(CellError, match="not an input"):
        b.input("u")


def test_bad_names_and_constant_stage():
    with pytest.raises(CellError, match="identifier"):
        CellBuilder("not a name")
    b = _builder()
    with pytest.raises(CellError, match="reads no node"):
        b.stage("k", sp.Integer(3))
    with pytest.raises(CellError, match="at least one input"):
        b.linear("s", [], weight="W", bias="b")


def test_activation_sympy_cannot_differentiate_names_the_stage():
    b = _builder()
    s = b.linear("s", [b.prev("a"), b.input("x")], weight="W", bias="b")
    g = sp.Function("g")  # an undefined function: its derivative stays an unevaluated Derivative
    with pytest.raises(CellError, match=r"stage 'a': SymPy cannot differentiate g\(s\)"):
        b.stage("a", g(s))


def test_input_read_unit_by_unit_beside_n_a_units_needs_a_square_cell():
    b = _builder()
    with pytest.raises(CellError, match=r"stage 'a' reads 'x' \(n_x units\) and 'a_prev' \(n_a units\).*square=True"):
        b.stage("a", sp.tanh(b.prev("a") + b.input("x")))
    sq = CellBuilder("sq", inputs=("x",), states=("a",), output="a", square=True)
    sq.stage("a", sp.tanh(sq.prev("a") + sq.input("x")))
    cell = sq.build()
    assert cell.square and cell.width("a") == "n_a" and cell.width("x") == "n_x"


def test_nodes_of_n_x_units():
    b = CellBuilder("nx", inputs=("x",), states=("a",), output="a")
    q = b.linear("q", [b.prev("a")], weight="Q", bias=None, units="n_x")
    x1 = b.stage("x1", 2 * sigmoid(q) * b.input("x"))
    assert b.linear("s", [x1], weight="W", bias="b") is not None
    with pytest.raises(CellError, match=r"'x1' \(n_x units\) and 'a_prev' \(n_a units\)"):
        b.stage("bad", x1 * b.prev("a"))
    b.stage("a", sp.tanh(sp.Symbol("s")))
    cell = b.build()
    assert [cell.width(n) for n in ("q", "x1", "s", "a")] == ["n_x", "n_x", "n_a", "n_a"]
    with pytest.raises(CellError, match="units must be 'n_a' or 'n_x'"):
        b.linear("r", [b.prev("a")], weight="R", bias=None, units="n_y")
    out = CellBuilder("o", inputs=("x",), states=("a",), output="a")
    q = out.linear("q", [out.prev("a")], weight="Q", bias=None, units="n_x")
    out.stage("a", sp.tanh(out.input("x") * q))
    with pytest.raises(CellError, match="'a' has n_x units"):
        out.build()


def test_unit_parameters():
    b = _builder()
    a, x = b.prev("a"), b.input("x")
    g = b.vector("g")
    s = b.linear("s", [a, x], weight="W", bias="b")
    b.stage("a", sp.tanh(g * a + s))
    cell = b.build()
    assert cell.vectors == ("g",) and cell.params[-1] == "g"
    assert cell.stage("a").reads == ("a_prev", "s", "g")
    b = _builder()
    b.vector("q")
    with pytest.raises(CellError, match="unit parameter 'q': the name is already used"):
        b.vector("q")
    s = b.linear("s", [b.prev("a"), b.input("x")], weight="W", bias="b")
    b.stage("a", sp.tanh(s))
    with pytest.raises(CellError, match="unit parameter 'q' is never read"):
        b.build()
    b = _builder()
    q = b.vector("q")
    r = b.stage("r", sp.tanh(q))  # a stage of unit parameters only (the Delta-RNN's gate σ(b_r)): n_a units
    assert r == sp.Symbol("r")
    with pytest.raises(CellError, match="reads no node and no unit parameter"):
        b.stage("k", sp.Integer(2))
    s = b.linear("s", [b.prev("a"), b.input("x")], weight="W", bias="b")
    b.stage("a", (1 - r) * sp.tanh(s) + r * b.prev("a"))
    cell = b.build()
    assert cell.stage("r").reads == ("q",) and cell.width("r") == "n_a"


def test_the_building_blocks_the_readme_lists_import_from_the_package():
    import symbolic_lstm

    for name in ("CellBuilder", "sigmoid", "softsign", "rsqrt"):
        assert hasattr(symbolic_lstm, name) and name in symbolic_lstm.__all__
