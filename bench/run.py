"""Benchmark: the generated NumPy LSTM against PyTorch, a naive per-step NumPy LSTM and the GEMM bound.

    python bench/run.py                      # every shape, float32 and float64
    python bench/run.py --shapes headline --dtypes float32 --reps 9

In one process, on the same inputs and weights, forward + MSE loss + backward of every implementation is
timed in blocks (``bench/timing.py``: five repetitions in a row, then the next implementation, the order
rotating), so that a noisy machine slows them alike and no library's spinning threads land on another's
time; the table reports min and median.  glibc's malloc keeps freed memory for the run (``--heap keep``, the
default; see ``symbolic_lstm/train/heap.py``), so no library's time depends on whether its workspace is
page-faulted in afresh.  Ratios use medians:

* ``ratio_vs_torch`` = generated / torch.nn.LSTM (below 1: we are faster);
* ``fraction_of_gemm_bound`` = GEMM bound / generated (1.0 would be matrix products only);
* ``speedup_vs_naive`` = naive / generated;
* ``layer_overhead`` = torch-layer / generated: ``symbolic_lstm.torch.RecurrentLayer`` (the same kernels inside
  torch's autograd, CPU tensors shared with NumPy) against calling the NumPy module directly.  On few cores its
  median also measures torch's and OpenBLAS's thread pools competing (torch.set_num_threads(1) removes that).

Memory: the forward cache's nbytes, and the peak of forward + backward traced by ``tracemalloc``, both
against what backward must read: [a<t-1>, x<t>], the four gate activations, c<t> and tanh(c<t>) per step,
(n_x + 7·n_a)·T·B numbers.  One JSON line per shape and dtype follows the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import naive  # noqa: E402
from gemm_bound import GemmBound  # noqa: E402
from timing import add_heap_option, in_blocks  # noqa: E402
from timing import header as machine_header  # noqa: E402

from symbolic_lstm import load  # noqa: E402
from symbolic_lstm.train.heap import keep_for_run  # noqa: E402

try:
    import torch
except ImportError:  # the torch rows are skipped with a message
    torch = None

SHAPES = {  # name: (B, T, n_x, n_a)
    "headline": (64, 100, 256, 256),
    "latency": (1, 1000, 128, 128),
    "throughput": (256, 32, 512, 512),
    "small": (16, 50, 64, 64),
}


def problem(B, T, n_x, n_a, dtype, seed=0):
    rng = np.random.default_rng(seed)
    k = load("lstm")
    p = k.init_params(n_x, n_a, seed=seed, dtype=dtype)
    x = rng.standard_normal((T, B, n_x)).astype(dtype)
    y = (0.5 * rng.standard_normal((T, B, n_a))).astype(dtype)
    return k, p, x, y


def generated_impl(k, p, x, y):
    def run():
        a, _, cache = k.forward(x, p)
        _, da = k.mse_loss(a, y)
        return k.backward(da, cache)

    return run


def naive_impl(p, x, y):
    B, n_a = x.shape[1], p["b_f"].shape[0]
    zeros = np.zeros((B, n_a), x.dtype)

    def run():
        a, caches = naive.forward(x, p, zeros, zeros)
        return naive.backward(a - y, caches, p)

    return run


def torch_impl(p, x, y):
    n_a = p["b_f"].shape[0]
    dt = torch.float32 if x.dtype == np.float32 else torch.float64
    lstm = torch.nn.LSTM(x.shape[2], n_a, dtype=dt)
    order = "ufco"  # torch: i, f, g, o
    W = np.concatenate([p[f"W_{g}"] for g in order])
    with torch.no_grad():
        lstm.weight_hh_l0.copy_(torch.from_numpy(W[:, :n_a]))
        lstm.weight_ih_l0.copy_(torch.from_numpy(W[:, n_a:]))
        lstm.bias_ih_l0.copy_(torch.from_numpy(np.concatenate([p[f"b_{g}"] for g in order])))
        lstm.bias_hh_l0.zero_()
    xt, yt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(y)

    def run():
        for q in (*lstm.parameters(), xt):
            q.grad = None
        out, _ = lstm(xt)
        (0.5 * ((out - yt) ** 2).sum()).backward()
        return lstm, xt

    return run


def layer_impl(p, x, y):
    """symbolic_lstm.torch.RecurrentLayer: the generated kernels inside torch's autograd (CPU: the NumPy module on
    shared memory), with the same loss and a backward through torch; its distance from ``generated`` is the
    wrapper's overhead."""
    from symbolic_lstm.bridges.torch import RecurrentLayer

    dt = torch.float32 if x.dtype == np.float32 else torch.float64
    layer = RecurrentLayer("lstm", x.shape[2], p["b_f"].shape[0], dtype=dt)
    layer.load_params(p)
    xt, yt = torch.from_numpy(x).requires_grad_(True), torch.from_numpy(y)

    def run():
        for q in (*layer.parameters(), xt):
            q.grad = None
        out, _ = layer(xt)
        (0.5 * ((out - yt) ** 2).sum()).backward()
        return layer, xt

    return run


def check_agreement(gen, nai, tor, dtype):
    """The three implementations compute the same gradients (so the timings compare like with like)."""
    g, n = gen(), nai()
    tol = 1e-3 if dtype == np.float32 else 1e-9
    for key in ("W_f", "b_o", "x"):
        scale = float(np.max(np.abs(g[key]))) or 1.0
        err = float(np.max(np.abs(g[key] - n[key]))) / scale
        if err > tol:
            raise AssertionError(f"naive and generated disagree on {key}: {err:.2e}")
    if tor is not None:
        _, xt = tor()
        err = float(np.max(np.abs(xt.grad.numpy() - g["x"]))) / (float(np.max(np.abs(g["x"]))) or 1.0)
        if err > tol:
            raise AssertionError(f"torch and generated disagree on x: {err:.2e}")


def memory(k, p, x, y):
    T, B, n_x = x.shape
    n_a = p["b_f"].shape[0]
    a, _, cache = k.forward(x, p)
    cache_bytes = sum(v.nbytes for name, v in cache.items() if not name.startswith("W"))  # the weights' copies aside
    del a, cache
    must_read = (n_x + 7 * n_a) * T * B * x.dtype.itemsize
    k.release_buffers()  # no buffer kept from an earlier call: the peak counts every array this call needs
    tracemalloc.start()
    tracemalloc.reset_peak()
    base = tracemalloc.get_traced_memory()[0]
    a, _, cache = k.forward(x, p)
    _, da = k.mse_loss(a, y)
    k.backward(da, cache)
    peak = tracemalloc.get_traced_memory()[1] - base
    tracemalloc.stop()
    return cache_bytes, peak, must_read


def cold_start():
    """Seconds for `symbolic-lstm generate` and `derive` in a new process each."""
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, args in (("generate", ["generate", "--out", tmp]), ("derive", ["derive"])):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "symbolic_lstm", *args], check=True, capture_output=True)
            out[name] = time.perf_counter() - t0
    return out


def ms(v):
    return f"{1e3 * v:9.2f}"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--shapes", default=",".join(SHAPES), help=f"comma-separated, from {', '.join(SHAPES)}")
    ap.add_argument("--dtypes", default="float32,float64")
    ap.add_argument("--reps", type=int, default=None, help="repetitions per implementation (default: by size)")
    ap.add_argument("--no-naive", action="store_true", help="skip the naive baseline (slow at long T)")
    ap.add_argument("--no-array-api", action="store_true", help="skip the array-API backend's row")
    add_heap_option(ap)
    args = ap.parse_args(argv)
    shapes = [s.strip() for s in args.shapes.split(",") if s.strip()]
    for s in shapes:
        if s not in SHAPES:
            ap.error(f"unknown shape {s!r}; choose from {', '.join(SHAPES)}")
    dtypes = [np.dtype(d.strip()) for d in args.dtypes.split(",")]
    heap = keep_for_run(args.heap == "keep")  # before anything is allocated

    print(*machine_header(heap, ("torch",)), sep="\n")
    if torch is not None:
        print(f"# torch: {torch.get_num_threads()} threads")
    else:
        print("# torch not installed: its rows are skipped (pip install torch, or the 'bench' extra)")
    cs = cold_start()
    print(f"# cold start (new process): generate {cs['generate']:.2f} s, derive {cs['derive']:.2f} s")
    header = (
        f"{'shape':<11}{'dtype':<8}{'impl':<12}{'min ms':>9}{'median ms':>10}"
        f"{'vs torch':>9}{'of bound':>9}{'vs naive':>9}"
    )
    print(header)
    print("-" * len(header))
    records = []
    for shape in shapes:
        B, T, n_x, n_a = SHAPES[shape]
        for dtype in dtypes:
            k, p, x, y = problem(B, T, n_x, n_a, dtype)
            impls = {
                "generated": generated_impl(k, p, x, y),
                "bound": GemmBound(T, B, n_x, n_a, dtype, np.random.default_rng(1)),
            }
            if torch is not None:
                impls["torch"] = torch_impl(p, x, y)
                impls["torch-layer"] = layer_impl(p, x, y)
            if not args.no_array_api and importlib.util.find_spec("array_api_compat") is not None:
                # the portable module (generate --backend array-api) on the same NumPy arrays
                impls["array-api"] = generated_impl(load("lstm_array_api"), p, x, y)
            if not args.no_naive:
                impls["naive"] = naive_impl(p, x, y)
                check_agreement(impls["generated"], impls["naive"], impls.get("torch"), dtype)
            flops = 2 * 4 * n_a * B * T * (n_x + n_a) * 3
            reps = args.reps or int(min(15, max(10, 2e10 / flops)))
            times = in_blocks(impls, reps, block=min(reps, 5), warmup=1)
            med = {n: statistics.median(v) for n, v in times.items()}
            cache_bytes, peak, must_read = memory(k, p, x, y)
            rec = {
                "shape": shape,
                "B": B,
                "T": T,
                "n_x": n_x,
                "n_a": n_a,
                "dtype": str(dtype),
                "reps": reps,
                "median_ms": {n: round(1e3 * v, 3) for n, v in med.items()},
                "min_ms": {n: round(1e3 * min(v), 3) for n, v in times.items()},
                "ratio_vs_torch": round(med["generated"] / med["torch"], 3) if "torch" in med else None,
                "layer_overhead": round(med["torch-layer"] / med["generated"], 3) if "torch-layer" in med else None,
                "layer_vs_torch": round(med["torch-layer"] / med["torch"], 3) if "torch-layer" in med else None,
                "fraction_of_gemm_bound": round(med["bound"] / med["generated"], 3),
                "speedup_vs_naive": round(med["naive"] / med["generated"], 2) if "naive" in med else None,
                "array_api_over_generated": (
                    round(med["array-api"] / med["generated"], 2) if "array-api" in med else None
                ),
                "cache_bytes": cache_bytes,
                "backward_must_read_bytes": must_read,
                "peak_fwd_bwd_bytes": peak,
                "peak_over_must_read": round(peak / must_read, 3),
            }
            records.append(rec)
            for name in impls:
                vs_t = f"{med[name] / med['torch']:9.2f}" if "torch" in med else f"{'-':>9}"
                of_b = f"{med['bound'] / med[name]:9.2f}"
                vs_n = f"{med['naive'] / med[name]:9.2f}" if "naive" in med else f"{'-':>9}"
                print(f"{shape:<11}{dtype!s:<8}{name:<12}{ms(min(times[name]))}{ms(med[name]):>10}{vs_t}{of_b}{vs_n}")
            print(
                f"{'':<19}memory: cache {cache_bytes / 2**20:.1f} MiB, fwd+bwd peak {peak / 2**20:.1f} MiB, "
                f"backward must read {must_read / 2**20:.1f} MiB (peak/must-read {peak / must_read:.2f})"
            )
    print()
    for rec in records:
        print(json.dumps(rec))


if __name__ == "__main__":
    main()
