"""The symbolic proof: the engine's chain rule equals direct differentiation of the unrolled Error.

Also shows the proof can fail: a derivation with one wrong local partial, or with a fork's branch
dropped, is caught.
"""

from __future__ import annotations

import pytest
import sympy as sp

from symbolic_lstm import derive
from symbolic_lstm.engine.cells import lstm as lstm_cell
from symbolic_lstm.engine.functions import softsign
from symbolic_lstm.engine.notation import Partial
from symbolic_lstm.proof import obligations as proof

GRADIENTS = {"W_f", "b_f", "W_u", "b_u", "W_c", "b_c", "W_o", "b_o", "x", "a0", "c0"}


def test_proof_n1_both_modes(lstm):
    lines = proof.prove(lstm, n_a=1, n_x=1, T=3, workers=2)
    assert {ln.gradient for ln in lines} == GRADIENTS
    assert {ln.mode for ln in lines} == {"many-to-many", "many-to-one"}
    assert all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


@pytest.mark.slow
def test_proof_n2_both_modes(lstm):
    lines = proof.prove(lstm, n_a=2, n_x=2, T=3, points=2)
    assert len(lines) == 2 * len(GRADIENTS)
    assert all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


def test_proof_unequal_sizes_exact(lstm):
    """n_a ≠ n_x (catches a transposed block), and the difference expands to exactly 0."""
    lines = proof.prove(lstm, n_a=1, n_x=2, T=2, modes=("many-to-many",), exact=True, workers=2)
    assert all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


@pytest.mark.parametrize(
    "variant",
    [
        lstm_cell.build(candidate=softsign, name="lstm_softsign"),
        lstm_cell.build(output_activation=lambda e: e, name="lstm_linear_out"),
    ],
    ids=["softsign-candidate", "no-output-tanh"],
)
def test_proof_of_variant_cells(variant):
    lines = proof.prove(variant, n_a=1, n_x=1, T=3, workers=2)
    assert all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


def _tampered(monkeypatch, tamper):
    real = proof.derive

    def derive_and_tamper(cell):
        d = real(cell)
        tamper(d)
        return d

    monkeypatch.setattr(proof, "derive", derive_and_tamper)


def test_proof_catches_a_wrong_local_partial(monkeypatch, lstm):
    def tamper(d):
        p = Partial(sp.Symbol("c"), sp.Symbol("c_prev"))
        assert p in d.partials
        d.partials[p] = 2 * d.partials[p]  # ∂c<t>/∂c<t-1> = 2Γ_f: wrong

    _tampered(monkeypatch, tamper)
    lines = proof.prove(lstm, n_a=1, n_x=1, T=2, modes=("many-to-many",), workers=1)
    bad = {ln.gradient for ln in lines if not ln.ok}
    assert "c0" in bad  # only reachable through c<t-1>
    assert "W_f" in bad  # δsum_f<1> reads δc<1>, which carries the wrong branch from step 2
    # at T = 2, δsum_o<t> reads only δa<t>, which never passes through ∂c<t+1>/∂c<t>: the check is specific
    assert "b_o" not in bad


def test_proof_catches_a_dropped_fork_branch(monkeypatch, lstm):
    def tamper(d):
        # δa<t> without ∂E<t+1>/∂a<t>: the classic bug of forgetting the recurrent branch
        d.chain["a"] = Partial(sp.Symbol("Error"), sp.Symbol("a"))

    _tampered(monkeypatch, tamper)
    lines = proof.prove(lstm, n_a=1, n_x=1, T=2, modes=("many-to-many",), workers=1)
    assert not all(ln.ok for ln in lines)
    assert {"W_o", "a0"} <= {ln.gradient for ln in lines if not ln.ok}


def test_prove_rejects_bad_arguments(lstm):
    with pytest.raises(ValueError, match="loss mode"):
        proof.prove(lstm, modes=("sideways",))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="positive"):
        proof.UnrolledNet(lstm, 0, 1, 3)


def test_engine_alone_is_what_is_checked(lstm):
    """The engine side uses only the derivation's per-step results, never sympy.diff of the unrolled net."""
    net = proof.UnrolledNet(lstm, 1, 1, 2)
    g = proof.engine_gradients(net, derive(lstm), "many-to-one")
    assert set(g) == GRADIENTS
    assert g["W_f"].shape == (1, 2) and g["x"].shape == (2, 1) and g["a0"].shape == (1, 1)


def test_a_modulus_sympy_writes_through_a_real_part_is_proved():
    """|b^(12 softsign(a))| for a positive constant b is b^(12 re(softsign(a))) to SymPy, which cannot tell the
    node a is real: the prover takes re(u) as u (every value is real) in its points and its derivatives."""
    from symbolic_lstm import CellBuilder, sigmoid

    b = CellBuilder("modulus", inputs=("x",), states=("a",), output="a")
    a_prev = b.prev("a")
    s = b.linear("s", [a_prev, b.input("x")], weight="W", bias=None)
    e = b.stage("e", (sigmoid(-3) + sp.Rational(1, 2)) ** (12 * softsign(a_prev)))
    b.stage("a", sp.tanh(sp.log(sp.Rational(1, 10) * sp.Abs(e) + 1) + sigmoid(s)))
    lines = proof.prove(b.build(), n_a=1, n_x=1, T=2, points=2, workers=1)
    assert lines and all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


def test_a_float_power_met_only_at_evaluation_is_drawn_by_value():
    """A base first met while the point evaluates (SymPy spelled it otherwise where the points were drawn) with a
    float exponent (0.3 is p/2^54): its fractional power is one value by the base's value — not r^p for a root of
    order 2^54, which never finishes."""
    import random

    from symbolic_lstm.proof.points import random_point

    u = sp.Symbol("u")
    q = sp.Rational(0.3)
    point = random_point([u], random.Random(0))
    first = point.at((1 + u**2) ** q)
    assert first.is_Rational and first > 0
    assert point.at((u**2 + 1) ** (q + 2)) == first * point.at(1 + u**2) ** 2


def test_a_condition_comparing_a_node_with_itself_is_constant_not_a_kink():
    """a<t-1> > a<t-1> stays unevaluated for a node SymPy cannot tell is real; it is false everywhere, not a tie
    at every point (which left every point unjudged and the proof ✗)."""
    from symbolic_lstm import CellBuilder

    b = CellBuilder("self_compare", inputs=("x",), states=("a",), output="a")
    a_prev = b.prev("a")
    s = b.linear("s", [a_prev, b.input("x")], weight="W", bias="b")
    # e^(tanh s)^(2/3): a value SymPy cannot tell is real, so a<1> > a<1> stays a comparison at step 2
    a = sp.Piecewise((2 * s, sp.Gt(a_prev, a_prev, evaluate=False)), (sp.tanh(s), True))
    b.stage("a", a + sp.exp(sp.tanh(s)) ** sp.Rational(2, 3) / 4)
    lines = proof.prove(b.build(), n_a=1, n_x=1, T=2, points=2, workers=1)
    assert lines and all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


def test_an_entry_no_point_can_judge_is_said_undecided_not_equal(monkeypatch, lstm):
    """Every point on a pole or a kink: the lines are ✗ and say the identity was not decided (fresh points were
    drawn twice more), never "equal at 3 random rational points"."""
    calls = []

    def nowhere(terms, sym, ev):
        calls.append(ev)
        return None

    monkeypatch.setattr(proof, "_direct_at", nowhere)
    lines = proof.prove(lstm, n_a=1, n_x=1, T=1, points=3, workers=1)
    assert lines and not any(ln.ok for ln in lines)
    assert all(
        "not decided: every random rational point drawn (3 × 3) lies on a pole or a kink" in str(ln) for ln in lines
    )
    assert len({id(ev.point) for ev in calls}) == 9  # three sets of three points


def test_a_power_of_a_square_is_one_value_however_sympy_spells_it():
    """∂(σ(s)²)^z/∂z is 2·log|σ(s)|·|σ(s)|^(2z) to SymPy, the direct side's (σ²)^z·log(σ²): the points key a power
    by (ρ, k·z) and a log by k·log ρ for a base ρ^k, so both spellings take one value."""
    from symbolic_lstm import CellBuilder, sigmoid

    b = CellBuilder("square_power", inputs=("x",), states=("a",), output="a")
    a_prev = b.prev("a")
    s = b.linear("s", [a_prev, b.input("x")], weight="W", bias="b")
    g = b.stage("g", sigmoid(s))
    b.stage("a", sp.tanh((g**2) ** softsign(a_prev) + s))
    lines = proof.prove(b.build(), n_a=1, n_x=1, T=2, points=2, workers=1)
    assert lines and all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


def test_the_engine_side_substitutes_unrolled_values_as_written():
    """A Piecewise whose condition reads a state that is itself a Piecewise once unrolled: the engine's side puts
    it in as written — no piecewise_fold, no ITE rewrite, no sign decided by assumptions (what made such a cell's
    proof take minutes) — and the value at every point is SymPy's own."""
    from sympy.logic.boolalg import ITE

    from symbolic_lstm.proof.net import _at

    x, y, u = sp.symbols("x y u", real=True)
    inner = sp.Piecewise((x, x > 0), (-x / 2, True))
    outer = sp.Piecewise((sp.Min(u, y) ** u, y < sp.Rational(1, 2)), (sp.Max(u, 2 * y), True))
    built = _at(outer, {y: [inner]}, 0, 1)
    assert built.has(sp.Piecewise) and not built.has(ITE)
    assert isinstance(built.args[0].cond.lhs, sp.Piecewise)  # the condition holds the state's Piecewise itself
    evaluated = outer.xreplace({y: inner})
    for xv, uv in [(sp.Rational(1, 3), sp.Rational(2, 5)), (sp.Rational(-3, 2), sp.Rational(1, 7)), (2, 3)]:
        at = {x: sp.Integer(xv) if isinstance(xv, int) else xv, u: uv}
        assert sp.nsimplify(built.subs(at)) == sp.nsimplify(evaluated.subs(at))
