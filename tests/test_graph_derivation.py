"""Stages 2–3: the graph knows every fork; the chain rule over it gives the article's equations.

Nothing here states a derivative for the engine: each expectation is the article's equation, written in
the step-local symbols (``delta_c`` = δc<t>, ``dc_next`` = ∂E<t+1…>/∂c<t>, ``Gamma_f`` = Γ_f<t> …).
"""

from __future__ import annotations

import sympy as sp

from symbolic_lstm import derive, softsign
from symbolic_lstm.engine.cells import lstm as lstm_cell
from symbolic_lstm.engine.graph import StepGraph

S = sp.symbols
Gf, Gu, Go, ct, c, cp, a, ah = S("Gamma_f Gamma_u Gamma_o c_tilde c c_prev a a_hat")
da, dc, da_next, dc_next = S("delta_a delta_c da_next dc_next")


def test_forks_of_the_article(lstm):
    g = StepGraph(lstm)
    # a<t> goes to the loss and to the next block; c<t> to tanh and to the next block;
    # a<t-1> and x<t> feed all four sums.
    assert set(g.forks) == {"a", "c", "a_prev", "x"}
    assert [(u.consumer, u.kind) for u in g.uses("a")] == [("Error", "loss"), ("a", "next")]
    assert [(u.consumer, u.kind) for u in g.uses("c")] == [("a", "stage"), ("c", "next")]
    assert {u.consumer for u in g.uses("a_prev")} == {"sum_f", "sum_u", "sum_c", "sum_o"}
    assert not g.is_fork("c_prev") and not g.is_fork("Gamma_f")


def test_scoring_c_adds_a_branch(lstm):
    g = StepGraph(lstm, scored=["a", "c"])
    assert [u.kind for u in g.uses("c")] == ["stage", "loss", "next"]


def test_delta_a_is_loss_plus_next_step(lstm_derivation):
    d = lstm_derivation
    # δa<t> = ∂E<t>/∂a<t> + ∂E<t+1>/∂a<t>, with ∂E<t>/∂a<t> = −(â − a)
    assert sp.expand(d.evaluate(d.chain["a"]) - (-(ah - a) + da_next)) == 0


def test_delta_c_fork(lstm_derivation):
    d = lstm_derivation
    # δc<t> = δa<t>·Γ_o·(1 − tanh²c<t>) + δc<t+1>·Γ_f<t+1>   (the second term is dc_next)
    assert sp.expand(d.evaluate(d.chain["c"]) - (da * Go * (1 - sp.tanh(c) ** 2) + dc_next)) == 0


def test_gate_sums(lstm_derivation):
    d = lstm_derivation
    ev = {v: d.evaluate(d.chain[v]) for v in ("sum_f", "sum_u", "sum_c", "sum_o")}
    assert sp.expand(ev["sum_f"] - dc * cp * Gf * (1 - Gf)) == 0
    assert sp.expand(ev["sum_u"] - dc * ct * Gu * (1 - Gu)) == 0
    assert sp.expand(ev["sum_c"] - dc * Gu * (1 - ct**2)) == 0
    assert sp.expand(ev["sum_o"] - da * sp.tanh(c) * Go * (1 - Go)) == 0


def test_previous_states(lstm_derivation):
    d = lstm_derivation
    assert sp.expand(d.evaluate(d.chain["c_prev"]) - dc * Gf) == 0
    # a<t-1> feeds four sums: a fork with four branches, one per gate
    assert len(sp.Add.make_args(d.chain["a_prev"])) == 4
    assert len(sp.Add.make_args(d.chain["x"])) == 4


def test_local_partials_use_stored_activations(lstm_derivation):
    """σ' is written Γ(1−Γ) and tanh' 1 − c̃²: no exp, no cosh, nothing recomputed."""
    for value in lstm_derivation.partials.values():
        assert not value.has(sp.exp) and not value.has(sp.cosh)


def test_weight_rule_is_outer_product_with_concat(lstm_derivation):
    rules = lstm_derivation.rules["sum_f"]
    assert "a_prev" in str(rules) and "x" in str(rules)


def test_variant_softsign_candidate_changes_the_derivative():
    """Change the candidate activation; the derivative of sum_c follows (nothing is tabulated)."""
    d = derive(lstm_cell.build(candidate=softsign, name="lstm_softsign"))
    s = sp.Symbol("sum_c")
    got = d.evaluate(d.chain["sum_c"])
    assert got.has(s) and not got.has(ct)  # softsign' needs the pre-activation, not c~

    def softsign_(v: float) -> float:
        return v / (1 + abs(v))

    h = 1e-6
    for v in (-2.5, -0.3, 0.7, 3.0):
        slope = (softsign_(v + h) - softsign_(v - h)) / (2 * h)  # independent: a central difference
        value = float(got.subs({s: v, dc: 1, Gu: 1}))
        assert abs(value - slope) < 1e-8
    # the other gates are unchanged
    assert sp.expand(d.evaluate(d.chain["sum_f"]) - dc * cp * Gf * (1 - Gf)) == 0


def test_variant_without_output_tanh():
    """a<t> = c<t>·Γ_o: then ∂a/∂c = Γ_o and δc<t> = δa<t>·Γ_o + δc<t+1>·Γ_f<t+1>."""
    d = derive(lstm_cell.build(output_activation=lambda e: e, name="lstm_linear_out"))
    assert sp.expand(d.evaluate(d.chain["c"]) - (da * Go + dc_next)) == 0
    assert sp.expand(d.evaluate(d.chain["sum_o"]) - da * c * Go * (1 - Go)) == 0
