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


_FAULTS = """
import resource, sys
import numpy as np
sys.path.insert(0, {bench!r})
from timing import heap_setting
print(heap_setting({keep!r}))
def touch():  # 64 MiB, above glibc's largest dynamic mmap threshold (32 MiB): mapped afresh each time by default
    a = np.empty(1 << 24, dtype=np.float32)
    a.fill(1.0)
    return float(a[-1])
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def _faults(keep: bool) -> tuple[str, int]:
    import subprocess
    import sys

    code = _FAULTS.format(bench=str(TIMING.parent), keep=keep)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    return out[0], int(out[1])


@pytest.mark.skipif(not Path("/proc/self").exists(), reason="page faults counted on Linux")
def test_keeping_freed_memory_stops_page_faults_on_memory_allocated_again():
    said, kept = _faults(keep=True)
    if "no glibc" in said:
        pytest.skip(said)
    assert said.startswith("glibc") and "keeps freed memory" in said
    default_said, default = _faults(keep=False)
    assert default_said.startswith("allocator as the environment sets it")
    if "MALLOC_MMAP_THRESHOLD_" in default_said:
        pytest.skip("the environment already keeps freed memory: nothing to compare with")
    # glibc's defaults map each 64 MiB array afresh: ~16 thousand faults (4 KiB pages) or ~160 (2 MiB huge pages)
    assert default >= 100
    assert kept * 8 <= default  # the block is reused: nothing is faulted in again
