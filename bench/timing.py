"""Timing several libraries side by side: each implementation runs a block of repetitions in a row, then the
next, the order rotating from round to round — in one process (:func:`in_blocks`), or each implementation in
fresh processes of its own (:func:`in_processes`).

Interleaving every repetition (A, B, C, A, B, C …) spreads a noisy machine's slow moments over everyone, but on
few cores it also lands one library's idle threads on the next one's time: OpenBLAS's and torch's OpenMP threads
spin for a while after each call, so torch's nn.LSTM timed 125 ms right after the NumPy module and 69 ms in a
block of its own (64x100x256, 2 cores), and the NumPy module 4.2 ms instead of 2.5 ms right after torch
(16x50x64).  Within a block each library sees only its own threads; rotating the blocks still spreads drift.

The heap is the other thing libraries share: glibc gives large freed blocks back to the kernel, so a library that
allocates its workspace afresh on every call pays a page fault for every 4 KiB it touches, or not, depending on
what the process freed before; the benches keep freed memory for the run (``symbolic_lstm.train.heap``).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import os
import platform
import time
from collections.abc import Callable, Hashable, Iterable
from pathlib import Path
from typing import TypeVar

from symbolic_lstm.runtime import threads
from symbolic_lstm.train import heap

K = TypeVar("K", bound=Hashable)


def schedule(names: list[K], reps: int, block: int) -> list[tuple[K, int]]:
    """The blocks of a timed run, in order: (implementation, calls in a row); ``reps`` calls each, ``block`` in a
    row per round, the order rotating by one from round to round."""
    _check_counts(reps, block, 0)
    out = []
    for r in range(-(-reps // block)):
        out += [(name, min(block, reps - r * block)) for name in names[r % len(names) :] + names[: r % len(names)]]
    return out


def _check_counts(reps: int, block: int, warmup: int) -> None:
    if reps < 1 or block < 1 or warmup < 0:
        raise ValueError(f"reps and block must be positive and warmup not negative, got {reps}, {block}, {warmup}")


def _timed(run: Callable[[], object], calls: int) -> list[float]:
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        run()
        out.append(time.perf_counter() - t0)
    return out


def in_blocks(
    runs: dict[str, Callable[[], object]],
    reps: int,
    block: int = 5,
    warmup: int = 2,
    settings: Callable[[str], contextlib.AbstractContextManager] | None = None,
) -> dict[str, list[float]]:
    """Seconds of ``reps`` calls of every run, ``block`` calls in a row per implementation and round
    (:func:`schedule`), after ``warmup`` untimed calls each (compile, allocate); ``settings(name)`` is entered
    around each block (the threads an implementation runs with, say).  All in this process."""
    _check_counts(reps, block, warmup)
    enter = settings or (lambda name: contextlib.nullcontext())
    for name in runs:
        with enter(name):
            _timed(runs[name], warmup)
    times: dict[str, list[float]] = {name: [] for name in runs}
    for name, calls in schedule(list(runs), reps, block):
        with enter(name):
            times[name] += _timed(runs[name], calls)
    return times


def in_processes(
    makers: dict[str, Callable[[], Callable[[], object]]],
    reps: int,
    block: int = 5,
    warmup: int = 2,
    settings: Callable[[str], contextlib.AbstractContextManager] | None = None,
    processes: int = 1,
    prepare: Callable[[], object] | None = None,
) -> dict[str, list[list[float]]]:
    """:func:`in_blocks` with every implementation in ``processes`` fresh processes of its own, each timing
    ``reps`` calls: {name: [seconds of each call, one list per process]}.

    A library's speed can be a property of the process it runs in, not only of the call: on 2 cores nn.LSTM's two
    OpenMP threads ran some processes at 1.0 ms a call and others at 1.5–1.7 ms (16x50x64), whatever else the
    process held, so one process's median is one draw.  Each process is a fresh interpreter (``spawn``: nothing of
    this one's libraries is inherited); it runs ``prepare()`` (keep freed memory, say), builds its ``run`` from its
    maker, warms it up, and then times the blocks it is told to — every (implementation, process) pair one entry
    of the same rotating :func:`schedule` — so only the calls are timed, never the messages.  ``makers``,
    ``settings`` and ``prepare`` travel by pickle: module-level functions, or ``functools.partial`` of them.

    Raises:
        RuntimeError: an implementation failed in its process (named, with its error's last line).
    """
    import multiprocessing

    _check_counts(reps, block, warmup)
    if processes < 1:
        raise ValueError(f"processes must be positive, got {processes}")
    ctx = multiprocessing.get_context("spawn")
    slots = [(name, i) for name in makers for i in range(processes)]
    pipes, procs = {}, []
    try:
        for name, i in slots:
            here, there = ctx.Pipe()
            args = (there, name, makers[name], warmup, settings, prepare)
            proc = ctx.Process(target=_serve, args=args, daemon=True)
            proc.start()
            there.close()
            pipes[name, i] = here
            procs.append(proc)
        for slot in slots:  # each built and warmed up in its own process
            _answer(pipes[slot], slot[0])
        times: dict[tuple[str, int], list[float]] = {slot: [] for slot in slots}
        for slot, calls in schedule(slots, reps, block):
            pipes[slot].send(calls)
            times[slot] += _answer(pipes[slot], slot[0])
        return {name: [times[name, i] for i in range(processes)] for name in makers}
    finally:
        for pipe in pipes.values():
            with contextlib.suppress(OSError):
                pipe.send(None)
            pipe.close()
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()


def _answer(pipe, name: str) -> list[float]:
    try:
        kind, value = pipe.recv()
    except EOFError:
        raise RuntimeError(f"{name}: its process ended without an answer (killed, or out of memory?)") from None
    if kind == "error":
        raise RuntimeError(f"{name} failed in its process: {value}")
    return value


def _serve(pipe, name: str, maker, warmup: int, settings, prepare) -> None:
    """A timing process: build the run, warm it up, then time blocks of calls until told to stop (None)."""
    import traceback

    try:
        if prepare is not None:
            prepare()
        enter = settings or (lambda name: contextlib.nullcontext())
        run = maker()
        with enter(name):
            _timed(run, warmup)
        pipe.send(("ready", []))
        while (calls := pipe.recv()) is not None:
            with enter(name):
                pipe.send(("times", _timed(run, calls)))
    except (EOFError, KeyboardInterrupt):  # the parent is gone, or Ctrl-C reached the whole group
        pass
    except Exception as e:  # reported to the parent, which names the implementation
        last = traceback.format_exception_only(type(e), e)[-1].strip()
        with contextlib.suppress(OSError):
            pipe.send(("error", last))


def add_heap_option(ap: argparse.ArgumentParser) -> None:
    """``--heap keep|default``, as every bench that puts libraries side by side takes it; the bench passes
    ``args.heap == "keep"`` to ``symbolic_lstm.train.heap.keep_for_run`` before it allocates anything."""
    ap.add_argument(
        "--heap",
        default="keep",
        choices=["keep", "default"],
        help="keep (default): glibc keeps freed memory, so no library pays page faults for workspace it allocates "
        "afresh each call; default: glibc's defaults (MALLOC_*_THRESHOLD_ in the environment win over both)",
    )


#: The environment variables that change what a bench measures: the threads (ours, then the BLAS libraries' own,
#: as ``symbolic_lstm.runtime.threads`` reads them), the BLAS's kernels, glibc's heap
#: (as ``symbolic_lstm.train.heap`` reads them) and XLA's flags.
SETTINGS = (threads.OURS, *threads.THEIRS, "OPENBLAS_CORETYPE", *heap.THEIRS, "XLA_FLAGS")


def header(heap: str | None, libraries: Iterable[str] = ("jax", "torch")) -> list[str]:
    """The lines every bench prints first, "# "-prefixed: when (UTC), the CPU, its count and load, Python, NumPy
    with the BLAS kernels it chose, the versions of ``libraries`` ("absent" when not installed), the environment
    variables that change the numbers (:data:`SETTINGS`) and what the heap runs with (``heap``, the line
    ``symbolic_lstm.train.heap.keep_for_run`` returned; None for a bench that leaves it alone).  What a reader needs to
    weigh a run against another; each bench adds its own lines (threads, repetitions, baseline) after these."""
    import numpy as np

    cpu = next((ln.split(":", 1)[1].strip() for ln in _cpuinfo() if ln.startswith("model name")), "")
    load = "/".join(f"{v:.2f}" for v in os.getloadavg()) if hasattr(os, "getloadavg") else "?"
    named = [filter(None, (b["internal_api"], b["version"], b.get("architecture"))) for b in threads.blas_kernels()]
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
