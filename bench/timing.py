"""Timing several libraries in one process: each implementation runs a block of repetitions in a row, then the
next, the order rotating from round to round.

Interleaving every repetition (A, B, C, A, B, C …) spreads a noisy machine's slow moments over everyone, but on
few cores it also lands one library's idle threads on the next one's time: OpenBLAS's and torch's OpenMP threads
spin for a while after each call, so torch's nn.LSTM timed 125 ms right after the NumPy module and 69 ms in a
block of its own (64x100x256, 2 cores), and the NumPy module 4.2 ms instead of 2.5 ms right after torch
(16x50x64).  Within a block each library sees only its own threads; rotating the blocks still spreads drift.

The heap is the other thing libraries share (``keep_freed_memory``): glibc gives large freed blocks back to the
kernel, so a library that allocates its workspace afresh on every call pays a page fault for every 4 KiB it
touches, or not, depending on what the process freed before.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import time
from collections.abc import Callable


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


#: glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
KEPT_MMAP, KEPT_TRIM = 1 << 30, (1 << 31) - 1  # mallopt takes an int


def keep_freed_memory() -> str:
    """Make glibc's malloc keep freed memory in the process for the rest of the run, for every library in it;
    returns what it set, for the bench's header ("default allocator" where there is no glibc).

    By default glibc maps each block above a threshold (128 KiB, raised as such blocks are freed, at most 32 MiB)
    fresh from the kernel, unmaps it when it is freed, and trims the heap's free top above twice the threshold:
    whatever is allocated anew each call — torch's and XLA's workspaces, NumPy's results — is then page-faulted
    in again, 4 KiB at a time, on each call. Whether that happens depends on what the process freed before, so
    the same library times differently from run to run: nn.LSTM's fwd+bwd at 64x100x256 took 57 ms in one run
    and 76–100 ms in others on the same idle 2-core machine (1.5 million minor faults in a short bench), our JAX
    module's backward 55 or 81 ms. With both thresholds raised (1 GiB mapped, 2 GiB trimmed) freed blocks are
    reused and every library is timed on its arithmetic. ``MALLOC_MMAP_THRESHOLD_`` / ``MALLOC_TRIM_THRESHOLD_``
    in the environment do the same for a whole program (jemalloc or tcmalloc preloaded, as PyTorch's CPU tuning
    guide suggests, avoid it too)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt, libc_version = libc.mallopt, libc.gnu_get_libc_version
    except (OSError, AttributeError):
        return "default allocator (no glibc mallopt)"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    libc_version.argtypes, libc_version.restype = (), ctypes.c_char_p
    version = libc_version().decode()
    if not (mallopt(_M_MMAP_THRESHOLD, KEPT_MMAP) and mallopt(_M_TRIM_THRESHOLD, KEPT_TRIM)):
        return f"glibc {version} malloc: mallopt refused, default allocator"
    return f"glibc {version} malloc keeps freed memory (mmap threshold 1 GiB, trim threshold 2 GiB)"


def heap_setting(keep: bool) -> str:
    """What the heap runs with: ``keep_freed_memory()`` when ``keep``, else the environment's allocator as set."""
    if keep:
        return keep_freed_memory()
    env = {v: os.environ[v] for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_") if os.environ.get(v)}
    return f"allocator as the environment sets it ({env or 'defaults'})"
