"""Benchmark: one BLAS thread against the library's default, for the generated NumPy LSTM at growing work.

    python bench/threads.py                 # the shapes below, float32
    python bench/threads.py --reps 9 --dtype float64

For each (B, n) (n = n_x = n_a, T = 50) it times forward + MSE loss + backward with BLAS limited to one thread
and with no limit, interleaved in one process (threadpoolctl), and prints the median ratio one/default next to
the work per step, B · n · 4 · 2n multiply-adds, and what ``symbolic_lstm.runtime.threads.threads_for`` chooses — the
threshold ``SMALL`` there comes from this table (below it, one thread is no slower).  Run it once on an idle
machine and once with another process busy (``yes > /dev/null &``): the second is where one thread wins most.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from timing import add_heap_option, header

from symbolic_lstm import load
from symbolic_lstm.runtime.threads import threads_for
from symbolic_lstm.train.heap import keep_for_run

SHAPES = [(1, 64), (16, 64), (32, 128), (64, 128), (16, 256), (64, 256), (128, 256), (128, 512)]


def main() -> None:
    from threadpoolctl import threadpool_info, threadpool_limits

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    add_heap_option(ap)
    args = ap.parse_args()
    heap = keep_for_run(args.heap == "keep")  # before anything is allocated
    k = load("lstm")
    blas = [(i["internal_api"], i["num_threads"]) for i in threadpool_info() if i["user_api"] == "blas"]
    print(*header(heap, ()), sep="\n")
    print(f"# BLAS (internal API, default threads): {blas} · {args.dtype}, T = 50 · {args.reps} repetitions")
    print(f"{'B':>4} {'n':>4} {'work/step':>10} {'1 thread ms':>12} {'default ms':>11} {'ratio':>6}  chosen")
    for B, n in SHAPES:
        rng = np.random.default_rng(0)
        p = {name: v.astype(args.dtype) for name, v in k.init_params(n, n).items()}
        x = rng.normal(size=(50, B, n)).astype(args.dtype)
        y = rng.normal(size=(50, B, n)).astype(args.dtype)

        def run(x: np.ndarray = x, p: dict = p, y: np.ndarray = y) -> None:
            out = k.forward(x, p)
            k.backward(k.mse_loss(out[0], y)[1], out[-1])

        times: dict[str, list[float]] = {"one": [], "default": []}
        run()
        for r in range(args.reps):
            for which in ("one", "default") if r % 2 == 0 else ("default", "one"):
                with threadpool_limits(limits=1 if which == "one" else None, user_api="blas"):
                    t0 = time.perf_counter()
                    run()
                    times[which].append(1e3 * (time.perf_counter() - t0))
        one, default = statistics.median(times["one"]), statistics.median(times["default"])
        chosen = threads_for(B, n, n)
        row = f"{B:>4} {n:>4} {B * n * 8 * n:>10.2e} {one:>12.2f} {default:>11.2f} {one / default:>6.2f}"
        print(f"{row}  {chosen or 'default'}")


if __name__ == "__main__":
    main()
