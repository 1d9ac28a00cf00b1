"""bench/timing.py: the benches that put libraries side by side time each in blocks of calls in a row, the order
rotating by round, so no library's spinning threads land on another's clock."""

from __future__ import annotations

import contextlib
import importlib.util
import os
import subprocess
import sys
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


# -- the header every bench prints first ---------------------------------------------------------------------------
def test_header_says_machine_libraries_settings_and_heap(monkeypatch):
    import numpy as np

    for v in _timing.SETTINGS:
        monkeypatch.delenv(v, raising=False)
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "3")
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "65536")
    lines = _timing.header("glibc keeps freed memory", libraries=("numpy", "no-such-distribution-here"))
    assert all(line.startswith("# ") for line in lines)
    text = "\n".join(lines)
    assert f"{os.cpu_count()} CPUs" in lines[0] and "UTC" in lines[0] and "load" in lines[0]
    assert f"numpy {np.__version__}" in lines[1] and "no-such-distribution-here absent" in lines[1]
    assert "# set: OPENBLAS_NUM_THREADS=3, MALLOC_TRIM_THRESHOLD_=65536" in lines
    assert lines[-1] == "# heap: glibc keeps freed memory"
    assert text.count("\n") == len(lines) - 1  # one fact per line, none folded in


def test_header_without_settings_or_heap(monkeypatch):
    for v in _timing.SETTINGS:
        monkeypatch.delenv(v, raising=False)
    lines = _timing.header(None, libraries=())
    assert "# set: nothing" in lines
    assert not any("heap" in line for line in lines)


@pytest.mark.parametrize("script", ["run", "peers", "cells", "threads", "distributed"])
def test_every_bench_script_starts(script):
    """Each bench imports and parses its options (bench/distributed.py once imported a name the distributed
    package no longer exported, and nothing ran it), and each takes --heap."""
    if script == "threads":
        pytest.importorskip("threadpoolctl")
    done = subprocess.run(
        [sys.executable, str(TIMING.parent / f"{script}.py"), "--help"], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "--heap" in done.stdout
