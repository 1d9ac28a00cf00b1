"""Benchmark: data-parallel training and the distributed proof on local Dask clusters, against one process.

    python bench/distributed.py                       # the character model at B=256, n_a=256, T=64; prove peephole
    python bench/distributed.py --workers 1 2 --steps 8 --prove-cell rnn
    python bench/distributed.py --no-proof            # training only (the proof takes minutes per row)

Training rows: one optimiser step of the LSTM character model of The Tempest (one-hot input, softmax head on
every step) — forward, loss, backward and the Adam update — in this process, then on a local cluster of N
worker processes (one thread each), every batch split into N shards.  Timed: the median step over --steps
steps after one warm-up step; sequences per second = B / step.  ``ratio`` = one process's step / this row's.

The overhead row times a step whose shards do no work (they return zero gradients of the right size): sending
the parameters out, scheduling N shard tasks and N − 1 sums, and bringing one gradient back — what each step
costs beyond its compute, measured on the 2-worker cluster.  Its parts are timed separately.

Proof rows: ``prove --cell C`` (both loss modes, n_a = n_x = 1 and 2, T = 3) with one local process
(``-j 1``), then its obligations as Dask tasks on N workers.  All rows of a table run in this one process.
"""

from __future__ import annotations

import argparse
import importlib.util
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
# this file is named like Dask's package: drop its folder from the path, or `import distributed` finds it
sys.path[:] = [str(ROOT)] + [p for p in sys.path if Path(p or ".").resolve() != HERE]

from symbolic_lstm import load  # noqa: E402
from symbolic_lstm import train as tr  # noqa: E402
from symbolic_lstm.distributed import DataParallel, connect  # noqa: E402
from symbolic_lstm.distributed.tasks import Idle  # noqa: E402
from symbolic_lstm.train.heap import keep_for_run  # noqa: E402

# bench/timing.py by its path: this folder is off sys.path (above)
_spec = importlib.util.spec_from_file_location("bench_timing", HERE / "timing.py")
timing = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(timing)


def timed(step, steps: int) -> float:
    step()  # warm-up: first-touch buffers, worker imports
    times = []
    for _ in range(steps):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def training(args: argparse.Namespace) -> None:
    k = load(args.cell)
    problem = tr.load_problem("tempest", args.T, 0.1)
    params = k.init_params(problem.vocab, args.n_a, seed=0)
    head = k.init_head(args.n_a, problem.vocab, seed=1)
    opt = tr.Optimizer("adam", 1e-3, 5.0)
    rng = np.random.default_rng(0)
    nbytes = sum(v.nbytes for v in (*params.values(), *head.values()))
    print(
        f"## training: {args.cell} character model, B = {args.B}, n_a = {args.n_a}, T = {args.T}, "
        f"vocab {problem.vocab}, float64; parameters {nbytes / 2**20:.2f} MiB (sent out and summed back per step)"
    )
    print()
    print("| run | step (ms) | sequences/s | ratio |")
    print("|---|---:|---:|---:|")

    def step_with(gradients):
        def step():
            _, g, gh = gradients(params, head, problem.starts(rng, args.B))
            tr.update(opt, params, head, g, gh)

        return step

    local = timed(step_with(lambda p, h, s: problem.gradients(k, p, h, s)), args.steps)
    print(f"| one process | {local * 1e3:.1f} | {args.B / local:.0f} | 1.00 |", flush=True)
    overhead = None
    for n in args.workers:
        with connect(workers=n) as client:
            dp = DataParallel(client, k)
            held = dp.load(tr.load_problem, "tempest", args.T, 0.1)
            t = timed(step_with(dp.select(held)), args.steps)
            print(
                f"| {n} Dask worker{'s' if n > 1 else ''} | {t * 1e3:.1f} | {args.B / t:.0f} | {local / t:.2f} |",
                flush=True,
            )
            if n == max(args.workers):
                overhead = idle_step(dp, held, params, head, args.steps), n
    if overhead is not None:
        (total, out, back), n = overhead
        print()
        print(
            f"Overhead per step on {n} workers (shards doing no work): {total * 1e3:.1f} ms in all — parameters "
            f"out to a worker {out * 1e3:.1f} ms; {n} shard tasks, {n - 1} sum(s) and the gradient back "
            f"{back * 1e3:.1f} ms."
        )


def idle_step(dp: DataParallel, held: list, params: dict, head: dict, steps: int) -> tuple[float, float, float]:
    """(a whole step without work, sending the parameters out, the rest), median seconds."""
    total = timed(lambda: dp.step(params, head, [(h, Idle()) for h in held]), steps)

    def out():
        dp._held((params, head), 0).result()

    sent = timed(out, steps)
    return total, sent, max(total - sent, 0.0)


def proving(args: argparse.Namespace) -> None:
    from symbolic_lstm.engine.cells import get_cell
    from symbolic_lstm.proof.obligations import prove_all

    cell = get_cell(args.prove_cell)
    sizes = [(1, 1), (2, 2)]
    print(f"## prove --unrolled --cell {args.prove_cell} (n_a = n_x = 1 and 2, T = 3, both loss modes)")
    print()
    print("| run | wall (s) | ratio |")
    print("|---|---:|---:|")

    def run(**kw) -> float:
        t = time.perf_counter()
        lines = list(prove_all(cell, sizes, 3, **kw))
        assert all(ln.ok for ln in lines)
        return time.perf_counter() - t

    one = run(workers=1)
    print(f"| one process (-j 1) | {one:.1f} | 1.00 |", flush=True)
    for n in args.workers:
        with connect(workers=n) as client:
            t = run(client=client)
        print(f"| {n} Dask worker{'s' if n > 1 else ''} | {t:.1f} | {one / t:.2f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--B", type=int, default=256)
    ap.add_argument("--n-a", dest="n_a", type=int, default=256)
    ap.add_argument("--T", type=int, default=64)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=10, help="timed steps per row (median)")
    ap.add_argument("--prove-cell", default="peephole")
    ap.add_argument("--no-proof", action="store_true")
    timing.add_heap_option(ap)
    args = ap.parse_args()

    heap = keep_for_run(args.heap == "keep")  # this process only: Dask sets its workers' (MALLOC_TRIM_THRESHOLD_)
    print(*timing.header(heap, ("dask", "distributed")), sep="\n")
    print()
    training(args)
    if not args.no_proof:
        print()
        proving(args)


if __name__ == "__main__":
    main()
