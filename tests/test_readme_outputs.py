"""Every output the README shows is what the code prints now (scripts/readme_outputs.py refreshes them)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "readme_outputs.py"
_spec = importlib.util.spec_from_file_location("readme_outputs", SCRIPT)
readme_outputs = importlib.util.module_from_spec(_spec)
sys.modules["readme_outputs"] = readme_outputs  # its dataclasses look their module up
_spec.loader.exec_module(readme_outputs)

BLOCKS = readme_outputs.blocks(readme_outputs.README.read_text(encoding="utf-8"))


def test_the_readme_shows_outputs_and_durations_from_the_code():
    text = readme_outputs.README.read_text(encoding="utf-8")
    assert {b.cmd for b in BLOCKS} >= {"symbolic-lstm check", "symbolic-lstm train --data sunspots", "python"}
    assert len(readme_outputs.TIME.findall(text)) >= 8  # every stated duration is one the script times


@pytest.mark.parametrize("block", BLOCKS, ids=[b.name for b in BLOCKS])
def test_shown_output_is_what_runs(block):
    for module in ("torch", "jax", "matplotlib"):
        if block.code is not None and f"import {module}" in block.code:
            pytest.importorskip(module, reason=f"{module} not installed: this example's output is not reproduced")
    now = readme_outputs.produce(block)
    assert now == block.shown, (
        f"README shows a stale output for {block.name}; run: python scripts/readme_outputs.py --update\n"
        + readme_outputs.diff(block, now)
    )
