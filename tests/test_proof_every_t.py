"""A proof for every T: the one-step lemma and the induction's base and step (``symbolic_lstm.proof.step``).

The proof must be able to fail: each test below breaks the engine on purpose — a fork's branch dropped, a
boundary condition that is not zero, a matrix rule transposed, a step's parameter contribution counted
twice — and sees ``prove`` reject it, naming the obligation that failed.
"""

from __future__ import annotations

import dataclasses
from fractions import Fraction
from pathlib import Path

import pytest
import sympy as sp
from click.testing import CliRunner

from symbolic_lstm import get_cell
from symbolic_lstm.cli import main
from symbolic_lstm.engine.cells import BUILTIN
from symbolic_lstm.engine.derivation import derive as real_derive
from symbolic_lstm.proof import net as proof_net
from symbolic_lstm.proof import obligations as proof
from symbolic_lstm.proof import step as proof_step

PAPERS = Path(__file__).parent / "cells" / "papers.py"


def prove_cli(*args: str):
    return CliRunner().invoke(main, ["prove", "-j", "1", *args])


@pytest.mark.parametrize("cell", sorted(BUILTIN))
def test_every_builtin_proves_for_every_t(cell):
    r = prove_cli("--cell", cell)
    assert r.exit_code == 0, r.output
    assert "lemma: one step" in r.output and "induction: base and step" in r.output
    assert "proved for every T" in r.output and "✗" not in r.output
    assert r.output.strip().splitlines()[-1].startswith("proved for every T and every n:")
    # the table: a row per gradient, a column per obligation, every mark ✓
    head = next(ln for ln in r.output.splitlines() if ln.startswith("gradient"))
    assert head.split()[1:] == ["lemma", "n_a=1", "lemma", "n_a=2", "base", "T=1", "step", "T=2"] or cell == "layernorm"
    rows = r.output.split(head, 1)[1].splitlines()[2:]
    rows = rows[: next(i for i, ln in enumerate(rows) if ln.startswith("proved"))]
    assert rows and all(ln.split()[-1] == "✓" and "✗" not in ln for ln in rows), rows


def test_verbose_prints_every_comparison():
    r = prove_cli("--cell", "rnn", "-v")
    assert r.exit_code == 0, r.output
    assert "∂L/∂W" in r.output and "T=2 many-to-one" in r.output and "proved for every T" in r.output
    assert not any(ln.startswith("gradient ") for ln in r.output.splitlines())


def test_a_failing_obligation_is_a_cross_in_its_column():
    from symbolic_lstm.cli.proving import obligation_table
    from symbolic_lstm.proof.obligations import ProofLine

    def line(g, ok, kind="lemma"):
        return ProofLine(g, (1,), 1, ok, 1, 1, 1, "m", "equal", kind)

    text = obligation_table({"lemma n_a=1": [line("W", True), line("a0", False)], "base T=1": [line("W", True, "u")]})
    assert text.splitlines()[2].split() == ["W", "✓", "✓"]
    assert text.splitlines()[3].split() == ["a<t-1>,", "a<0>", "✗", "–"]


@pytest.mark.parametrize("name", ["lem", "cornn", "mogrifier", "sru_paper", "minimal_rnn"])
def test_the_deep_paper_cells_prove_for_every_t(name):
    r = prove_cli("--cell", f"{PAPERS}:{name}")
    assert r.exit_code == 0, r.output
    assert r.output.strip().splitlines()[-1].startswith("proved for every T and every n:")


def test_the_lemma_names_what_it_compares():
    lines = proof_step.prove_step(get_cell("lstm"), 1, 1, points=2, workers=1)
    assert lines.ok and {ln.mode for ln in lines} == set(proof_step.CASES)
    text = str(lines)
    assert "∂L/∂a<t-1>" in text and "∂L/∂x " in text and "one step, n_a=1 n_x=1, E<t> not scored" in text


# -- it must be able to fail ----------------------------------------------------------------------------


def _patch_derive(monkeypatch, change):
    def broken(cell, *args, **kw):
        d = real_derive(cell, *args, **kw)
        change(d)
        return d

    monkeypatch.setattr(proof, "derive", broken)  # derivation_of looks it up, keyed by the function


def test_a_dropped_branch_of_a_fork_fails_the_lemma(monkeypatch):
    """δc<t> = δa<t>·Γ_o·(1 − tanh²c<t>) + δc<t+1>·Γ_f<t+1>: without the branch from the next step."""

    def drop(d):
        assert isinstance(d.chain["c"], sp.Add)
        d.chain["c"] = d.chain["c"].args[0]

    _patch_derive(monkeypatch, drop)
    r = prove_cli("--cell", "lstm")
    assert r.exit_code == 1 and "✗" in r.output
    assert "the lemma fails for" in r.output and "nothing follows for other T" in r.output


def test_a_boundary_that_is_not_zero_fails_the_induction_only(monkeypatch):
    """δa<T+1> ≠ 0: the lemma (free adjoints) still holds; the base and step of the induction do not."""
    monkeypatch.setattr(proof_net, "boundary", lambda net: {s: sp.ones(1, net.n_a) for s in net.cell.states})
    r = prove_cli("--cell", "rnn")
    assert r.exit_code == 1, r.output
    assert "the induction fails for" in r.output and "the lemma fails" not in r.output


def test_a_transposed_matrix_rule_fails_the_lemma_at_two_units(monkeypatch):
    """δa<t-1> = δsum · W^(a)ᵀ-for-W^(a): invisible at n_a = 1 (a 1×1 block is its transpose), caught at 2."""

    def transpose(d):
        r = d.rules["sum_f"]
        d.rules["sum_f"] = dataclasses.replace(r, operand={**r.operand, "a_prev": r.D * r.W["a_prev"].T})

    _patch_derive(monkeypatch, transpose)
    cell = get_cell("lstm")
    assert proof_step.prove_step(cell, 1, 1, points=2, workers=1).ok
    two = proof_step.prove_step(cell, 2, 2, points=2, workers=1)
    assert not two.ok and {ln.gradient for ln in two if not ln.ok} >= {"a0"}
    r = prove_cli("--cell", "lstm")
    assert r.exit_code == 1 and "the lemma fails for a0 (n_a=2" in r.output, r.output


def test_a_contribution_counted_twice_fails_both(monkeypatch):
    def twice(grads, contributions):
        for name, c in contributions.items():
            grads[name] += 2 * c

    monkeypatch.setattr(proof_net, "accumulate", twice)
    r = prove_cli("--cell", "gru")
    assert r.exit_code == 1, r.output
    assert "the lemma fails for W_" in r.output and "the induction fails for W_" in r.output


# -- the direct side: forward-mode derivatives at a point equal SymPy's diff there --------------------------


@pytest.mark.parametrize("name", ["lstm", "layernorm", "peephole"])
def test_derivatives_at_a_point_equal_sympys_diff(name):
    """The proof's direct side differentiates at exact points; it is the same number as sympy.diff, evaluated."""
    import random

    cell = proof.exact_constants(get_cell(name))
    net = proof.UnrolledNet(cell, 2, 1, 1)
    E = net.step_errors[0]
    point = proof.random_point(proof.indeterminates([E]), random.Random(3))
    ev = proof.Evaluator(point)
    for _, syms in list(net.wrt())[:4]:
        for sym in list(syms)[:2]:
            want = point.at(sp.diff(E, sym))
            assert ev.derivative(E, sym) == Fraction(int(want.p), int(want.q))


def test_a_point_on_a_kink_is_not_judged():
    s = sp.Symbol("s", real=True)
    point = proof.Point({s: sp.Integer(0)}, {})
    with pytest.raises(proof.UnjudgedPointError):
        proof.Evaluator(point).derivative(sp.Max(0, s), s)
    assert proof.Evaluator(proof.Point({s: sp.Rational(1, 3)}, {})).derivative(sp.Max(0, 2 * s), s) == 2


# -- progress ----------------------------------------------------------------------------------------------


class _Terminal:
    def __init__(self, tty: bool) -> None:
        self.text, self.tty = "", tty

    def isatty(self) -> bool:
        return self.tty

    def write(self, s: str) -> None:
        self.text += s

    def flush(self) -> None:
        pass


def test_progress_shows_on_a_terminal_and_is_silent_when_piped():
    from symbolic_lstm.cli import ProofProgress

    seen = []
    proof_step.prove_step(get_cell("rnn"), 1, 1, points=1, workers=1, progress=lambda *a: seen.append(a))
    total = seen[0][1]
    assert [d for d, _, _ in seen] == list(range(1, total + 1)) and all(t == total for _, t, _ in seen)
    assert {g for _, _, g in seen} == {"W_a", "b_a", "x", "a0"}
    term, pipe = _Terminal(True), _Terminal(False)
    for stream in (term, pipe):
        shown = ProofProgress("lemma, n_a = 1", stream)
        shown(3, 8, "W_a")
        shown.clear()
    assert "\rlemma, n_a = 1: 3/8 decided (last: W_a)" in term.text and term.text.endswith("\r")
    assert pipe.text == ""
    r = prove_cli("--cell", "rnn")  # CliRunner's streams are no terminal
    assert r.exit_code == 0 and "\r" not in r.output
