"""The array-API backend: the same gradients as the NumPy module, on NumPy arrays and on torch CPU tensors."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("array_api_compat")

from symbolic_lstm import load
from symbolic_lstm.engine.cells import BUILTIN

CELLS = sorted(BUILTIN)


def _problem(k, mode="many-to-many", T=5, B=3, n_x=2, n_a=4, seed=0):
    rng = np.random.default_rng(seed)
    p = {n: v + rng.uniform(-0.5, 0.5, v.shape) for n, v in k.init_params(n_x, n_a, seed=seed + 1).items()}
    x = rng.normal(size=(T, B, n_x))
    init = {f"{s}0": rng.normal(size=(B, n_a)) for s in k.STATES}
    y = rng.normal(size=(T, B, n_a) if mode == "many-to-many" else (B, n_a))
    return p, x, init, y


def _reference(k, p, x, init, y, mode):
    out = k.forward(x, p, **init)
    E, da = k.mse_loss(out[0], y, mode)
    return E, out, k.backward(da, out[-1])


@pytest.mark.parametrize("mode", ["many-to-many", "many-to-one"])
@pytest.mark.parametrize("name", CELLS)
def test_numpy_arrays(name, mode):
    k, m = load(name), load(f"{name}_array_api")
    assert m.PARAMS == k.PARAMS and m.STATES == k.STATES and m.BACKEND == "array-api"
    p, x, init, y = _problem(k, mode)
    E, out, g = _reference(k, p, x, init, y, mode)
    out2 = m.forward(x, p, **init)
    E2, da2 = m.mse_loss(out2[0], y, mode)
    g2 = m.backward(da2, out2[-1])
    assert E2 == pytest.approx(E, rel=1e-13)
    for j in range(len(k.STATES)):
        np.testing.assert_allclose(out2[j], out[j], rtol=1e-13, atol=1e-14)
    assert set(g2) == set(g)
    for n in g:
        np.testing.assert_allclose(g2[n], g[n], rtol=1e-11, atol=1e-13, err_msg=n)


@pytest.mark.parametrize("name", CELLS)
def test_torch_tensors_in_torch_tensors_out(name):
    torch = pytest.importorskip("torch")
    k, m = load(name), load(f"{name}_array_api")
    p, x, init, y = _problem(k, seed=3)
    _, _, g = _reference(k, p, x, init, y, "many-to-many")
    t = torch.from_numpy
    out = m.forward(t(x), {n: t(v) for n, v in p.items()}, **{n: t(v) for n, v in init.items()})
    _, da = m.mse_loss(out[0], t(y))
    g2 = m.backward(da, out[-1])
    for n in g:
        assert isinstance(g2[n], torch.Tensor), n
        np.testing.assert_allclose(g2[n].numpy(), g[n], rtol=1e-11, atol=1e-13, err_msg=n)


def test_empty_sequence_and_bad_input():
    m = load("lstm_array_api")
    k = load("lstm")
    p = k.init_params(2, 3)
    a, _c, cache = m.forward(np.zeros((0, 4, 2)), p)
    assert a.shape == (0, 4, 3)
    g = m.backward(np.zeros((0, 4, 3)), cache)
    assert g["x"].shape == (0, 4, 2) and not g["W_f"].any()
    with pytest.raises(ValueError, match=r"x must have shape \(T, B, n_x\)"):
        m.forward(np.zeros((4, 2)), p)
    with pytest.raises(ValueError, match="exactly the keys"):
        m.forward(np.zeros((1, 4, 2)), {"W_f": p["W_f"]})
    with pytest.raises(TypeError, match="real floating"):
        m.forward(np.zeros((1, 4, 2), dtype=int), p)


JAX_CHECK = """
import sys
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import numpy as np
from symbolic_lstm import load
sys.path.insert(0, sys.argv[2])
from test_array_api import _problem, _reference

name = sys.argv[1]
k, m = load(name), load(f"{name}_array_api")
p, x, init, y = _problem(k, seed=4)
_, _, g = _reference(k, p, x, init, y, "many-to-many")
J = {n: jnp.asarray(v) for n, v in {**p, "x": x, **init}.items()}
out = m.forward(J["x"], {n: J[n] for n in p}, **{n: J[n] for n in init})
g2 = m.backward(m.mse_loss(out[0], jnp.asarray(y))[1], out[-1])
for n in g:
    assert isinstance(g2[n], jax.Array), n
    np.testing.assert_allclose(np.asarray(g2[n]), g[n], rtol=1e-11, atol=1e-13, err_msg=n)
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed")
@pytest.mark.parametrize("name", ["gru", *(pytest.param(c, marks=pytest.mark.slow) for c in ("lstm", "layernorm"))])
def test_jax_arrays_which_are_immutable(name):
    """JAX arrays cannot be updated in place: the module must build every value as a new array.

    Run in a child process: JAX starts threads, and the proof tests later fork worker processes.
    """
    done = subprocess.run(
        [sys.executable, "-c", JAX_CHECK, name, str(Path(__file__).parent)], capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr[-3000:]
