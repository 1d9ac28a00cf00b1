"""Every hint is a command that, pasted as is, fixes the problem; every message says what was wrong and what
was expected, in our words."""

from __future__ import annotations

import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from symbolic_lstm import load
from symbolic_lstm.cli import main

PAPERS = Path(__file__).parent / "cells" / "papers.py"


def _make_stale(path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    path.write_text(re.sub(r'SOURCE_HASH = "[0-9a-f]+"', 'SOURCE_HASH = "0000000000000000"', text), encoding="utf-8")


def _hint(output: str) -> list[str]:
    (line,) = [ln for ln in output.splitlines() if "run: symbolic-lstm " in ln]
    return shlex.split(line.split("run: symbolic-lstm ", 1)[1])


@pytest.mark.parametrize(("spec", "backend"), [("rnn", "numpy"), ("rnn", "array-api"), (f"{PAPERS}:leaky", "numpy")])
def test_stale_hint_pasted_fixes_the_module(tmp_path, spec, backend):
    runner = CliRunner()
    folder = tmp_path / "stale dir"  # a space: the hint must quote it
    assert runner.invoke(main, ["generate", "--cell", spec, "--out", str(folder), "--backend", backend]).exit_code == 0
    (module,) = folder.glob("*.py")
    _make_stale(module)
    r = runner.invoke(main, ["check", "--stale", "--dir", str(folder)])
    assert r.exit_code == 1 and "stale" in r.output
    hint = _hint(r.output)
    assert runner.invoke(main, hint).exit_code == 0  # the hint, as printed
    r = runner.invoke(main, ["check", "--stale", "--dir", str(folder)])
    assert r.exit_code == 0 and "up to date" in r.output


def test_check_warns_with_a_hint_that_writes_the_checked_folder(tmp_path):
    runner = CliRunner()
    assert runner.invoke(main, ["generate", "--cell", "rnn", "--out", str(tmp_path)]).exit_code == 0
    _make_stale(tmp_path / "rnn.py")
    r = runner.invoke(main, ["check", "--cell", "rnn", "--dir", str(tmp_path)])
    assert "warning:" in r.output
    assert runner.invoke(main, _hint(r.output)).exit_code == 0
    assert "warning:" not in runner.invoke(main, ["check", "--cell", "rnn", "--dir", str(tmp_path)]).output


def test_a_module_whose_cell_moved_is_not_called_fresh(tmp_path):
    cell_file = tmp_path / "mine.py"
    shutil.copy(PAPERS, cell_file)
    out = tmp_path / "k"
    assert CliRunner().invoke(main, ["generate", "--cell", f"{cell_file}:leaky", "--out", str(out)]).exit_code == 0
    cell_file.unlink()
    r = CliRunner().invoke(main, ["check", "--stale", "--dir", str(out)])
    assert r.exit_code == 3 and "cannot tell" in r.output and "not known fresh" in r.output


def test_load_suggests_the_close_match_not_a_command_that_fails():
    with pytest.raises(ValueError, match="did you mean 'lstm'") as e:
        load("lsmt")
    assert "generate --cell lsmt" not in str(e.value)


def test_load_names_the_extra_an_array_api_module_needs(monkeypatch):
    monkeypatch.setitem(sys.modules, "array_api_compat", None)  # as if not installed
    with pytest.raises(ModuleNotFoundError, match=r"symbolic-lstm\[array-api\]"):
        load("lstm_array_api")


def test_empty_output_name_is_a_usage_error():
    for args in (["derive", "-o", ""], ["graph", "-o", ""]):
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 2 and "expected a file name" in r.output and "busy" not in r.output


def test_transposed_weight_is_called_transposed():
    k = load("lstm")
    p = k.init_params(3, 11)
    p["W_f"] = p["W_f"].T.copy()
    with pytest.raises(ValueError, match=r"p\['W_f'\] must have shape .* = \(11, 14\) .* looks transposed"):
        k.forward(np.zeros((2, 2, 3)), p)


def test_saturated_table_does_not_tick_a_raw_error_of_one():
    r = CliRunner().invoke(main, ["check", "--saturated", "--cell", "rnn"])
    assert r.exit_code == 0
    head = r.output.splitlines()[1]
    assert "raw rel. error" in head and "judged error" in head and "max rel. error" not in head


def test_help_lists_each_command_once():
    out = CliRunner().invoke(main, ["--help"]).output
    for name in ("derive", "prove", "generate", "check", "graph", "train"):
        assert len(re.findall(rf"^\s+{name}\s", out, re.M)) == 1, name


def test_generate_in_an_installed_package_writes_to_the_working_directory(tmp_path, monkeypatch):
    import symbolic_lstm.runtime.paths as paths

    monkeypatch.setattr(paths, "is_checkout", lambda: False)
    monkeypatch.chdir(tmp_path)
    shipped = (paths.generated_dir() / "rnn.py").read_bytes()
    r = CliRunner().invoke(main, ["generate", "--cell", "rnn"])
    assert r.exit_code == 0 and "left as shipped" in r.output
    assert (tmp_path / "generated" / "rnn.py").is_file()
    assert (paths.generated_dir() / "rnn.py").read_bytes() == shipped
    assert "Invalid value for --out" not in r.output
