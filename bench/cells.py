"""Benchmark: every built-in cell's generated NumPy module against the same cell's module at another revision.

    python bench/cells.py                         # against HEAD's committed generated/ modules
    python bench/cells.py --baseline d497311      # against any git revision
    python bench/cells.py --cells lstm gru --shapes small --reps 9

For each cell and shape, in one process, on the same inputs and weights, every repetition times forward +
MSE loss + backward of the current module and the baseline module, interleaved (the order alternates), so a
noisy machine slows both alike.  The table reports min and median per module and ``ratio`` = current /
baseline median (below 1: faster now).  A cell that the baseline does not have is timed alone.  One JSON
line per cell and shape follows the table.
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
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(HERE))

from timing import add_heap_option, header  # noqa: E402

from symbolic_lstm import load  # noqa: E402
from symbolic_lstm.engine.cells import BUILTIN  # noqa: E402
from symbolic_lstm.train.heap import keep_for_run  # noqa: E402

SHAPES = {"headline": (64, 100, 256, 256), "small": (16, 50, 64, 64)}  # (B, T, n_x, n_a)


def baseline_module(rev: str, cell: str, folder: Path):
    """The cell's committed module at ``rev`` (None where that revision has no such module)."""
    done = subprocess.run(["git", "show", f"{rev}:generated/{cell}.py"], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        return None
    path = folder / f"{cell}.py"
    path.write_text(done.stdout, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"baseline_{cell}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def step(k, x, p, init, y):
    out = k.forward(x, p, **init)
    _, da = k.mse_loss(out[0], y)
    k.backward(da, out[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--baseline", default="HEAD", help="git revision whose generated/ modules are the baseline")
    ap.add_argument("--cells", nargs="+", default=sorted(BUILTIN), choices=sorted(BUILTIN))
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--reps", type=int, default=7)
    add_heap_option(ap)
    args = ap.parse_args()
    rev = subprocess.run(["git", "rev-parse", "--short", args.baseline], cwd=ROOT, capture_output=True, text=True)
    heap = keep_for_run(args.heap == "keep")  # before anything is allocated
    print(*header(heap, ()), sep="\n")
    baseline = rev.stdout.strip() or args.baseline
    print(f"# baseline {baseline} · BLAS threads: the library's default · {args.reps} repetitions")
    print(f"{'cell':<10} {'shape':<9} {'dtype':<8} {'module':<9} {'min ms':>8} {'median ms':>10} {'ratio':>6}")
    print("-" * 66)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cell in args.cells:
            now, then = load(cell, warn_stale=False), baseline_module(args.baseline, cell, Path(tmp))
            for shape in args.shapes:
                B, T, n_x, n_a = SHAPES[shape]
                rng = np.random.default_rng(0)
                dtype = np.dtype(args.dtype)
                p = {n: v.astype(dtype) for n, v in now.init_params(n_x, n_a, seed=0).items()}
                x = rng.normal(size=(T, B, n_x)).astype(dtype)
                init = {f"{s}0": rng.normal(size=(B, n_a)).astype(dtype) for s in now.STATES}
                y = rng.normal(size=(T, B, n_a)).astype(dtype)
                mods = {"current": now} if then is None else {"current": now, "baseline": then}
                times: dict[str, list[float]] = {m: [] for m in mods}
                for k in mods.values():  # warm up (buffers, BLAS threads)
                    step(k, x, p, init, y)
                for r in range(args.reps):
                    order = list(mods) if r % 2 == 0 else list(reversed(mods))
                    for name in order:
                        t0 = time.perf_counter()
                        step(mods[name], x, p, init, y)
                        times[name].append(1e3 * (time.perf_counter() - t0))
                med = {m: statistics.median(v) for m, v in times.items()}
                ratio = med["current"] / med["baseline"] if "baseline" in med else float("nan")
                for name in mods:
                    r_text = f"{ratio:6.2f}" if name == "current" and "baseline" in med else ""
                    print(
                        f"{cell:<10} {shape:<9} {args.dtype:<8} {name:<9} "
                        f"{min(times[name]):8.2f} {med[name]:10.2f} {r_text:>6}"
                    )
                rows.append({"cell": cell, "shape": shape, "dtype": args.dtype, "median_ms": med, "ratio": ratio})
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
