"""The README's Python examples run as written (the API summary block, with its free names, excepted)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parent.parent / "README.md"
BLOCKS = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
RUNNABLE = [b for b in BLOCKS if "a0=None" not in b]


def test_readme_has_examples():
    assert len(RUNNABLE) >= 2


@pytest.mark.parametrize("code", RUNNABLE, ids=[f"block{i}" for i in range(len(RUNNABLE))])
def test_readme_example_runs(code, capsys):
    namespace: dict = {}
    exec(compile(code, str(README), "exec"), namespace)
    if "mse_loss" in code:
        assert namespace["E"] < 0.25  # the worked example's loss really falls
