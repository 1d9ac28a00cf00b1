"""The heap a long run allocates from: glibc's malloc keeps freed memory in the process.

By default glibc maps each block above a threshold (128 KiB at first, raised as such blocks are freed, at most
32 MiB) fresh from the kernel, unmaps it when it is freed, and trims the heap's free top above twice that
threshold.  Whatever a loop allocates afresh at every step — the forward's cache, the gradients, an optimiser's
temporaries, torch's and XLA's workspaces — is then page-faulted in again, 4 KiB at a time, every time, or not,
depending on what the process freed before: ``train`` on The Tempest (the NumPy module, 10 epochs) took 400
thousand minor page faults and 10.1 s, and 36 thousand and 9.2 s with freed memory kept (the checkpoints
bit-identical); ``torch.nn.LSTM``'s fwd+bwd at 64x100x256 took 57 ms in one process and 76–100 ms in others.

``train`` and the benches keep freed memory for their own process (:func:`keep_for_run`); the library leaves a
caller's process as it is.  The user decides first: with ``MALLOC_MMAP_THRESHOLD_`` or ``MALLOC_TRIM_THRESHOLD_``
in the environment, glibc's own way to set the same, nothing is changed.  The cost: memory freed stays with the
process until it ends — its peak, which a training loop reaches at every batch anyway.  Elsewhere than glibc
(macOS, Windows, musl) nothing is changed.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: glibc's mallopt parameters (malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: Blocks below 1 GiB come from the heap; its free top is given back above 2 GiB (mallopt takes an int).
KEPT_MMAP, KEPT_TRIM = 1 << 30, (1 << 31) - 1
#: The environment variables by which the user sets glibc's thresholds: set, they are left alone.
THEIRS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def keep_freed_memory() -> str:
    """Raise glibc's mmap and trim thresholds for the rest of the process, for every library in it; returns what
    was done, in a line ("… no glibc …" where there is no glibc ``mallopt``; nothing is changed then)."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c"))
        mallopt, libc_version = libc.mallopt, libc.gnu_get_libc_version
    except (OSError, AttributeError, TypeError):  # no C library by that name (Windows), or not glibc's
        return "the platform's allocator (no glibc mallopt)"
    mallopt.argtypes, mallopt.restype = (ctypes.c_int, ctypes.c_int), ctypes.c_int
    libc_version.argtypes, libc_version.restype = (), ctypes.c_char_p
    version = libc_version().decode()
    if not (mallopt(M_MMAP_THRESHOLD, KEPT_MMAP) and mallopt(M_TRIM_THRESHOLD, KEPT_TRIM)):
        return f"glibc {version} malloc, its defaults (mallopt refused)"
    return f"glibc {version} malloc keeps freed memory (mmap threshold 1 GiB, trim threshold 2 GiB)"


def keep_for_run(keep: bool = True) -> str:
    """What a run's heap runs with, in a line: the environment's thresholds where the user set them, else freed
    memory kept (``keep``) or glibc's defaults."""
    env = {v: os.environ[v] for v in THEIRS if os.environ.get(v)}
    if env:
        return "malloc as the environment sets it (" + ", ".join(f"{k}={v}" for k, v in env.items()) + ")"
    return keep_freed_memory() if keep else "malloc's defaults"
