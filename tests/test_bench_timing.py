"""bench/timing.py: the benches that put libraries side by side time each in blocks of calls in a row, the order
rotating by round, so no library's spinning threads land on another's clock."""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import subprocess
import sys
from itertools import groupby
from pathlib import Path

import pytest

# bench/ is scripts, not a package: its folder goes last on the path, so its names (timing, threads, run) shadow
# nothing, and a timing process started by spawn imports `timing` (and this module's makers) by name as this one does
TIMING = Path(__file__).resolve().parent.parent / "bench" / "timing.py"
if str(TIMING.parent) not in sys.path:
    sys.path.append(str(TIMING.parent))
_timing = importlib.import_module("timing")
assert Path(_timing.__file__).resolve() == TIMING, _timing.__file__
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


# -- every implementation in fresh processes of its own -------------------------------------------------------------
def _pid_writer(folder: str, name: str):
    """A maker (module-level: it is pickled to the timing process): notes the process it is built in."""
    with open(Path(folder, name), "a") as f:
        f.write(f"{os.getpid()}\n")
    return lambda: None


def _failing_maker():
    raise ValueError("no such weights")


def _prepared_maker():
    if os.environ.get("PREPARED_HERE") != "yes":
        raise AssertionError("prepare() did not run first")
    return lambda: None


def _prepare():
    os.environ["PREPARED_HERE"] = "yes"


def test_in_processes_times_each_implementation_in_fresh_processes_of_its_own(tmp_path):
    import functools

    makers = {name: functools.partial(_pid_writer, str(tmp_path), name) for name in "ab"}
    times = _timing.in_processes(makers, reps=7, block=3, warmup=1, processes=2)
    assert {n: [len(t) for t in per_process] for n, per_process in times.items()} == {"a": [7, 7], "b": [7, 7]}
    assert all(t >= 0 for per_process in times.values() for ts in per_process for t in ts)
    pids = [pid for n in "ab" for pid in (tmp_path / n).read_text().split()]
    assert len(pids) == len(set(pids)) == 4 and str(os.getpid()) not in pids


def test_in_processes_names_an_implementation_that_fails_and_runs_prepare_first():
    with pytest.raises(RuntimeError, match=r"broken failed in its process: ValueError: no such weights"):
        _timing.in_processes({"fine": _prepared_maker, "broken": _failing_maker}, reps=2, block=1, prepare=_prepare)
    times = _timing.in_processes({"fine": _prepared_maker}, reps=2, block=1, prepare=_prepare)
    assert [len(t) for t in times["fine"]] == [2]
    with pytest.raises(ValueError, match="processes must be positive"):
        _timing.in_processes({"fine": _prepared_maker}, reps=2, processes=0)


def test_schedule_rotates_any_keys():
    assert _timing.schedule([("a", 0), ("a", 1), ("b", 0)], reps=2, block=2) == [
        (("a", 0), 2), (("a", 1), 2), (("b", 0), 2),
    ]  # fmt: skip
    assert _timing.schedule(list("abc"), reps=4, block=3) == [
        ("a", 3),
        ("b", 3),
        ("c", 3),
        ("b", 1),
        ("c", 1),
        ("a", 1),
    ]


def test_peers_times_an_implementation_in_several_processes():
    """bench/peers.py --processes: each implementation in fresh processes, the median over all their calls and
    the range of the processes' own medians in the JSON line."""
    done = subprocess.run(
        [sys.executable, str(TIMING.parent / "peers.py"), "--cells", "lstm", "--shapes", "16x50x64",
         "--impls", "numpy", "--reps", "3", "--block", "2", "--processes", "2"],
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "each implementation in 2 fresh process(es) of its own" in done.stdout
    row = json.loads(done.stdout.strip().splitlines()[-1])
    assert row["processes"] == 2 and row["cell"] == "lstm" and row["shape"] == "16x50x64"
    lo, hi = row["numpy"]["process_medians_ms"]
    assert 0 < row["numpy"]["min_ms"] <= lo <= hi
    assert lo <= row["numpy"]["median_ms"] <= hi
