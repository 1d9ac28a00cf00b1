"""Stage 4 (LaTeX): every target, closed forms in the article's notation, per-step rows, a document that compiles."""

from __future__ import annotations

import re
import shutil
import subprocess

import pytest
import sympy as sp
from conftest import by_name, same

from symbolic_lstm.document.emit_latex import DerivationDocument, default_targets
from symbolic_lstm.engine.cells import BUILTIN, get_cell

ARTICLE_TARGETS = ["W_f", "W_u", "W_c", "W_o", "b_f", "b_u", "b_c", "b_o", "a_prev", "c_prev", "x", "a0", "c0"]


def test_default_targets_are_the_article_list(lstm):
    assert default_targets(lstm) == ARTICLE_TARGETS


@pytest.mark.parametrize("mode", ["many-to-many", "many-to-one"])
@pytest.mark.parametrize("key", ARTICLE_TARGETS)
def test_every_target_has_all_four_parts(lstm, key, mode):
    doc = DerivationDocument(lstm, mode=mode, unroll=3)
    text = doc.section(key)
    for part in ("(a) Chain rule", "(b) Each factor evaluated", "(c) Closed form", "(d) Unrolled"):
        assert part in text
    assert text.count(r"\begin{align*}") == text.count(r"\end{align*}")
    assert text.count("{") == text.count("}")
    _chain, closed, values = doc.forms(key)
    assert values and not any(isinstance(e, sp.Derivative) for e in sp.preorder_traversal(closed))


def test_W_f_closed_form_is_the_article_formula(lstm):
    """((−(â−a) + ∂E<t+1>/∂a<t>)·Γ_o(1−tanh²c<t>) + δc<t+1>·Γ_f<t+1>)·c<t-1>·Γ_f(1−Γ_f)·[a<t-1>, x<t>]."""
    _, closed, _ = DerivationDocument(lstm).forms("W_f")
    n = by_name(closed)
    Gf, Gf1, Go = n["Gamma_f<t>"], n["Gamma_f<t+1>"], n["Gamma_o<t>"]
    a, ah, c, cp, dc1 = n["a<t>"], n["a_hat<t>"], n["c<t>"], n["c<t-1>"], n["delta_c<t+1>"]
    dE1 = n["Partial(Error<t+1>, a<t>)"]
    concat = n["[a_prev,x]<t>"]
    article = ((-(ah - a) + dE1) * Go * (1 - sp.tanh(c) ** 2) + dc1 * Gf1) * cp * Gf * (1 - Gf) * concat
    assert same(closed, article)


def test_W_f_three_rows_with_boundary_conditions(lstm):
    rows = DerivationDocument(lstm, unroll=3).rows("W_f")
    assert [t for t, _, _ in rows] == [3, 2, 1]
    last = rows[0][2]
    names = by_name(last)
    # δc<4> = 0 and ∂E<4>/∂a<3> = 0: neither appears in the last row
    assert "delta_c<4>" not in names and "Partial(Error<4>, a<3>)" not in names
    assert "delta_c<3>" in by_name(rows[1][2]) and "[a_prev,x]<1>" in by_name(rows[2][2])
    assert r"\left[a^{<0>}, x^{<1>}\right]" in DerivationDocument(lstm, unroll=3).section("W_f")


def test_many_to_one_scores_only_the_last_step(lstm):
    rows = DerivationDocument(lstm, mode="many-to-one", unroll=3).rows("b_o")
    for t, _, closed in rows:
        has_loss = any(k.startswith("a_hat") for k in by_name(closed))
        assert has_loss == (t == 3)


def test_initial_state_is_the_t1_gradient(lstm):
    rows = DerivationDocument(lstm, unroll=3).rows("c0")
    assert [t for t, _, _ in rows] == [1]
    closed = rows[0][2]
    n = by_name(closed)
    # ∂E/∂c<0> = δc<1>·Γ_f<1>, δc<1> = δa<1>·Γ_o<1>(1 − tanh²c<1>) + δc<2>·Γ_f<2>
    delta_a = n["a<1>"] - n["a_hat<1>"] + n["Partial(Error<2>, a<1>)"]
    delta_c = delta_a * n["Gamma_o<1>"] * (1 - sp.tanh(n["c<1>"]) ** 2) + n["delta_c<2>"] * n["Gamma_f<2>"]
    assert same(closed, delta_c * n["Gamma_f<1>"])


def test_cli_output_contains_latex_of_closed_form(lstm):
    body = DerivationDocument(lstm, unroll=3).body(["W_f"])
    assert r"\Gamma_f^{<t>}" in body and r"\tanh^{2}{\left(c^{<t>} \right)}" in body
    assert r"\hat{a}^{<t>}" in body and r"\delta c^{<t+1>}" in body


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (Debian: texlive-latex-base)")
@pytest.mark.parametrize("mode", ["many-to-many", "many-to-one"])
def test_standalone_document_compiles(lstm, tmp_path, mode):
    tex = DerivationDocument(lstm, mode=mode, unroll=3).standalone()
    (tmp_path / "d.tex").write_text(tex, encoding="utf-8")
    run = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "d.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert run.returncode == 0, run.stdout[-3000:]
    assert (tmp_path / "d.pdf").stat().st_size > 1000


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (Debian: texlive-latex-base)")
# the layer-normalised cell's documents take ~40 s to build and compile: with the slow tests
@pytest.mark.parametrize(
    "name", [n if n != "layernorm" else pytest.param(n, marks=pytest.mark.slow) for n in sorted(BUILTIN)]
)
@pytest.mark.parametrize(("unroll", "mode"), [(None, "many-to-many"), (3, "many-to-one")])
def test_latex_fits_the_page(name, unroll, mode, tmp_path):
    """Every built-in cell's standalone document compiles with no overfull box: long chains break across lines."""
    doc = DerivationDocument(get_cell(name), mode=mode, unroll=unroll)
    (tmp_path / "d.tex").write_text(doc.standalone(default_targets(get_cell(name))), encoding="utf-8")
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "-draftmode", "d.tex"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    log = (tmp_path / "d.log").read_text(encoding="utf-8", errors="replace")
    assert done.returncode == 0, log[-3000:]
    overfull = [ln for ln in log.splitlines() if ln.startswith("Overfull \\hbox")]
    assert not overfull, overfull[:5]


def test_nested_sums_over_units_have_distinct_indices():
    text = DerivationDocument(get_cell("layernorm")).body(["W_f"])
    assert r"\sum_{j=1}^{n_a}" in text  # a sum inside a sum …
    for m in re.finditer(r"\\sum_\{(\w)=1\}\^\{n_a\}", text):  # … never reuses the enclosing index
        assert m.group(1) in "ijklmn"
    assert r"\left(\sum_{i=1}^{n_a} \left(\sum_{i=1}" not in text


def test_multi_letter_names_are_words():
    text = DerivationDocument(get_cell("lstm")).body(["W_f"]) + DerivationDocument(get_cell("gru_torch")).body(["W_in"])
    assert r"\mathrm{sum}_{f}" in text and r"W_{\mathrm{in}}" in text
    assert not re.search(r"(?<!\\mathrm\{)sum_\{f\}", text)
