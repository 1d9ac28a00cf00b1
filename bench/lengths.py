"""Benchmark: what per-sequence lengths cost the NumPy kernels, against the module as it was before them.

    python bench/lengths.py                                  # lstm, 64x100x256 and 16x50x64, float32 and float64
    python bench/lengths.py --before 12535e7 --reps 15

In one process, on the same inputs and weights, forward + backward of
* ``before``: the cell's module at git revision ``--before`` (the last one without ``lengths=``), read with
  ``git show`` and imported from a temporary folder;
* ``full``: today's module, every sequence T steps (``lengths=None``: the plain kernels);
* ``full-lengths``: today's module given ``lengths`` all equal to T (checked, then the plain kernels);
* ``ragged``: today's module with lengths spread over T/2..T (the carry-over select and the folded seeds)
is timed in rotating blocks (``bench/timing.py``).  ``ratio`` = median / before's median: the issue asks
``full`` ≤ 1.05 at 64x100x256.  One JSON line per shape and dtype follows the table.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from types import ModuleType

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from timing import in_blocks

from symbolic_lstm import load

SHAPES = {"64x100x256": (64, 100, 256), "16x50x64": (16, 50, 64)}  # B x T x n_a (n_x = n_a)


def module_at(rev: str, cell: str, folder: Path) -> ModuleType:
    """``generated/<cell>.py`` as it was at ``rev``, imported from ``folder`` (a bench's copy: not the loader's)."""
    root = Path(__file__).resolve().parent.parent
    text = subprocess.run(
        ["git", "show", f"{rev}:generated/{cell}.py"], cwd=root, check=True, capture_output=True, text=True
    ).stdout
    path = folder / f"{cell}_before.py"
    path.write_text(text, encoding="utf-8")
    spec = importlib.util.spec_from_file_location(f"{cell}_before", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def implementations(
    before: ModuleType, now: ModuleType, problem: tuple[np.ndarray, dict, np.ndarray], ragged: np.ndarray
) -> dict:
    """The four timed calls (forward + backward each) on one problem (x (T, B, n), parameters, seed da)."""
    x, p, da = problem
    T, B = x.shape[:2]

    def run(module: ModuleType, lengths: np.ndarray | None) -> None:
        kw = {} if lengths is None else {"lengths": lengths}
        *_, cache = module.forward(x, p, check_finite=False, **kw)
        module.backward(da, cache, check_finite=False)

    full = np.full(B, T)
    return {
        "before": lambda: run(before, None),
        "full": lambda: run(now, None),
        "full-lengths": lambda: run(now, full),
        "ragged": lambda: run(now, ragged),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--cell", default="lstm")
    ap.add_argument("--before", default="12535e7", help="git revision of the module without lengths")
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--dtypes", nargs="+", default=["float32", "float64"])
    ap.add_argument("--reps", type=int, default=9)
    args = ap.parse_args()
    now = load(args.cell)
    with tempfile.TemporaryDirectory() as tmp:
        before = module_at(args.before, args.cell, Path(tmp))
        print(f"{'shape':<12} {'dtype':<8} {'impl':<13} {'median ms':>10} {'ratio':>7}")
        for shape in args.shapes:
            B, T, n = SHAPES[shape]
            for dtype in args.dtypes:
                rng = np.random.default_rng(0)
                p = now.init_params(n, n, seed=0, dtype=np.dtype(dtype))
                x = rng.normal(size=(T, B, n)).astype(dtype)
                da = rng.normal(size=(T, B, n)).astype(dtype)
                ragged = rng.integers(T // 2, T + 1, size=B)

                impls = implementations(before, now, (x, p, da), ragged)
                times = in_blocks(impls, reps=args.reps, block=3, warmup=1)
                base = statistics.median(times["before"])
                row = {}
                for name, ts in times.items():
                    med = statistics.median(ts)
                    row[name] = {"median_ms": 1e3 * med, "ratio": med / base}
                    print(f"{shape:<12} {dtype:<8} {name:<13} {1e3 * med:>10.2f} {med / base:>7.3f}")
                print(json.dumps({"shape": shape, "dtype": dtype, "cell": args.cell, **row}))


if __name__ == "__main__":
    main()
