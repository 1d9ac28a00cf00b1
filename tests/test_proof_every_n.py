"""A proof for every n: each stage kind's rule, as the engine produces it, proved at symbolic sizes
(``symbolic_lstm.proof.rules``, collected by ``symbolic_lstm.proof.sizes``), cached, cited by every cell's proof.

It must be able to fail: each mutation below breaks one rule of the engine — a linear rule transposed, the second
operand's block of columns off by one, an elementwise δ that reads other units, a mean without its 1/n — and the
obligation of that rule fails, named, while the others hold.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat

import pytest
import sympy as sp
from click.testing import CliRunner

from symbolic_lstm import get_cell
from symbolic_lstm.cli import main
from symbolic_lstm.engine import derivation as engine_derivation
from symbolic_lstm.engine import stages
from symbolic_lstm.engine.derivation import derive
from symbolic_lstm.engine.stages import Elementwise, Linear
from symbolic_lstm.proof import rules, sizes
from symbolic_lstm.proof.cache import FILE, FOLDER_VARIABLE, ProofCache
from symbolic_lstm.proof.exact import for_proof
from symbolic_lstm.proof.indices import Ranges, same, settle


def prove_cli(*args: str):
    return CliRunner().invoke(main, ["prove", "-j", "1", *args])


def rules_of(name: str, cache=None) -> sizes.SizesReport:
    cell = for_proof(get_cell(name))
    return sizes.prove_sizes(cell, derive(cell), cache)


def failing(report: sizes.SizesReport) -> dict[str, tuple[str, ...]]:
    return {line.name: line.differs for line in report if not line.ok}


@pytest.fixture
def own_cache(tmp_path, monkeypatch):
    monkeypatch.setenv(FOLDER_VARIABLE, str(tmp_path / "proofs"))
    return tmp_path / "proofs"


# -- what every cell cites ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["lstm", "gru", "peephole", "layernorm", "rnn", "cifg", "gru_torch"])
def test_every_builtins_rules_hold_at_symbolic_sizes(name):
    report = rules_of(name)
    assert report and report.ok and not report.uncovered, str(report)
    kinds = {line.name.split(" rule")[0] for line in report}
    assert {"linear", "elementwise", "loss"} <= kinds
    assert ("mean" in kinds) == (name == "layernorm")


def test_the_patterns_a_cell_cites():
    names = [line.name for line in rules_of("layernorm")]
    assert "linear rule, 2 operands" in names
    assert "mean rule, 1 node, 1 row scalar" in names  # the variance: (x − μ)² over the units
    assert "elementwise rule, 1 row scalar" in names  # 1/√(var + ε): a row scalar of a row scalar
    assert any(n.startswith("elementwise rule, 1 node, 2 unit parameters") for n in names)  # γ·x̂ + β


def test_prove_ends_with_every_t_and_every_n(own_cache):
    r = prove_cli("--cell", "rnn")
    assert r.exit_code == 0, r.output
    assert r.output.splitlines()[0].startswith("every n: each stage kind's rule")
    assert "✓ linear rule, 2 operands" in r.output and "proved now" in r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith("proved for every T and every n:") and "n_a = n_x = 1; n_a = n_x = 2" in last
    again = prove_cli("--cell", "rnn")
    assert again.exit_code == 0 and "proved now" not in again.output
    assert again.output.count("cached: proved ") == r.output.count("proved now")


def test_a_stage_no_rule_covers_is_named_in_the_last_line():
    class Select(Elementwise):
        rule = "select"  # a kind of its own, with no symbolic-size rule (yet)

    cell = get_cell("rnn")
    a = cell.stage("a")
    odd = dataclasses.replace(cell, stages=(*cell.stages[:-1], Select(a.name, a.expr, a.reads)))
    obligations, uncovered = sizes.obligations_of(odd, derive(odd))
    assert {ob.name for ob in obligations} == {"linear rule, 2 operands", "loss rule"}
    assert uncovered == ["a (Select: no symbolic-size rule)"]
    from symbolic_lstm.cli.proving import conclusion

    text = conclusion([(1, 1), (2, 2)], uncovered)
    assert text.startswith("proved for every T at the sizes checked (n_a = n_x = 1; n_a = n_x = 2); not for every n")
    assert "a (Select: no symbolic-size rule)" in text and "every T and every n" not in text


# -- it must be able to fail --------------------------------------------------------------------------------------


def test_a_transposed_linear_rule_fails_the_linear_obligation(monkeypatch):
    from symbolic_lstm.proof import obligations

    def broken(cell, *args, **kw):
        d = derive(cell, *args, **kw)
        r = d.rules["sum_f"]
        d.rules["sum_f"] = dataclasses.replace(r, operand={**r.operand, "a_prev": r.D * r.W["a_prev"].T})
        return d

    monkeypatch.setattr(obligations, "derive", broken)
    r = prove_cli("--cell", "lstm")
    assert r.exit_code == 1, r.output
    assert "✗ linear rule, 2 operands" in r.output and "differs: δu_1" in r.output
    assert "the every n obligation fails for linear rule, 2 operands (δu_1)" in r.output
    assert "✓ elementwise rule, 4 nodes" in r.output  # the other rules still hold


def test_a_block_offset_off_by_one_fails_the_linear_obligation(monkeypatch):
    columns = Linear.columns

    def shifted(self, operand, width):
        start, stop = columns(self, operand, width)
        return (start + 1, stop + 1) if self.inputs.index(operand) == 1 else (start, stop)

    monkeypatch.setattr(Linear, "columns", shifted)
    assert failing(rules_of("gru")) == {"linear rule, 2 operands": ("δu_2", "δW (block 2)")}


def test_an_elementwise_rule_that_reads_other_units_fails_the_elementwise_obligations(monkeypatch):
    """δv_i of y_i = f(v_i) summed over every unit's branch (its neighbours' included), as a row scalar's is."""
    fans_out = engine_derivation.StepDerivation._fans_out

    def everywhere(self, v, consumer):
        return fans_out(self, v, consumer) or (self.graph.stage(consumer).unitwise and v not in self.cell.scalars)

    monkeypatch.setattr(engine_derivation.StepDerivation, "_fans_out", everywhere)
    bad = failing(rules_of("lstm"))
    assert bad == {
        "elementwise rule, 1 node": ("δu1",),
        "elementwise rule, 2 nodes": ("δu1", "δu2"),
        "elementwise rule, 4 nodes": ("δu1", "δu2", "δu3", "δu4"),
    }


def test_a_mean_without_its_one_over_n_fails_the_mean_obligations(monkeypatch):
    monkeypatch.setattr(stages.Reduce, "unit_expr", property(lambda self: self.expr))
    bad = failing(rules_of("layernorm"))
    assert bad == {"mean rule, 1 node": ("δu1",), "mean rule, 1 node, 1 row scalar": ("δu1", "δr1")}


def test_a_loss_partial_of_the_wrong_sign_fails_the_loss_obligation(monkeypatch):
    """The engine's loss branch derived from ½(â + a)²: its ∂Error/∂a is a + â, not a − â."""

    def wrong(output, hat):
        return sp.Rational(1, 2) * (hat + output) ** 2

    def engine(cell, scored=None, loss=None):
        return derive(cell, scored, loss or wrong)

    monkeypatch.setattr(rules, "engine_derive", engine)
    assert failing(rules_of("rnn")) == {"loss rule": ("∂Error/∂a",)}


# -- the cache ----------------------------------------------------------------------------------------------------


def test_the_cache_is_json_in_a_private_folder_and_keyed_by_the_rule(own_cache, monkeypatch):
    first = rules_of("rnn", ProofCache())
    assert first.ok and all(line.cached is None for line in first)
    assert stat.S_IMODE(os.stat(own_cache).st_mode) == 0o700
    data = json.loads((own_cache / FILE).read_text())
    assert data["format"] == 1 and {e["rule"] for e in data["proved"].values()} == {ln.name for ln in first}
    second = rules_of("rnn", ProofCache())
    assert second.ok and all(line.cached for line in second)
    # a changed rule has another key: it is proved again (here: and fails, and a failure is never cached)
    columns = Linear.columns
    monkeypatch.setattr(Linear, "columns", lambda self, op, w: tuple(c + 1 for c in columns(self, op, w)))
    changed = rules_of("rnn", ProofCache())
    assert [ln.cached for ln in changed if ln.name.startswith("linear")] == [None]
    assert not changed.ok and len(json.loads((own_cache / FILE).read_text())["proved"]) == len(first)


@pytest.mark.parametrize("damage", [b"", b"{not json", b"\xff\xfe", b'{"format": 1, "proved": [1]}', b"[]"])
def test_a_damaged_cache_is_proved_again_never_a_crash(own_cache, damage):
    own_cache.mkdir(mode=0o700)
    (own_cache / FILE).write_bytes(damage)
    report = rules_of("rnn", ProofCache())
    assert report.ok and all(line.cached is None for line in report)
    assert json.loads((own_cache / FILE).read_text())["proved"]  # rewritten whole


def test_an_unwritable_cache_leaves_the_proof_as_it_was(tmp_path, monkeypatch):
    blocked = tmp_path / "file"
    blocked.write_text("")
    monkeypatch.setenv(FOLDER_VARIABLE, str(blocked / "proofs"))  # a folder under a file: cannot be made
    report = rules_of("rnn", ProofCache())
    assert report.ok and all(line.cached is None for line in report)


# -- index notation with symbolic bounds --------------------------------------------------------------------------


def test_a_delta_in_range_sums_out_and_one_out_of_range_vanishes():
    n, m = sp.symbols("n m", integer=True, positive=True)
    p = sp.Symbol("p", integer=True, nonnegative=True)
    i = sp.Symbol("i", integer=True)
    u, lam = sp.IndexedBase("u"), sp.IndexedBase("Lambda")
    L = sp.Sum(lam[i] * sp.tanh(u[i]), (i, 0, n - 1))
    assert same(sp.diff(L, u[p]), lam[p] * (1 - sp.tanh(u[p]) ** 2), Ranges({p: n}))
    shifted = sp.Sum(lam[i] * sp.tanh(u[i + m]), (i, 0, n - 1))  # reads units m … m + n − 1: p < m is outside
    assert settle(sp.diff(shifted, u[p]), Ranges({p: m})) == 0
    # reading unit i + 1: ∂/∂u_p is Λ_{p−1}·tanh'(u_p) only for p ≥ 1, undecided over 0 ≤ p ≤ n − 1: never "same"
    ahead = sp.Sum(lam[i] * sp.tanh(u[i + 1]), (i, 0, n - 1))
    assert not same(sp.diff(ahead, u[p]), lam[p - 1] * (1 - sp.tanh(u[p]) ** 2), Ranges({p: n}))
    assert same(sp.diff(ahead, u[p + 1]), lam[p] * (1 - sp.tanh(u[p + 1]) ** 2), Ranges({p: n}))
