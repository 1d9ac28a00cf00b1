"""The Python examples of the README and the docs pages run as written, every one of them."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)]
FOUND = [
    (page.relative_to(ROOT), code)
    for page in PAGES
    for code in re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), re.S)
]
BLOCKS = [code for _, code in FOUND]
RUNNABLE = FOUND


def test_readme_has_examples():
    assert len(RUNNABLE) >= 2 and any(str(page) == "README.md" for page, _ in RUNNABLE)


@pytest.mark.parametrize(("page", "code"), RUNNABLE, ids=[f"{page}-block{i}" for i, (page, _) in enumerate(RUNNABLE)])
def test_readme_example_runs(page, code, capsys):
    for module in ("torch", "array_api_compat"):
        if f"import {module}" in code or (module == "array_api_compat" and "_array_api" in code):
            pytest.importorskip(module)
    if "import jax" in code or '_jax")' in code:  # in a child process: JAX starts threads, the proof tests fork
        pytest.importorskip("jax")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        assert done.returncode == 0, done.stderr[-3000:]
        return
    if "symbolic_lstm.distributed" in code:
        pytest.importorskip("distributed", reason="Dask is the [distributed] extra")
    namespace: dict = {"__name__": "__main__"}  # as a script runs it: the code under a main guard runs too
    exec(compile(code, str(ROOT / page), "exec"), namespace)
    if "errors.append(E)" in code:
        assert namespace["errors"][-1] < 0.02 * namespace["errors"][0]  # the worked example's loss really falls


def test_readme_user_cell_works_end_to_end(tmp_path):
    """The own-cell example of docs/cells.md: derive, prove, generate, check and load, as the page says."""
    from click.testing import CliRunner

    from symbolic_lstm import load
    from symbolic_lstm.cli import main

    (block,) = [b for b in BLOCKS if 'CellBuilder("mgu"' in b and "def build" in b]
    (tmp_path / "mgu.py").write_text(block, encoding="utf-8")
    spec, out = f"{tmp_path / 'mgu.py'}:build", str(tmp_path / "mykernels")
    runner = CliRunner()
    for args in (
        ["derive", "W_f", "--cell", spec, "--unroll", "2"],
        ["prove", "--cell", spec, "--n-a", "2", "--unroll", "2", "--jobs", "1"],
        ["generate", "--cell", spec, "--out", out],
        ["check", "--cell", spec, "--dir", out],
    ):
        r = runner.invoke(main, args, catch_exceptions=False)
        assert r.exit_code == 0, (args, r.output)
    k = load("mgu", out)
    assert k.STATES == ("a",) and set(k.PARAMS) == {"W_f", "b_f", "W_h", "b_h"}
