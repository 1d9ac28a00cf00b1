"""``symbolic-lstm graph``: DOT text of the stages, forks and backward edges, and SVG/PNG through dot."""

from __future__ import annotations

import os
import re
import stat

import pytest
from click.testing import CliRunner

from symbolic_lstm import derive, get_cell
from symbolic_lstm.cli import main
from symbolic_lstm.document.emit_dot import graph_dot
from symbolic_lstm.engine.cells import BUILTIN

NODE = re.compile(r'^\s*"([^"]+)" \[label=', re.M)
EDGE = re.compile(r'^\s*"([^"]+)" -> "([^"]+)"(.*);$', re.M)


def _parse(text):
    nodes = set(NODE.findall(text))
    edges = EDGE.findall(text)
    return (
        nodes,
        [(a, b) for a, b, attrs in edges if "dashed" not in attrs],
        [(a, b, attrs) for a, b, attrs in edges if "dashed" in attrs],
    )


@pytest.mark.parametrize("name", sorted(BUILTIN))
def test_one_step_graph_has_every_stage_read_and_fork(name):
    cell = get_cell(name)
    text = graph_dot(cell)
    assert text.count("{") == text.count("}")
    nodes, forward, backward = _parse(text)
    assert all(a in nodes and b in nodes for a, b in forward), "an edge names an undeclared node"
    reads = sum(len(st.reads) for st in cell.stages)
    # one forward edge per read, one into the Error, one per state leaving the step
    assert len(forward) == reads + 1 + len(cell.states)
    assert len(backward) == len(forward)  # every forward edge has its backward branch
    g = derive(cell).graph
    for st in cell.stages:
        line = next(ln for ln in text.splitlines() if ln.strip().startswith(f'"{st.name}@t" [label='))
        assert ("(fork)" in line) == g.is_fork(st.name)


def test_backward_edges_carry_the_engines_partials():
    text = graph_dot(get_cell("lstm"))
    assert "∂c<t>/∂Γ_f<t> = c<t-1>" in text
    assert "∂Γ_f<t>/∂sum_f<t> = Γ_f<t>·(1 - Γ_f<t>)" in text
    assert "∂a<t>/∂c<t> = Γ_o<t>·(1 - tanh(c<t>)²)" in text
    assert "∂Error<t>/∂a<t> = a<t> - â<t>" in text
    assert "∂sum_o<t>/∂a<t-1> = W_o^(a)" in text


def test_unrolled_graph_chains_the_states_and_scores_per_mode():
    cell = get_cell("lstm")
    m2m, m2o = graph_dot(cell, unroll=3), graph_dot(cell, unroll=3, mode="many-to-one")
    assert m2m.count('[label="Error<') == 3 and m2o.count('[label="Error<') == 1
    nodes, forward, _ = _parse(m2o)
    assert ("c@1", "c@2") in forward and ("a@2", "sum_f@3") in forward and ("c@0", "c@1") in forward
    assert all(a in nodes and b in nodes for a, b in forward)


def test_peephole_parameters_are_drawn_once_and_untimed():
    text = graph_dot(get_cell("peephole"), unroll=2)
    assert text.count('"p_f@param" [label=') == 1
    assert '"p_f@param" -> "Gamma_f@1"' in text and '"p_f@param" -> "Gamma_f@2"' in text
    assert "p_f<t>" not in text


def test_graph_cli_dot_and_errors(tmp_path, monkeypatch):
    run = CliRunner().invoke
    r = run(main, ["graph", "--cell", "rnn"])
    assert r.exit_code == 0 and r.output.startswith("// Computation graph of cell rnn")
    out = tmp_path / "g.dot"
    assert run(main, ["graph", "-T", "2", "-o", str(out)]).exit_code == 0
    assert out.read_text().startswith("// Computation graph")
    assert run(main, ["graph", "-T", "0"]).exit_code == 2
    assert run(main, ["graph", "--format", "jpeg"]).exit_code == 2
    r = run(main, ["graph", "--format", "png"])
    assert r.exit_code == 2 and "-o FILE.png" in r.output
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    r = run(main, ["graph", "--format", "svg"])
    assert r.exit_code == 2 and "apt install graphviz" in r.output


def test_graph_cli_svg_through_dot(tmp_path, monkeypatch):
    """With a `dot` on PATH (a stand-in that checks its input is our DOT), the SVG is written atomically."""
    fake = tmp_path / "bin" / "dot"
    fake.parent.mkdir()
    fake.write_text('#!/bin/sh\ngrep -q "^digraph" && printf "<svg>%s</svg>" "$1"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "g.svg"
    r = CliRunner().invoke(main, ["graph", "--format", "svg", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text() == "<svg>-Tsvg</svg>"
