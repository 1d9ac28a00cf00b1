"""bench/timing.py: the benches that put libraries side by side time each in blocks of calls in a row, the order
rotating by round, so no library's spinning threads land on another's clock."""

from __future__ import annotations

import contextlib
import importlib.util
from itertools import groupby
from pathlib import Path

import pytest

# loaded by path: bench/ is scripts, not a package, and its names (timing, threads, run) must not shadow others
TIMING = Path(__file__).resolve().parent.parent / "bench" / "timing.py"
_spec = importlib.util.spec_from_file_location("bench_timing", TIMING)
_timing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_timing)
in_blocks = _timing.in_blocks


def test_each_implementation_runs_in_blocks_the_order_rotating():
    calls: list[str] = []
    entered: list[str] = []

    @contextlib.contextmanager
    def settings(name):
        entered.append(name)
        yield

    runs = {name: (lambda name=name: calls.append(name)) for name in "abc"}
    times = in_blocks(runs, reps=7, block=3, warmup=2, settings=settings)
    assert {n: len(t) for n, t in times.items()} == {"a": 7, "b": 7, "c": 7}
    assert all(t >= 0 for ts in times.values() for t in ts)
    timed = calls[3 * 2 :]  # after two warm-up calls each
    assert calls[:6] == ["a", "a", "b", "b", "c", "c"]
    blocks = [(name, len(list(group))) for name, group in groupby(timed)]
    assert blocks == [("a", 3), ("b", 3), ("c", 3), ("b", 3), ("c", 3), ("a", 3), ("c", 1), ("a", 1), ("b", 1)]
    assert entered == list("abc") + [name for name, _ in blocks]  # settings held around every block


@pytest.mark.parametrize("reps, block, warmup", [(0, 5, 2), (5, 0, 2), (5, 5, -1)])
def test_nonsense_counts_are_refused(reps, block, warmup):
    with pytest.raises(ValueError, match="reps and block must be positive"):
        in_blocks({"a": lambda: None}, reps, block, warmup)
