"""Benchmark: the generated NumPy and JAX modules against what a user would pick instead, at small and large shapes.

    python bench/peers.py                          # the LSTM and the README's MGU at the issue's shapes, float32
    python bench/peers.py --cells lstm --shapes 16x50x64 --reps 9

Every implementation computes forward + ½Σ(a − y)² over all steps + every gradient (parameters and x), on the
same inputs and weights:

* ``numpy``      the generated NumPy module (``load(cell)``);
* ``jax``        the generated JAX module's ``scan_forward`` + ``scan_backward`` (the derived backward), under
                 ``jax.jit``;
* ``jax-grad``   the same ``lax.scan`` forward differentiated by ``jax.grad`` under ``jax.jit`` (XLA's autodiff);
* ``torch-loop`` the cell's stages as a Python loop of torch ops (the array-API module on torch tensors),
                 differentiated by torch's autograd;
* ``torch-lstm`` ``torch.nn.LSTM`` (oneDNN), LSTM only, weights mapped from ours;
* ``bridge``     ours inside PyTorch: ``symbolic_lstm.torch.RecurrentLayer`` (the NumPy module on the tensors'
                 memory), differentiated by torch's autograd through the derived backward;
* ``bridge-jax`` the same layer with ``backend="jax"`` (the JAX module, tensors handed over by DLPack).

Before anything is timed, every implementation's gradients are checked equal to the NumPy module's in float64
(1e-8 relative), so no row times a wrong answer.  Repetitions run in blocks (``bench/timing.py``): each
implementation runs ``--block`` times in a row, then the next (the order rotates from round to round), after a
warm-up that compiles — so one library's idle threads spinning after its call do not land on the next library's
time.  The table gives min and median (ms) and ``ratio`` = median / the best peer's median (peers: jax-grad,
torch-loop, torch-lstm; below 1: faster than the best of them); ``ours`` names our faster module (numpy or jax)
and its ratio.  One JSON line per cell and shape follows.  The NumPy module runs with the BLAS threads ``train``
would choose for the shape (``symbolic_lstm.runtime.threads``); torch and XLA with their defaults; the header
prints the threads, the BLAS kernels and the machine's load.  glibc's malloc keeps freed memory for the run
(``--heap keep``, the default; ``symbolic_lstm/train/heap.py``): by default it hands large blocks back to the
kernel, and a library that allocates its workspace afresh each call then pays page faults or not depending on what
the process freed before — nn.LSTM at 64x100x256 took 57 ms in one run and 76–100 ms in others, which decided
who was ahead.
``--heap default`` times with glibc's defaults; MALLOC_MMAP_THRESHOLD_ or MALLOC_TRIM_THRESHOLD_ set in the environment
win over both.  ``--processes K`` times each implementation in K fresh processes of its own (``timing.in_processes``),
``--reps`` calls in each: a library's speed can be the luck of its process — nn.LSTM's two OpenMP threads ran some
processes at 1.0 ms a call and others at 1.5–1.7 ms (16x50x64) — so the table then gives the median over every
call of every process and the range of the processes' own medians.
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib.util
import json
import statistics
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

from timing import add_heap_option, in_blocks, in_processes  # noqa: E402
from timing import header as timing_header  # noqa: E402

from symbolic_lstm import CellBuilder, get_cell, sigmoid  # noqa: E402
from symbolic_lstm.codegen.loader import module_for  # noqa: E402
from symbolic_lstm.runtime.threads import blas_threads  # noqa: E402
from symbolic_lstm.train.heap import keep_for_run  # noqa: E402

#: (B, T, n) as the issue's table: n = n_x = n_a.
SHAPES = {"64x100x256": (64, 100, 256), "16x50x64": (16, 50, 64), "1x1000x128": (1, 1000, 128)}
PEERS = ("jax-grad", "torch-loop", "torch-lstm")


def mgu():
    """The README's minimal gated unit (Zhou et al. 2016), a user cell."""
    import sympy as sp

    cell = CellBuilder("mgu", inputs=("x",), states=("a",), output="a", description="minimal gated unit")
    a_prev, x = cell.prev("a"), cell.input("x")
    f = cell.stage("Gamma_f", sigmoid(cell.linear("sum_f", [a_prev, x], weight="W_f", bias="b_f")))
    fa = cell.stage("fa", f * a_prev)
    h = cell.stage("h_tilde", sp.tanh(cell.linear("sum_h", [fa, x], weight="W_h", bias="b_h")))
    cell.stage("a", (1 - f) * a_prev + f * h)
    return cell.build()


def cell_of(name: str):
    return mgu() if name == "mgu" else get_cell(name)


def problem(k, B: int, T: int, n: int, dtype: type, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = {name: v.astype(dtype) for name, v in k.init_params(n, n, seed=seed).items()}
    return p, rng.normal(size=(T, B, n)).astype(dtype), rng.normal(size=(T, B, n)).astype(dtype)


# -- the implementations: each make(p, x, y) -> run() returning {name: gradient} (parameters and "x") -------------
def numpy_impl(cell, p, x, y):
    k = module_for(cell).module

    def run():
        out = k.forward(x, p)
        return k.backward(k.mse_loss(out[0], y)[1], out[-1])

    return run


def _jax_inputs(cell, p, x, y):
    import jax.numpy as jnp

    params = {n: jnp.asarray(v) for n, v in p.items()}
    init = tuple(jnp.zeros((x.shape[1], next(iter(p.values())).shape[0]), x.dtype) for _ in cell.states)
    return params, jnp.asarray(x), jnp.asarray(y), init


def jax_impl(cell, p, x, y):
    import jax

    m = module_for(cell, backend="jax").module
    params, X, Y, init = _jax_inputs(cell, p, x, y)

    @jax.jit
    def step(P, X, Y):
        seq = m.scan_forward(X, P, init)
        grads, dx, _ = m.scan_backward(seq[cell.output] - Y, {}, X, P, init, seq)
        return {**grads, "x": dx}

    return lambda: jax.block_until_ready(step(params, X, Y))


def jax_grad_impl(cell, p, x, y):
    import jax
    import jax.numpy as jnp

    m = module_for(cell, backend="jax").module
    params, X, Y, init = _jax_inputs(cell, p, x, y)

    def loss(P, X):
        return 0.5 * jnp.sum((m.scan_forward(X, P, init)[cell.output] - Y) ** 2)

    step = jax.jit(jax.grad(loss, argnums=(0, 1)))

    def run():
        gp, gx = jax.block_until_ready(step(params, X))
        return {**gp, "x": gx}

    return run


def torch_loop_impl(cell, p, x, y):
    import torch

    m = module_for(cell, backend="array-api").module

    def run():
        P = {n: torch.from_numpy(v).requires_grad_() for n, v in p.items()}
        X = torch.from_numpy(x).requires_grad_()
        out = m.forward(X, P)
        (0.5 * torch.sum((out[0] - torch.from_numpy(y)) ** 2)).backward()
        return {**{n: t.grad for n, t in P.items()}, "x": X.grad}

    return run


def torch_lstm_impl(cell, p, x, y):
    """nn.LSTM with our weights: torch's gates (i, f, g, o) are our (u, f, c, o); one bias (b_hh = 0)."""
    import torch

    n_a = p["W_f"].shape[0]
    order = ("u", "f", "c", "o")
    lstm = torch.nn.LSTM(x.shape[2], n_a).to(torch.float64 if x.dtype == np.float64 else torch.float32)
    with torch.no_grad():
        lstm.weight_ih_l0.copy_(torch.from_numpy(np.concatenate([p[f"W_{g}"][:, n_a:] for g in order])))
        lstm.weight_hh_l0.copy_(torch.from_numpy(np.concatenate([p[f"W_{g}"][:, :n_a] for g in order])))
        lstm.bias_ih_l0.copy_(torch.from_numpy(np.concatenate([p[f"b_{g}"] for g in order])))
        lstm.bias_hh_l0.zero_()
    Y = torch.from_numpy(y)

    def run():
        lstm.zero_grad()
        X = torch.from_numpy(x).requires_grad_()
        (0.5 * torch.sum((lstm(X)[0] - Y) ** 2)).backward()
        gi, gh, b = lstm.weight_ih_l0.grad, lstm.weight_hh_l0.grad, lstm.bias_ih_l0.grad
        out = {"x": X.grad}
        for i, g in enumerate(order):
            rows = slice(i * n_a, (i + 1) * n_a)
            out[f"W_{g}"] = torch.cat([gh[rows], gi[rows]], dim=1)
            out[f"b_{g}"] = b[rows]
        return out

    return run


def _bridge(backend: str):
    def make(cell, p, x, y):
        import torch

        from symbolic_lstm.bridges.torch import RecurrentLayer

        dtype = torch.float64 if x.dtype == np.float64 else torch.float32
        layer = RecurrentLayer(cell, x.shape[2], p[next(iter(p))].shape[0], dtype=dtype, backend=backend)
        layer.load_params(p)
        Y = torch.from_numpy(y)

        def run():
            layer.zero_grad()
            X = torch.from_numpy(x).requires_grad_()
            (0.5 * torch.sum((layer(X)[0] - Y) ** 2)).backward()
            return {**{n: getattr(layer, n).grad for n in layer.param_names}, "x": X.grad}

        return run

    return make


IMPLS = {
    "numpy": numpy_impl,
    "jax": jax_impl,
    "jax-grad": jax_grad_impl,
    "torch-loop": torch_loop_impl,
    "torch-lstm": torch_lstm_impl,
    "bridge": _bridge("numpy"),
    "bridge-jax": _bridge("jax"),
}
NEEDS = {"jax": "jax", "jax-grad": "jax", "torch-loop": "torch", "torch-lstm": "torch", "bridge": "torch"}


def available(cell_name: str) -> list[str]:
    names = [n for n in IMPLS if importlib.util.find_spec(NEEDS.get(n, "numpy")) is not None]
    if importlib.util.find_spec("torch") is None or importlib.util.find_spec("jax") is None:
        names = [n for n in names if n != "bridge-jax"]
    if cell_name != "lstm":  # torch's fused cells are the LSTM and the GRU; only the LSTM's weights are mapped
        names = [n for n in names if n != "torch-lstm"]
    if any(n.startswith("torch") for n in names) and importlib.util.find_spec("array_api_compat") is None:
        names = [n for n in names if n != "torch-loop"]
    return names


def check_equal(cell, names: list[str]) -> None:
    """Every implementation's gradients equal the NumPy module's, float64, on a small problem (JAX's in float64 for
    the check only, where JAX is installed)."""
    jax = importlib.import_module("jax") if importlib.util.find_spec("jax") else None
    if jax is not None:
        jax.config.update("jax_enable_x64", True)
    k = module_for(cell).module
    p, x, y = problem(k, 3, 7, 5, np.float64, seed=1)
    want = IMPLS["numpy"](cell, p, x, y)()
    for name in names:
        got = {
            n: np.asarray(v.detach() if hasattr(v, "detach") else v) for n, v in IMPLS[name](cell, p, x, y)().items()
        }
        for key in [*p, "x"]:
            ref = want[key]
            err = float(np.max(np.abs(got[key] - ref)) / max(1e-300, float(np.max(np.abs(ref)))))
            if not err < 1e-8:
                raise SystemExit(f"{name} on {cell.name}: gradient {key} differs from the NumPy module's ({err:.1e})")
    if jax is not None:
        jax.config.update("jax_enable_x64", False)


def settings(shape: tuple[int, int, int], gates: int, name: str):
    """What an implementation runs under: the NumPy module with the BLAS threads train would choose for the shape,
    the others as the environment sets them."""
    if name == "numpy":
        B, _, n = shape
        return blas_threads(B, n, n, gates)
    return contextlib.nullcontext()


def make_run(name: str, cell_name: str, shape: tuple[int, int, int], dtype: type):
    """Implementation ``name``'s run on the problem of ``shape``, built where it is timed (in a timing process
    too: from names — the cell is rebuilt there, not pickled)."""
    cell = cell_of(cell_name)
    p, x, y = problem(module_for(cell).module, *shape, dtype)
    return IMPLS[name](cell, p, x, y)


def bench(
    cell_name: str, shape: tuple[int, int, int], names: list[str], reps: int, block: int, dtype: type,
    processes: int = 0, keep: bool = True,
) -> dict:  # fmt: skip
    """{implementation: (min ms, median ms, (lowest, highest) median of a process)} at ``shape``: with
    ``processes`` 0, all in this process (the process range is then one value); else each implementation in that
    many fresh processes of its own (``timing.in_processes``), ``reps`` calls in each, the median over all."""
    gates = len(cell_of(cell_name).linear_stages)
    makers = {name: functools.partial(make_run, name, cell_name, shape, dtype) for name in names}
    threads = functools.partial(settings, shape, gates)
    if processes:
        prepare = functools.partial(keep_for_run, keep)
        per_process = in_processes(makers, reps, block, settings=threads, processes=processes, prepare=prepare)
    else:
        per_process = {
            n: [t] for n, t in in_blocks({n: m() for n, m in makers.items()}, reps, block, settings=threads).items()
        }
    out = {}
    for name, runs in per_process.items():
        every = [t for run in runs for t in run]
        medians = [statistics.median(run) for run in runs]
        out[name] = (1e3 * min(every), 1e3 * statistics.median(every), (1e3 * min(medians), 1e3 * max(medians)))
    return out


def header(dtype: str, reps: int, block: int, heap: str, processes: int = 0) -> str:
    """The run's date, machine, load, library versions, settings, BLAS kernels and heap (``timing.header``), then
    this bench's threads and repetitions: what a reader needs to weigh it."""
    return "\n".join([
        *timing_header(heap),
        f"# {dtype} · threads: numpy as train chooses per shape, torch and XLA their defaults",
        f"# {reps} repetitions in blocks of {block}, medians (min) · "
        + (f"each implementation in {processes} fresh process(es) of its own" if processes else "all in this process"),
    ])  # fmt: skip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cells", nargs="+", default=["lstm", "mgu"], choices=["lstm", "mgu", "gru", "gru_torch", "rnn"])
    ap.add_argument("--shapes", nargs="+", default=list(SHAPES), choices=list(SHAPES))
    ap.add_argument("--reps", type=int, default=15, help="timed runs of each implementation (default 15)")
    ap.add_argument("--block", type=int, default=5, help="runs of one implementation in a row (default 5)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    ap.add_argument("--impls", nargs="+", choices=list(IMPLS), help="only these (default: all installed)")
    ap.add_argument(
        "--processes",
        type=int,
        default=0,
        metavar="K",
        help="time each implementation in K fresh processes of its own, --reps calls in each (a library's speed can "
        "differ from process to process); 0 (default): every implementation in this process",
    )
    add_heap_option(ap)
    args = ap.parse_args()
    if args.reps < 1 or args.block < 1:
        ap.error("--reps and --block must be positive")
    if args.processes < 0:
        ap.error("--processes must be 0 (this process) or a positive number of processes")
    dtype = np.dtype(args.dtype).type
    heap = keep_for_run(args.heap == "keep")  # before anything is allocated
    print(header(args.dtype, args.reps, args.block, heap, args.processes))
    rows = []
    for cell_name in args.cells:
        cell = cell_of(cell_name)
        names = [n for n in available(cell_name) if args.impls is None or n in args.impls]
        check_equal(cell, names)
        print(f"# {cell_name}: every implementation's gradients equal the NumPy module's (float64, 1e-8): {names}")
        for shape_name in args.shapes:
            shape = SHAPES[shape_name]
            result = bench(cell_name, shape, names, args.reps, args.block, dtype, args.processes, args.heap == "keep")
            peers = [result[n][1] for n in PEERS if n in result]
            best = min(peers) if peers else None  # no peer chosen (--impls): no ratio
            rows.append((cell_name, shape_name, result, best))
    spread = f" {'process medians':>16}" if args.processes > 1 else ""
    print(f"{'cell':<6} {'B x T x n':<11} {'impl':<11} {'min ms':>9} {'median ms':>10} {'ratio':>6}{spread}")
    for cell_name, shape_name, result, best in rows:
        for name, (lo, med, (p_lo, p_hi)) in result.items():
            ratio = f"{med / best:.2f}" if best else "–"
            each = f" {f'{p_lo:.2f}–{p_hi:.2f}':>16}" if spread else ""
            print(f"{cell_name:<6} {shape_name:<11} {name:<11} {lo:>9.2f} {med:>10.2f} {ratio:>6}{each}")
    print("# ours: our faster module (numpy or jax) against the best peer, median ratio (min ratio)")
    for cell_name, shape_name, result, best in rows:
        ours = [n for n in ("numpy", "jax") if n in result]
        peers = [n for n in PEERS if n in result]
        if ours and peers:
            fast = min(ours, key=lambda n: result[n][1])
            peer = min(peers, key=lambda n: result[n][1])
            lo = result[fast][0] / min(result[n][0] for n in peers)
            print(
                f"{cell_name:<6} {shape_name:<11} ours {fast:<5} vs {peer:<10} {result[fast][1] / best:.2f} ({lo:.2f})"
            )
    for cell_name, shape_name, result, best in rows:
        impls = {
            n: {"min_ms": lo, "median_ms": med, **({"process_medians_ms": [a, b]} if args.processes else {})}
            for n, (lo, med, (a, b)) in result.items()
        }
        print(json.dumps({"cell": cell_name, "shape": shape_name, "dtype": args.dtype, "best_peer_ms": best,
                          "processes": args.processes, **impls}))  # fmt: skip


if __name__ == "__main__":
    main()
