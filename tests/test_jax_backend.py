"""The JAX backend (``--backend jax``): forward and backward each one ``lax.scan``, the gradients the NumPy module's
to round-off, float32 kept, clear errors, and the JAX bridge on it compiling in the same time for any T."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

from symbolic_lstm.runtime.paths import generated_dir

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax not installed (pip install '.[jax]')"
)
PAPERS = Path(__file__).parent / "cells" / "papers.py"
LAYOUTS = Path(__file__).parent / "cells" / "layouts.py"


#: Run in a child process: JAX starts threads, and other tests fork (the proof's workers) — a forked JAX deadlocks.
CHILD = r"""
import sys
from pathlib import Path
import numpy as np
import pytest
from symbolic_lstm import get_cell, load
from symbolic_lstm.gradcheck import SMOKE_PROBLEMS, check_module
from symbolic_lstm.loader import module_for


def agree(cell_spec, n_x=3, n_a=5):
    cell = get_cell(cell_spec)
    k = module_for(cell).module
    j = module_for(cell, backend="jax").module
    if cell.square:
        n_x = n_a
    rng = np.random.default_rng(3)
    p = {n: v + 0.1 * rng.normal(size=v.shape) for n, v in k.init_params(n_x, n_a, seed=1).items()}
    x = rng.normal(size=(6, 4, n_x))
    init = {f"{s}0": 0.5 * rng.normal(size=(4, n_a)) for s in cell.states}
    seeds = {f"d{s}": rng.normal(size=(6, 4, n_a)) for s in cell.states if s != cell.output}
    y = rng.normal(size=(6, 4, n_a))
    ours, theirs = k.forward(x, p, **init), j.forward(x, p, **init)
    for a, b, name in zip(ours[:-1], theirs[:-1], cell.returns, strict=True):
        np.testing.assert_allclose(np.asarray(b), a, rtol=1e-12, atol=1e-14, err_msg=name)
    g = k.backward(k.mse_loss(ours[0], y)[1], ours[-1], **seeds)
    h = j.backward(j.mse_loss(theirs[0], y)[1], theirs[-1], **seeds)
    assert set(h) == set(g)
    for name in g:
        np.testing.assert_allclose(np.asarray(h[name]), g[name], rtol=1e-10, atol=1e-12, err_msg=name)


def committed_module_passes_the_check():
    report = check_module(load("lstm_jax"), problems=SMOKE_PROBLEMS, cell=get_cell("lstm"))
    assert report.ok, report.verdict()


def dtypes():
    k = load("rnn_jax")
    p = k.init_params(3, 4, seed=0, dtype=np.float32)
    x = np.ones((2, 3, 3), np.float32)
    out = k.forward(x, p)
    grads = k.backward(k.mse_loss(out[0], np.zeros((2, 3, 4), np.float32))[1], out[-1])
    assert out[0].dtype == np.float32 and {str(g.dtype) for g in grads.values()} == {"float32"}
    out = k.forward(x.astype(np.float64), k.init_params(3, 4, seed=0))  # x64 is not on in this process
    assert out[0].dtype == np.float64


def errors():
    k = load("lstm_jax")
    p = k.init_params(3, 4)
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, n_x\)"):
        k.forward(np.zeros((2, 3)), p)
    with pytest.raises(ValueError, match="p must be a dict with exactly the keys"):
        k.forward(np.zeros((2, 3, 3)), {"W_f": p["W_f"]})
    with pytest.raises(TypeError, match="has dtype float32, x has float64"):
        k.forward(np.zeros((2, 3, 3)), {**p, "b_f": p["b_f"].astype(np.float32)})
    with pytest.raises(ValueError, match=r"c0 must have shape \(B, n_a\)"):
        k.forward(np.zeros((2, 3, 3)), p, c0=np.zeros((3, 5)))
    out = k.forward(np.zeros((2, 3, 3)), p)
    with pytest.raises(ValueError, match=r"dc must have shape \(T, B, n_a\)"):
        k.backward(out[0], out[-1], dc=np.zeros((2, 3)))
    with pytest.raises(TypeError, match="cache must be the dict returned"):
        k.backward(out[0], {})


for what in sys.argv[1:]:
    if what in ("committed_module_passes_the_check", "dtypes", "errors"):
        globals()[what]()
    else:
        agree(what)
print("ok")
"""


def _child(*args: str, tmp_path: Path) -> None:
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", CHILD, *args], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_the_jax_module_equals_the_numpy_module_and_checks_its_input(tmp_path):
    """The fused LSTM, a stage-layout cell whose output is not a state (SRU as the paper writes it) and a cell
    whose gates read their operands in different orders (one product for every weight gradient, sliced back
    per weight) to 1e-10 against the NumPy module (outputs, every gradient, δ seeds of the other states); the
    committed module passes the gradient check; float32 stays float32, float64 is not narrowed; bad input is a
    clear error."""
    cells = ("lstm", f"{PAPERS}:sru_paper", f"{LAYOUTS}:operands_reversed")
    _child(*cells, "committed_module_passes_the_check", "dtypes", "errors", tmp_path=tmp_path)


@pytest.mark.slow  # XLA compiles every cell for seconds
def test_every_cell_equals_the_numpy_module(tmp_path):
    cells = ["gru", "gru_torch", "cifg", "peephole", "rnn", "layernorm"]
    _child(*cells, *(f"{PAPERS}:{c}" for c in ("lem", "mogrifier", "minimal_rnn")), tmp_path=tmp_path)


def test_check_and_generate_take_the_jax_backend(tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    command = [sys.executable, "-m", "symbolic_lstm"]
    r = subprocess.run(
        [*command, "check", "--cell", "rnn", "--backend", "jax"], capture_output=True, text=True, env=env
    )
    assert r.returncode == 0 and "(jax module)" in r.stdout and "Traceback" not in r.stderr, r.stdout + r.stderr
    out = ["generate", "--cell", "rnn", "--backend", "jax", "--out", str(tmp_path)]
    r = subprocess.run([*command, *out], capture_output=True, text=True, env=env)
    assert r.returncode == 0 and (tmp_path / "rnn_jax.py").is_file(), r.stderr
    assert (tmp_path / "rnn_jax.py").read_bytes() == (generated_dir() / "rnn_jax.py").read_bytes()


COMPILE = r"""
import sys, time
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from symbolic_lstm.jax import recurrent
from symbolic_lstm import load
run = recurrent(sys.argv[1])
k = load(sys.argv[1])
p = {n: jnp.asarray(v) for n, v in k.init_params(3, 8, seed=1).items()}
took = []
for T in (10, 1000):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(T, 4, 3)))
    f = jax.jit(jax.grad(lambda P, X: jnp.sum(run(P, X) ** 2)))
    t0 = time.perf_counter()
    jax.block_until_ready(f(p, x))
    took.append(time.perf_counter() - t0)
xs = jnp.asarray(np.random.default_rng(0).normal(size=(5, 7, 4, 3)))
batched = jax.vmap(jax.grad(lambda P, X: jnp.sum(run(P, X) ** 2)), in_axes=(None, 0))(p, xs)
one = jax.grad(lambda P, X: jnp.sum(run(P, X) ** 2))(p, xs[2])
for n in p:
    np.testing.assert_allclose(np.asarray(batched[n][2]), np.asarray(one[n]), rtol=1e-12, atol=1e-14)
print(took[0], took[1])
"""


@pytest.mark.slow  # two XLA compilations in a child process
def test_the_bridge_compiles_in_the_same_time_for_any_t_and_works_under_vmap(tmp_path):
    """jit(grad) through recurrent() at T = 10 and T = 1000: a lax.scan, so within a small factor (the old
    bridge unrolled the loop: 152 s at T = 50); vmap over a batch of sequences equals each one alone."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", COMPILE, "lstm"], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]
    short, long = map(float, done.stdout.split())
    assert long < 4 * short + 2, (short, long)


def test_train_backend_jax_trains_as_the_numpy_module_does(tmp_path):
    """The same run, one flag apart: the losses and the held-out error agree (the gradients are the same to
    round-off); the heads (linear read-out, softmax) are the JAX module's, printed from their derivations."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    runs = {}
    for backend in ("numpy", "jax"):
        for data in ("sunspots", "tempest"):
            args = ["train", "--data", data, "--epochs", "2", "--hidden", "8", "--backend", backend, "-q"]
            r = subprocess.run([sys.executable, "-m", "symbolic_lstm", *args], capture_output=True, text=True, env=env)
            assert r.returncode == 0, r.stderr[-3000:]
            runs[backend, data] = [ln for ln in r.stdout.splitlines() if ln.startswith(("training loss", "held-out"))]
    for data in ("sunspots", "tempest"):
        assert runs["jax", data] == runs["numpy", data] and len(runs["jax", data]) == 2, runs


@pytest.mark.slow  # a local Dask cluster whose workers compile the JAX module
def test_train_backend_jax_on_dask_workers_ends_as_one_process(tmp_path):
    """--backend jax with --workers: each worker runs the JAX module (sent as source) on its shard, and the run
    ends with the one-process run's parameters to round-off (float64)."""
    pytest.importorskip("distributed", reason="Dask is the [distributed] extra")
    from symbolic_lstm import train as tr

    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    args = ["train", "--hidden", "6", "--window", "12", "--batch", "7", "--epochs", "2", "-q", "--backend", "jax"]
    params = {}
    for name, more in (("one", []), ("dask", ["--workers", "2"])):
        ck = tmp_path / f"{name}.npz"
        command = [sys.executable, "-m", "symbolic_lstm", *args, *more, "--checkpoint", str(ck)]
        r = subprocess.run(command, capture_output=True, text=True, env=env)
        assert r.returncode == 0, r.stderr[-3000:]
        params[name] = tr.load_checkpoint(ck)[1][1]
    assert "data-parallel on 2 Dask workers" in r.stdout and "steps on 2 Dask workers" in r.stderr, r.stdout
    assert params["one"].keys() == params["dask"].keys()
    worst = max(float(abs(params["one"][n] - params["dask"][n]).max()) for n in params["one"])
    assert worst <= 1e-10, worst
