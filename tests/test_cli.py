"""The ``symbolic-lstm`` command, through click's runner and once as a real subprocess."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from click.testing import CliRunner

from symbolic_lstm.cli import main
from symbolic_lstm.runtime.paths import generated_dir


@pytest.fixture
def run():
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(main, list(args), catch_exceptions=False)

    return invoke


def test_derive_W_f_three_rows(run):
    r = run("derive", "W_f", "--unroll", "3")
    assert r.exit_code == 0
    assert r"\frac{\partial \mathrm{Error}}{\partial W_{f}}" in r.output
    assert "Unrolled over $T = 3$" in r.output
    for t in (1, 2, 3):
        assert rf"\Gamma_f^{{<{t}>}}" in r.output
    assert r"\tanh^{2}{\left(c^{<t>} \right)}" in r.output


def test_derive_all_targets_and_aliases(run):
    r = run("derive")
    assert r.exit_code == 0
    assert r.output.count(r"\subsection*") == 13
    r = run("derive", "a<t-1>", "c0", "--loss", "many-to-one")
    assert r.exit_code == 0 and r.output.count(r"\subsection*") == 2


def test_derive_standalone_is_a_document(run, tmp_path):
    out = tmp_path / "d.tex"
    r = run("derive", "b_o", "--standalone", "-o", str(out))
    assert r.exit_code == 0
    text = out.read_text(encoding="utf-8")
    assert text.startswith(r"\documentclass") and text.rstrip().endswith(r"\end{document}")


def test_unknown_target_is_a_usage_error(run):
    r = run("derive", "W_z")
    assert r.exit_code == 2
    assert "'W_z' is not a target" in r.output and "W_f" in r.output and "c_prev" in r.output


@pytest.mark.parametrize(
    "args",
    [
        ["derive", "--loss", "sideways"],
        ["derive", "--unroll", "0"],
        ["derive", "--cell", "nope"],
        ["derive", "--unroll", "-3"],
        ["derive", "-o", "/nonexistent-folder/x.tex"],
        ["prove", "--n-a", "0"],
        ["prove", "--n-x", "-2"],
        ["prove", "--unroll", "-1"],
        ["prove", "--points", "0"],
        ["prove", "--jobs", "0"],
        ["check", "--tol", "0"],
        ["check", "--tol", "-1e-7"],
        ["check", "--dir", "/nonexistent-folder"],
        ["check", "--cell", "nope"],
        ["generate", "--cell", "nope"],
        ["frobnicate"],
    ],
)
def test_bad_options_exit_2(run, args):
    r = run(*args)
    assert r.exit_code == 2, r.output
    assert "Error" in r.output or "Usage" in r.output


def test_unknown_cell_lists_choices(run):
    r = run("derive", "--cell", "nope")
    assert "lstm" in r.output


def test_prove_small(run):
    r = run("prove", "--n-a", "1", "--unroll", "2", "--jobs", "2")
    assert r.exit_code == 0, r.output
    lines = [ln for ln in r.output.splitlines() if ln.startswith(("✓", "✗"))]
    assert len(lines) == 22 and all(ln.startswith("✓") for ln in lines)
    assert "dError/dW_f" in r.output and "many-to-one" in r.output


def test_prove_failure_exits_1(run, monkeypatch):
    from symbolic_lstm.proof import obligations as proof

    real = proof.derive

    def wrong(cell):
        d = real(cell)
        d.chain["a"] = d.chain["a"].args[0]  # drop a fork branch
        return d

    monkeypatch.setattr(proof, "derive", wrong)
    r = CliRunner().invoke(main, ["prove", "--n-a", "1", "--unroll", "2", "--jobs", "1", "--loss", "many-to-many"])
    assert r.exit_code == 1
    assert "✗" in r.output


def test_generate_writes_and_refuses_foreign_files(run, tmp_path):
    r = run("generate", "--out", str(tmp_path))
    assert r.exit_code == 0 and "wrote" in r.output
    assert (tmp_path / "lstm.py").read_bytes() == (generated_dir() / "lstm.py").read_bytes()
    assert run("generate", "--out", str(tmp_path)).exit_code == 0  # ours: overwritten quietly
    (tmp_path / "lstm.py").write_text("my own code\n")
    r = run("generate", "--out", str(tmp_path))
    assert r.exit_code == 2 and "--force" in r.output
    assert (tmp_path / "lstm.py").read_text() == "my own code\n"
    assert run("generate", "--out", str(tmp_path), "--force").exit_code == 0
    assert not [p for p in tmp_path.iterdir() if p.name != "lstm.py"], "temporary files left behind"


def test_generate_into_a_file_path_is_a_usage_error(run, tmp_path):
    f = tmp_path / "file"
    f.write_text("")
    r = run("generate", "--out", str(f))
    assert r.exit_code == 2


def test_check_passes_and_prints_table(run):
    r = run("check")
    assert r.exit_code == 0, r.output
    for key in ("W_f", "b_o", "x", "a0", "c0"):
        assert f"\n{key} " in r.output
    assert "✗" not in r.output


def test_check_fails_on_a_broken_module(run, tmp_path):
    src = (generated_dir() / "lstm.py").read_text(encoding="utf-8")
    assert "_db = _dS2.sum(axis=0)" in src
    (tmp_path / "lstm.py").write_text(src.replace("_db = _dS2.sum(axis=0)", "_db = 2 * _dS2.sum(axis=0)"))
    r = CliRunner().invoke(main, ["check", "--dir", str(tmp_path)])
    assert r.exit_code == 1
    assert "FAILED" in r.output and "b_f" in r.output.split("FAILED", 1)[1]


def test_check_without_module_is_a_usage_error(run, tmp_path):
    r = run("check", "--dir", str(tmp_path))
    assert r.exit_code == 2 and "symbolic-lstm generate" in r.output


def test_python_m_entry_point():
    r = subprocess.run([sys.executable, "-m", "symbolic_lstm", "--version"], capture_output=True, text=True)
    assert r.returncode == 0 and "symbolic-lstm" in r.stdout
    r = subprocess.run([sys.executable, "-m", "symbolic_lstm", "derive", "nope"], capture_output=True, text=True)
    assert r.returncode == 2 and "Traceback" not in r.stderr


# -- user cell files and what goes wrong with them ------------------------------------------------

USER_CELL = """
import sympy as sp
from symbolic_lstm import CellBuilder, sigmoid


def build():
    cell = CellBuilder("mgu_like", inputs=("x",), states=("a",), output="a", description="a one-gate test cell")
    a_prev, x = cell.prev("a"), cell.input("x")
    s = cell.linear("sum_f", [a_prev, x], weight="W_f", bias="b_f")
    h = cell.linear("sum_h", [a_prev, x], weight="W_h", bias="b_h")
    f = cell.stage("Gamma_f", sigmoid(s))
    cand = cell.stage("h_tilde", sp.tanh(h))
    cell.stage("a", (1 - f) * a_prev + f * cand)
    return cell.build()


NOT_A_CELL = 42
"""


def test_user_cell_file_derive_generate_check(run, tmp_path):
    f = tmp_path / "mycell.py"
    f.write_text(USER_CELL)
    spec = f"{f}:build"
    r = run("derive", "W_f", "--cell", spec)
    assert r.exit_code == 0, r.output
    assert r"\frac{\partial \mathrm{Error}}{\partial W_{f}}" in r.output
    out = tmp_path / "gen"
    r = run("generate", "--cell", spec, "--out", str(out))
    assert r.exit_code == 0, r.output
    assert (out / "mgu_like.py").is_file()
    r = run("check", "--cell", spec, "--dir", str(out))
    assert r.exit_code == 0, r.output


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("{dir}/missing.py:build", "does not exist"),
        ("{dir}/mycell.py:nothing", "defines no 'nothing'"),
        ("{dir}/mycell.py:NOT_A_CELL", "is a int; expected a Cell"),
        ("{dir}/mycell.py:", "must be a Python identifier"),
        ("{dir}/mycell.txt:build", "path/to/file.py:NAME"),
        ("{dir}/broken.py:build", "importing cell file .*broken.py failed \\(line 2\\): NameError"),
        ("{dir}/badcell.py:build", "badcell.py:build: .*'nowhere'"),
    ],
)
def test_bad_cell_file_is_a_usage_error(run, tmp_path, spec, message):
    (tmp_path / "mycell.py").write_text(USER_CELL)
    (tmp_path / "broken.py").write_text("x = 1\ny = undefined_name\n")
    (tmp_path / "badcell.py").write_text(
        "from symbolic_lstm import CellBuilder\n"
        "def build():\n"
        "    cell = CellBuilder('bad', inputs=('x',), states=('a',), output='a')\n"
        "    cell.linear('s', [cell.prev('a'), 'nowhere'], weight='W', bias='b')\n"
        "    return cell.build()\n"
    )
    r = run("derive", "--cell", spec.format(dir=tmp_path))
    assert r.exit_code == 2, r.output
    assert re.search(message, r.output), r.output
    assert "Traceback" not in r.output


# -- unwritable output, stale modules ----------------------------------------------------------


def test_generate_onto_a_folder_or_under_a_file_is_a_usage_error(run, tmp_path):
    (tmp_path / "lstm.py").mkdir()
    r = run("generate", "--out", str(tmp_path))
    assert r.exit_code == 2 and "is a folder" in r.output
    (tmp_path / "plain").write_text("")
    r = run("generate", "--out", str(tmp_path / "plain" / "sub"))
    assert r.exit_code == 2 and "cannot create folder" in r.output


def test_check_stale_reports_up_to_date_and_stale_modules(run, tmp_path):
    r = run("check", "--stale")
    assert r.exit_code == 0 and "up to date" in r.output, r.output
    src = (generated_dir() / "lstm.py").read_text(encoding="utf-8")
    old = re.search(r'SOURCE_HASH = "([0-9a-f]+)"', src).group(1)
    (tmp_path / "lstm.py").write_text(src.replace(old, "0123456789abcdef"))
    (tmp_path / "helper.py").write_text("print('not generated')\n")  # not ours: ignored, never run
    r = run("check", "--stale", "--dir", str(tmp_path))
    assert r.exit_code == 1, r.output
    assert "stale" in r.output and "symbolic-lstm generate --cell lstm" in r.output
    assert "helper" not in r.output
    r = run("check", "--stale", "--dir", str(tmp_path / ".."))
    assert r.exit_code == 2 and "no generated modules" in r.output


def test_check_stale_follows_a_user_cell_file(run, tmp_path):
    f = tmp_path / "mycell.py"
    f.write_text(USER_CELL)
    out = tmp_path / "gen"
    assert run("generate", "--cell", f"{f}:build", "--out", str(out)).exit_code == 0
    r = run("check", "--stale", "--dir", str(out))
    assert r.exit_code == 0 and "up to date" in r.output, r.output
    f.write_text(USER_CELL.replace("(1 - f) * a_prev + f * cand", "(1 - f) * a_prev + f * cand * cand"))
    r = run("check", "--stale", "--dir", str(out))
    assert r.exit_code == 1 and f"--cell {f.resolve()}:build --out {out}" in r.output, r.output
    f.unlink()
    r = run("check", "--stale", "--dir", str(out))
    assert r.exit_code == 3 and "cannot find the definition" in r.output, r.output  # not known fresh
