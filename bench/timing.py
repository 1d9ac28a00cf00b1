"""Timing several libraries in one process: each implementation runs a block of repetitions in a row, then the
next, the order rotating from round to round.

Interleaving every repetition (A, B, C, A, B, C …) spreads a noisy machine's slow moments over everyone, but on
few cores it also lands one library's idle threads on the next one's time: OpenBLAS's and torch's OpenMP threads
spin for a while after each call, so torch's nn.LSTM timed 125 ms right after the NumPy module and 69 ms in a
block of its own (64x100x256, 2 cores), and the NumPy module 4.2 ms instead of 2.5 ms right after torch
(16x50x64).  Within a block each library sees only its own threads; rotating the blocks still spreads drift.

The heap is the other thing libraries share: glibc gives large freed blocks back to the kernel, so a library that
allocates its workspace afresh on every call pays a page fault for every 4 KiB it touches, or not, depending on
what the process freed before; the benches keep freed memory for the run (``symbolic_lstm.heap``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import time
from collections.abc import Callable, Iterable
from pathlib import Path


def in_blocks(
    runs: dict[str, Callable[[], object]],
    reps: int,
    block: int = 5,
    warmup: int = 2,
    settings: Callable[[str], contextlib.AbstractContextManager] | None = None,
) -> dict[str, list[float]]:
    """Seconds of ``reps`` calls of every run, ``block`` calls in a row per implementation and round, after
    ``warmup`` untimed calls each (compile, allocate); ``settings(name)`` is entered around each block (the
    threads an implementation runs with, say)."""
    if reps < 1 or block < 1 or warmup < 0:
        raise ValueError(f"reps and block must be positive and warmup not negative, got {reps}, {block}, {warmup}")
    enter = settings or (lambda name: contextlib.nullcontext())
    names = list(runs)
    for name in names:
        with enter(name):
            for _ in range(warmup):
                runs[name]()
    times: dict[str, list[float]] = {name: [] for name in names}
    for r in range(-(-reps // block)):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            with enter(name):
                for _ in range(min(block, reps - r * block)):
                    t0 = time.perf_counter()
                    runs[name]()
                    times[name].append(time.perf_counter() - t0)
    return times


def add_heap_option(ap: argparse.ArgumentParser) -> None:
    """``--heap keep|default``, as every bench that puts libraries side by side takes it; the bench passes
    ``args.heap == "keep"`` to ``symbolic_lstm.heap.keep_for_run`` before it allocates anything."""
    ap.add_argument(
        "--heap",
        default="keep",
        choices=["keep", "default"],
        help="keep (default): glibc keeps freed memory, so no library pays page faults for workspace it allocates "
        "afresh each call; default: glibc's defaults (MALLOC_*_THRESHOLD_ in the environment win over both)",
    )


#: The environment variables that change what a bench measures: the BLAS's threads and kernels, ours, glibc's heap.
SETTINGS = (
    "SYMBOLIC_LSTM_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE",
    "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "XLA_FLAGS",
)  # fmt: skip


def header(heap: str | None, libraries: Iterable[str] = ("jax", "torch")) -> list[str]:
    """The lines every bench prints first, "# "-prefixed: when (UTC), the CPU, its count and load, Python, NumPy
    with the BLAS kernels it chose, the versions of ``libraries`` ("absent" when not installed), the environment
    variables that change the numbers (:data:`SETTINGS`) and what the heap runs with (``heap``, the line
    ``symbolic_lstm.heap.keep_for_run`` returned; None for a bench that leaves it alone).  What a reader needs to
    weigh a run against another; each bench adds its own lines (threads, repetitions, baseline) after these."""
    import numpy as np

    from symbolic_lstm.threads import blas_kernels

    cpu = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")), "")
    load = "/".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    named = [filter(None, (b["internal_api"], b["version"], b.get("architecture"))) for b in blas_kernels()]
    blas = ", ".join(" ".join(parts) + " kernels" for parts in named)
    versions = " · ".join(f"{name} {_version(name)}" for name in libraries)
    env = ", ".join(f"{v}={os.environ[v]}" for v in SETTINGS if os.environ.get(v))
    cpus = f"{os.cpu_count()} CPUs"
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cpus += f" ({usable} usable here)" if usable != os.cpu_count() else ""
    lines = [
        f"# {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())} · {cpu or platform.machine()}, {cpus}"
        f" · load {load} (1/5/15 min)",
        f"# Python {platform.python_version()} · numpy {np.__version__} ({blas or 'BLAS unknown'})"
        + (f" · {versions}" if versions else ""),
        f"# set: {env or 'nothing'}",
    ]
    return lines + ([f"# heap: {heap}"] if heap is not None else [])


def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def _cpuinfo() -> list[str]:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace").splitlines()
    except OSError:
        return []
