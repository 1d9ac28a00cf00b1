"""Every output the README and the docs pages show is what the code prints now (scripts/readme_outputs.py
refreshes them).

Compared as scripts/readme_outputs.py says: structure, words, names, verdicts and integers exactly; other
numbers within a stated tolerance; sampled text not at all — so the test passes on any machine, whatever
BLAS kernels and thread counts round the last digits.
"""

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

PAGES = {str(p.relative_to(readme_outputs.ROOT)): p.read_text(encoding="utf-8") for p in readme_outputs.pages()}
BLOCKS = [b for page, text in PAGES.items() for b in readme_outputs.blocks(text, page)]


def test_the_pages_show_outputs_and_durations_from_the_code():
    assert {b.cmd for b in BLOCKS} >= {"symbolic-lstm check", "symbolic-lstm train --data sunspots", "python"}
    assert {b.page for b in BLOCKS} >= {"README.md", "docs/cli.md", "docs/api.md"}
    times = sum(len(readme_outputs.TIME.findall(text)) for text in PAGES.values())
    assert times >= 8  # every stated duration is one the script times


#: Outputs that take long to produce (60 epochs of the character model; two recurrent nets trained in torch):
#: with the slow tests.
SLOW = {"symbolic-lstm train --sample-every 30"}


def _slow(b) -> bool:
    return b.cmd in SLOW or (b.code is not None and "torch.optim" in b.code)


@pytest.mark.parametrize(
    "block",
    [pytest.param(b, marks=pytest.mark.slow) if _slow(b) else b for b in BLOCKS],
    ids=[b.name for b in BLOCKS],
)
def test_shown_output_is_what_runs(block):
    for module in ("torch", "jax", "matplotlib"):
        if block.code is not None and (f"import {module}" in block.code or f'_{module}")' in block.code):
            pytest.importorskip(module, reason=f"{module} not installed: this example's output is not reproduced")
    now = readme_outputs.produce(block)
    why = readme_outputs.mismatches(block.shown, now)
    assert not why, (
        f"{block.page} shows an output of {block.cmd!r} that the code no longer prints:\n"
        + "\n".join(why)
        + "\nIf your change means to print this, `python scripts/readme_outputs.py --update --no-times` rewrites "
        "the shown outputs for you (review its diff); if not, your change altered what users see.\n"
        + readme_outputs.diff(block, now)
    )


def test_outputs_that_differ_only_in_round_off_match():
    shown = "W_u   (n_a, n_a + n_x)   3.031e-10  ✓\ntraining loss: 3.495 (epoch 1) → 1.284 (epoch 60)\n"
    assert not readme_outputs.mismatches(shown, shown.replace("3.031e-10", "3.105e-15").replace("1.284", "1.291"))
    for changed in ("✗", "W_x", "epoch 61", "1.484", "3.031e-05", "(n_a,)"):
        old = {"✗": "✓", "W_x": "W_u", "epoch 61": "epoch 60", "1.484": "1.284", "3.031e-05": "3.031e-10"}
        now = shown.replace(old.get(changed, "(n_a, n_a + n_x)"), changed)
        assert readme_outputs.mismatches(shown, now), changed
    sample = "--- sample after epoch 30 (loss 1.541) ---\nPROSPERO:\nAnd so\ntraining loss: 1 → 2\n"
    assert not readme_outputs.mismatches(sample, sample.replace("And so", "Or it\nat winding"))
    assert readme_outputs.mismatches(sample, sample.replace("loss: 1 → 2", "loss: 1 → 3"))
