"""The notebook experience: derivations, graphs, checks, proofs and training runs display themselves in Jupyter
(IPython's _repr_*_ protocol, no IPython needed), and the example notebooks run from top to bottom."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

from symbolic_lstm import get_cell, load
from symbolic_lstm.check.gradcheck import check_module
from symbolic_lstm.document import notebook as nb
from symbolic_lstm.document.emit_latex import DerivationDocument
from symbolic_lstm.proof.obligations import prove

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def test_derivation_is_markdown_that_mathjax_and_katex_render():
    text = DerivationDocument(get_cell("layernorm"), unroll=2).show("W_f")._repr_markdown_()
    assert "$$\\begin{aligned}" in text and "\\end{aligned}$$" in text
    for bad in ("\\paragraph", "\\documentclass", "\\begin{align*}", "\\subsection", "\\noindent", "\\usepackage"):
        assert bad not in text, bad
    assert "<" not in text and ">" not in text  # as \lt, \gt: no HTML sanitizer can take a^{<t>} for a tag
    assert "\\\\\n&\\quad" in text  # long lines broken as in the PDF


def test_stages_typeset():
    text = nb.stages("lstm")._repr_markdown_()
    assert "\\begin{aligned}" in text and "\\mathrm{sum}_{f}" in text and "\\tanh" in text


def test_graph_is_svg_or_an_explicit_dot_fallback(monkeypatch):
    g = nb.graph("gru")
    svg = g._repr_svg_()
    assert svg is None or svg.startswith("<svg")
    monkeypatch.setattr("shutil.which", lambda name: None)  # as if Graphviz were not installed
    assert g._repr_svg_() is None
    bundle = g._repr_mimebundle_()
    assert "image/svg+xml" not in bundle
    assert "apt install graphviz" in bundle["text/markdown"] and "digraph" in bundle["text/markdown"]


def test_check_and_proof_results_are_html_tables_and_the_same_text_as_before():
    rows = check_module(load("rnn"), seed=1)
    html = rows._repr_html_()
    assert html.startswith("<table>") and "W_a" in html and "✓" in html
    from symbolic_lstm.check.gradcheck import format_table

    assert str(rows) == format_table(rows)
    lines = prove(get_cell("rnn"), 1, 1, T=2, points=1, workers=1)
    assert lines._repr_html_().startswith("<table>") and "∂Error/∂W_a" in lines._repr_html_()
    assert str(lines).splitlines()[0] == str(lines[0])


def test_training_history_plots_inline():
    pytest.importorskip("matplotlib")
    from symbolic_lstm import train as tr

    png = tr.History(losses=[1.0, 0.5, 0.25], test_rmse=0.3, baseline_rmse=1.0)._repr_png_()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"


def test_backward_listing_pairs_code_with_derivation_steps():
    listing = nb.backward_listing("lstm")
    steps = dict(listing.rows)
    assert any(code.startswith("np.add(da[t], da_next") and "fork" in step for code, step in listing.rows)
    assert "<table>" in listing._repr_html_() and len(steps) > 10


@pytest.mark.skipif(
    importlib.util.find_spec("nbclient") is None or importlib.util.find_spec("ipykernel") is None,
    reason="nbclient and ipykernel not installed (pip install '.[test]' or '.[notebook]')",
)
@pytest.mark.slow  # a Jupyter kernel each: with the slow tests (python -m pytest -m slow)
@pytest.mark.parametrize("name", ["article.ipynb", "your_own_cell.ipynb"])
def test_notebook_runs_top_to_bottom(name, tmp_path, monkeypatch):
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))  # where a notebook's own cell is generated
    book = nbformat.read(EXAMPLES / name, as_version=4)
    assert all(not c.get("outputs") for c in book.cells if c.cell_type == "code")  # committed without outputs
    NotebookClient(book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}).execute()
    kinds = {k for c in book.cells if c.cell_type == "code" for o in c.outputs for k in o.get("data", {})}
    assert {"text/markdown", "text/html"} <= kinds  # typeset derivations and tables, not raw text
    import shutil

    if shutil.which("dot") is not None:
        assert "image/svg+xml" in kinds  # the graph as a picture
    if importlib.util.find_spec("matplotlib") is not None:
        assert "image/png" in kinds  # the training curve
    errors = [o for c in book.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
