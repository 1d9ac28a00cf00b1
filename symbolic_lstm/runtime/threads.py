"""BLAS threads chosen for the work: one thread where the matrix products are small, the library's default where
they are large.

A step's recurrent product of a small batch (16 × 64 by 64 × 256, say) is over in microseconds: a second BLAS
thread saves nothing and, when its core is busy with another process, costs a lot — ``train -q`` took 439 s with
OpenBLAS's default threads on a loaded 2-core machine and 59 s with one.  The callers of the NumPy modules
(``train``, ``check``, the smoke run, the torch bridge) run inside :func:`blas_threads`, which limits BLAS through
``threadpoolctl`` (the ``[threads]`` extra; without it nothing changes) by the size of the work.

The user decides first: ``SYMBOLIC_LSTM_THREADS=N`` sets the limit everywhere; a thread count set for the BLAS
library itself (``OPENBLAS_NUM_THREADS``, ``OMP_NUM_THREADS``, ``MKL_NUM_THREADS``) is left alone.  A given
setting and shape always choose the same count, so a training run is bit-reproducible for it (OpenBLAS sums a
product in the same order for the same thread count and the same kernels).

Entering the limit is cheap (~12 µs): the libraries are looked up once per process, not per call (a fresh
``threadpool_limits`` walks every loaded library, ~0.4 ms — more than a small step's whole backward).
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator

#: Multiply-adds of one step's products (B · n_a · gates · (n_a + n_x)) below which one thread is used.  Measured
#: with ``bench/threads.py`` on an idle 2-core machine: equal at 0.5 M, one thread 12–28 % slower at 4–8 M, 1.5×
#: slower from 34 M; on a busy one, the default threads were 7× slower at 3 M (``train`` on The Tempest, batch
#: 32, n_a 128).  Up to 8 M, one thread risks a little to save a lot.
SMALL = 8_000_000
#: The most threads ``SYMBOLIC_LSTM_THREADS`` may ask for: more is a typo, and a huge count overflows the C int
#: the BLAS libraries take.
MOST = 4096
#: Environment variables by which the user sets the threads: ours first, then the BLAS libraries' own.
OURS = "SYMBOLIC_LSTM_THREADS"
THEIRS = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")


def threads_for(batch: int, n_x: int, n_a: int, gates: int = 4) -> int | None:
    """How many BLAS threads a step of this size gets: 1 for small work, None (the library's default) otherwise;
    the environment decides first (see the module docstring).

    Raises:
        ValueError: ``SYMBOLIC_LSTM_THREADS`` is set to something other than a whole number from 1 to :data:`MOST`.
    """
    ours = os.environ.get(OURS, "").strip()
    if ours:
        if not (ours.isascii() and ours.isdigit()) or not 1 <= int(ours) <= MOST:
            raise ValueError(
                f"{OURS} must be a whole number from 1 to {MOST} (the BLAS threads to use), got {ours[:40]!r}"
            )
        return int(ours)
    if any(os.environ.get(v, "").strip() for v in THEIRS):
        return None
    return 1 if batch * n_a * gates * (n_a + n_x) < SMALL else None


@contextlib.contextmanager
def blas_threads(batch: int, n_x: int, n_a: int, gates: int = 4) -> Iterator[int | None]:
    """Run the block with BLAS limited to :func:`threads_for` threads (nothing changes without threadpoolctl, or
    where the count is None); yields the limit applied."""
    limit = threads_for(batch, n_x, n_a, gates)
    controller = _controller() if limit is not None else None
    if controller is None:
        yield None
        return
    with controller.limit(limits=limit, user_api="blas"):
        yield limit


@functools.cache
def _controller():
    """threadpoolctl's view of the loaded libraries, built once (None without threadpoolctl).  NumPy's BLAS, the
    one the generated modules run on, is loaded before any module is."""
    try:
        import numpy  # noqa: F401  (its BLAS must be loaded before the libraries are looked up)
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    return ThreadpoolController()


def blas_kernels() -> list[dict]:
    """NumPy's BLAS as threadpoolctl sees it: one dict per library (``internal_api``, ``version``,
    ``architecture`` — the kernels it chose —, ``num_threads``); empty without threadpoolctl."""
    controller = _controller()
    if controller is None:
        return []
    return [dict(info) for info in controller.select(user_api="blas").info()]
