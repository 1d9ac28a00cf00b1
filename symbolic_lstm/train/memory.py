"""How much memory a training run asks at once, estimated before anything is allocated, and how much the
machine can give — so a run that cannot fit is refused up front, naming the number, instead of dying with a
MemoryError (or being killed) minutes in.

The estimate counts the arrays one step of work holds at its peak: a batch's forward cache and its backward
(or the held-out evaluation's forward over the whole held-out part at once, whichever is larger), measured
with ``tracemalloc`` on the built-in cells: about ``2·W + S + 2`` arrays of n_a floats per sequence step
(W weights, S states) and three of the input's width; ``2·W + S + 3`` is used, to stay on the safe side.
"""

from __future__ import annotations

import os
from types import ModuleType

#: Bytes of a float64.
FLOAT = 8


def run_bytes(k: ModuleType, hidden: int, window: int, batch: int, problem: object) -> tuple[int, str]:
    """(bytes, what asks for them) at the peak of a run of module ``k`` on ``problem``."""
    from .problems import TextProblem

    n_x = problem.n_inputs  # type: ignore[attr-defined]
    weights, states = len(getattr(k, "WEIGHTS", ())) or 4, len(getattr(k, "STATES", ())) or 1
    per_step = FLOAT * (hidden * (2 * weights + states + 3) + 3 * n_x)
    if isinstance(problem, TextProblem):
        train_steps = window * batch
        held_steps = ((len(problem.test_ids) - 1) // window) * window
    else:
        train_steps = window * min(batch, problem.n_train)  # type: ignore[attr-defined]
        held_steps = window * problem.n_test  # type: ignore[attr-defined]
    params = FLOAT * 4 * weights * hidden * (hidden + n_x + 1)  # weights, gradients, Adam's two moments
    if held_steps > train_steps:
        return params + held_steps * per_step, f"the held-out evaluation ({held_steps} sequence steps at once)"
    return params + train_steps * per_step, f"a batch ({batch} sequences of {window} steps)"


def available_bytes() -> int | None:
    """Memory this process can still have: the least of the machine's available memory and what its control
    group allows beyond what it uses (None where neither can be read)."""
    found = []
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    found.append(int(line.split()[1]) * 1024)
    except (OSError, ValueError, IndexError):
        pass
    try:
        with open("/sys/fs/cgroup/memory.max", encoding="ascii") as f:
            limit = f.read().strip()
        with open("/sys/fs/cgroup/memory.current", encoding="ascii") as f:
            used = int(f.read().strip())
        used -= _reclaimable()  # the group's page cache counts as used, yet is given back on demand
        if limit != "max":
            found.append(max(0, int(limit) - max(0, used)))
    except (OSError, ValueError):
        pass
    if not found and hasattr(os, "sysconf"):
        try:
            found.append(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
        except (ValueError, OSError):
            pass
    return min(found) if found else None


def _reclaimable() -> int:
    """Bytes of the control group's page cache the kernel drops before refusing memory (``inactive_file``)."""
    try:
        with open("/sys/fs/cgroup/memory.stat", encoding="ascii") as f:
            for line in f:
                if line.startswith("inactive_file "):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def gib(n: int) -> str:
    """``n`` bytes in GiB, as a person says it."""
    return f"{n / 2**30:.1f} GiB" if n >= 2**29 else f"{n / 2**20:.0f} MiB"
