"""The derived cells inside PyTorch (symbolic_lstm.torch) and JAX (symbolic_lstm.jax): the backward that trains
is the generated one, and it agrees with torch's gradcheck, with nn.LSTM / nn.GRU, and with the NumPy module."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from symbolic_lstm import load
from symbolic_lstm.engine.cells import BUILTIN

torch = pytest.importorskip("torch", reason="torch not installed (pip install '.[torch]')")

from torch.func import functional_call  # noqa: E402

from symbolic_lstm.bridges.torch import (  # noqa: E402
    RecurrentLayer,
    from_torch_gru,
    from_torch_lstm,
    to_torch_gru,
    to_torch_lstm,
)

PAPERS = Path(__file__).parent / "cells" / "papers.py"
F64 = torch.float64


def _inputs(layer, T=3, B=2, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, layer.input_size, dtype=F64, generator=g)
    init = tuple(0.5 * torch.randn(1, B, layer.hidden_size, dtype=F64, generator=g) for _ in layer.states)
    return x, init


def _tuple(h):
    """The final states as a tuple: a one-state cell's come back as a tensor, as nn.GRU's h_n."""
    return (h,) if isinstance(h, torch.Tensor) else h


@pytest.mark.parametrize("cell", [*sorted(BUILTIN), f"{PAPERS}:mi_rnn"])
def test_gradcheck_through_the_derived_backward(cell):
    layer = RecurrentLayer(cell, 2, 3, dtype=F64, seed=1)
    with torch.no_grad():  # unit parameters distinct per unit (LayerNorm's γ starts at 1)
        for p in layer.parameters():
            p.add_(0.1 * torch.randn_like(p))
    x, init = _inputs(layer)
    names = layer.param_names
    params = tuple(getattr(layer, n).detach().clone().requires_grad_() for n in names)
    x.requires_grad_()
    init = tuple(s.requires_grad_() for s in init)

    def f(x, *rest):
        state, ps = rest[: len(init)], rest[len(init) :]
        out, last = functional_call(layer, dict(zip(names, ps, strict=True)), (x, state))
        return out, *_tuple(last)  # the outputs and every state's last value

    assert torch.autograd.gradcheck(f, (x, *init, *params), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_torch_autograd_never_sees_the_steps():
    layer = RecurrentLayer("lstm", 3, 4, dtype=F64)
    out, _ = layer(*_inputs(layer, T=6))
    assert type(out.grad_fn).__name__ == "_KernelsBackward"  # one node for the whole sequence
    assert all(type(fn).__name__ == "AccumulateGrad" or fn is None for fn, _ in out.grad_fn.next_functions)


def test_lstm_equals_nn_lstm_and_converts_both_ways():
    torch.manual_seed(0)
    lstm = torch.nn.LSTM(3, 5, dtype=F64)
    layer = RecurrentLayer("lstm", 3, 5, dtype=F64)
    layer.load_params(from_torch_lstm(lstm))
    x, (a0, c0) = _inputs(layer, T=7, B=4)
    x.requires_grad_()
    out, (_, cT) = layer(x, (a0, c0))
    ref, (_, c) = lstm(x, (a0, c0))  # h_0, c_0 and h_n, c_n shaped as nn.LSTM's: (1, B, H)
    np.testing.assert_allclose(out.detach(), ref.detach(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(cT.detach(), c.detach(), rtol=1e-12, atol=1e-14)
    w = torch.randn_like(out)
    (out * w).sum().backward()
    g_x = x.grad.clone()
    x.grad = None
    (ref * w).sum().backward()
    theirs = from_torch_lstm({k: v.grad for k, v in lstm.named_parameters()})
    for name in layer.param_names:  # the converter adds torch's two biases: each gets b_g's gradient
        want = theirs[name] / 2 if name.startswith("b_") else theirs[name]
        np.testing.assert_allclose(getattr(layer, name).grad, want, rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(g_x, x.grad, rtol=1e-10, atol=1e-12)
    back = torch.nn.LSTM(3, 5, dtype=F64)
    back.load_state_dict(to_torch_lstm({n: getattr(layer, n) for n in layer.param_names}))
    np.testing.assert_allclose(back(x)[0].detach(), layer(x)[0].detach(), rtol=1e-12, atol=1e-14)


def test_gru_torch_equals_nn_gru_and_converts_both_ways():
    torch.manual_seed(1)
    gru = torch.nn.GRU(3, 4, dtype=F64, batch_first=True)
    layer = RecurrentLayer("gru_torch", 3, 4, dtype=F64, batch_first=True)
    layer.load_params(from_torch_gru(gru))
    x = torch.randn(2, 6, 3, dtype=F64, requires_grad=True)  # (B, T, n_x)
    out, h = layer(x)  # one state: h_n a tensor (1, B, H), as nn.GRU's
    ref, h_ref = gru(x)
    np.testing.assert_allclose(out.detach(), ref.detach(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(h.detach(), h_ref.detach(), rtol=1e-12, atol=1e-14)
    out.square().sum().backward()
    g_x = x.grad.clone()
    x.grad = None
    ref.square().sum().backward()
    theirs = from_torch_gru({k: v.grad for k, v in gru.named_parameters()})
    for name in ("W_r", "W_z", "W_in", "W_hn", "b_in", "b_hn"):  # b_r, b_z: each torch bias gets the sum's
        np.testing.assert_allclose(getattr(layer, name).grad, theirs[name], rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(layer.b_r.grad, gru.bias_ih_l0.grad[:4], rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g_x, x.grad, rtol=1e-10, atol=1e-12)
    back = torch.nn.GRU(3, 4, dtype=F64, batch_first=True)
    back.load_state_dict(to_torch_gru({n: getattr(layer, n) for n in layer.param_names}))
    np.testing.assert_allclose(back(x)[0].detach(), out.detach(), rtol=1e-12, atol=1e-14)


def test_cpu_tensors_are_not_copied(monkeypatch):
    layer = RecurrentLayer("gru", 3, 4, dtype=F64)
    x, _ = _inputs(layer)
    seen = {}
    real = layer.kernels.forward

    def spy(xa, p, **init):
        seen["x"] = np.shares_memory(xa, x.numpy())
        seen["W"] = all(np.shares_memory(p[n], getattr(layer, n).detach().numpy()) for n in layer.param_names)
        return real(xa, p, **init)

    monkeypatch.setattr(layer.kernels, "forward", spy)
    layer(x)
    assert seen == {"x": True, "W": True}


def test_layers_stack_and_an_initial_state_learns():
    torch.manual_seed(2)
    first, second = RecurrentLayer("lstm", 3, 6, dtype=F64), RecurrentLayer("rnn", 6, 2, dtype=F64)
    h0 = torch.nn.Parameter(torch.zeros(1, 4, 6, dtype=F64))
    x, y = torch.randn(5, 4, 3, dtype=F64), torch.randn(5, 4, 2, dtype=F64)
    opt = torch.optim.Adam([*first.parameters(), *second.parameters(), h0], lr=0.05)
    losses = []
    for _ in range(30):
        opt.zero_grad()
        mid, _ = first(x, (h0, torch.zeros_like(h0)))
        out, _ = second(mid)
        loss = ((out - y) ** 2).mean()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert h0.grad is not None and h0.grad.abs().sum() > 0 and first.W_f.grad.abs().sum() > 0
    assert losses[-1] < 0.5 * losses[0]


def test_a_graph_backpropagated_twice_gives_the_same_gradients():
    layer = RecurrentLayer("lstm", 3, 4, dtype=F64)
    x, _ = _inputs(layer)
    out, _ = layer(x)
    (g1,) = torch.autograd.grad(out.sum(), layer.W_f, retain_graph=True)
    (g2,) = torch.autograd.grad(out.sum(), layer.W_f)
    assert torch.equal(g1, g2)


def test_float32_and_bad_input():
    layer = RecurrentLayer("lstm", 3, 4)  # torch's default dtype
    assert layer.dtype == torch.float32 and layer.W_f.shape == (4, 7)
    out, (_, c) = layer(torch.randn(5, 2, 3))
    assert out.dtype == torch.float32 and out.shape == (5, 2, 4) and c.shape == (1, 2, 4)
    shape = r"\(T, B, input_size\) \(or \(T, input_size\) unbatched\) with input_size = 3, got \(5, 2, 4\)"
    with pytest.raises(ValueError, match=shape):
        layer(torch.randn(5, 2, 4))
    with pytest.raises(TypeError, match=r"float64 but the layer's parameters are torch\.float32"):
        layer(torch.randn(5, 2, 3, dtype=F64))
    with pytest.raises(ValueError, match=r"hx must hold 2 tensors \(a, c\), got 1"):
        layer(torch.randn(5, 2, 3), (torch.zeros(2, 4),))
    with pytest.raises(ValueError, match="hidden_size must be a positive integer"):
        RecurrentLayer("lstm", 3, 0)


def test_from_a_train_checkpoint(tmp_path):
    from click.testing import CliRunner

    from symbolic_lstm.cli import main

    ck = tmp_path / "run.npz"
    args = ["train", "--data", "sunspots", "--hidden", "4", "--epochs", "2", "-q", "--checkpoint", str(ck)]
    assert CliRunner().invoke(main, args).exit_code == 0
    layer = RecurrentLayer.from_checkpoint(ck)
    k = load("lstm")
    x = np.random.default_rng(0).normal(size=(12, 3, 1))
    out, _ = layer(torch.from_numpy(x))
    ref = k.forward(x, {n: getattr(layer, n).detach().numpy() for n in layer.param_names})[0]
    np.testing.assert_allclose(out.detach().numpy(), ref, rtol=1e-14)
    assert set(layer.head) == {"W_y", "b_y"}


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here: the array-API path on GPU is untested")
def test_cuda_tensors_run_the_array_api_module():
    pytest.importorskip("array_api_compat")
    layer = RecurrentLayer("lstm", 3, 4, dtype=F64)
    x, init = _inputs(layer)
    cpu_out, _ = layer(x, init)
    cpu_out.sum().backward()
    g = layer.W_f.grad.clone()
    gpu = RecurrentLayer("lstm", 3, 4, dtype=F64, device="cuda")
    gpu.load_params({n: getattr(layer, n) for n in layer.param_names})
    out, _ = gpu(x.cuda(), tuple(s.cuda() for s in init))
    out.sum().backward()
    np.testing.assert_allclose(out.detach().cpu(), cpu_out.detach(), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(gpu.W_f.grad.cpu(), g, rtol=1e-10, atol=1e-12)


JAX_CHECK = r"""
import sys
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from symbolic_lstm import get_cell, load
from symbolic_lstm.jax import recurrent
from symbolic_lstm.loader import module_for

cell = get_cell(sys.argv[1])
k = module_for(cell).module
rng = np.random.default_rng(0)
p = {n: v + 0.1 * rng.normal(size=v.shape) for n, v in k.init_params(3, 5, seed=1).items()}
x, y = rng.normal(size=(4, 2, 3)), rng.normal(size=(4, 2, 5))
init = {f"{s}0": rng.normal(size=(2, 5)) for s in k.STATES}
out = k.forward(x, p, **init)
g = k.backward(k.mse_loss(out[0], y)[1], out[-1])
run = recurrent(cell)
loss = lambda P, X, *I: 0.5 * jnp.sum((run(P, X, *I) - y) ** 2)
grad = jax.jit(jax.grad(loss, argnums=tuple(range(2 + len(init)))))
gp, gx, *gi = grad({n: jnp.asarray(v) for n, v in p.items()}, jnp.asarray(x), *(jnp.asarray(v) for v in init.values()))
P, X, I = {n: jnp.asarray(v) for n, v in p.items()}, jnp.asarray(x), [jnp.asarray(v) for v in init.values()]
np.testing.assert_allclose(np.asarray(run(P, X, *I)), out[0], rtol=1e-12)
for n in p:
    np.testing.assert_allclose(np.asarray(gp[n]), g[n], rtol=1e-10, atol=1e-12, err_msg=n)
np.testing.assert_allclose(np.asarray(gx), g["x"], rtol=1e-10, atol=1e-12)
for a, s in zip(gi, k.STATES):
    np.testing.assert_allclose(np.asarray(a), g[f"{s}0"], rtol=1e-10, atol=1e-12)
zero = jax.grad(lambda Q: jnp.sum(run(Q, X)))(P)  # the initial states default to zeros
assert set(zero) == set(p)
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed (pip install '.[jax]')")
# XLA compiles each cell for seconds: with the slow tests (test_array_api runs JAX arrays in the fast ones)
@pytest.mark.slow
@pytest.mark.parametrize("cell", ["lstm", "gru_torch", "layernorm", f"{PAPERS}:indrnn"])
def test_jax_grad_is_the_derived_backward(cell, tmp_path):
    """In a child process (JAX starts threads; the proof tests fork workers)."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", JAX_CHECK, cell], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def test_an_output_edited_in_place_is_refused_not_differentiated_wrongly():
    layer = RecurrentLayer("lstm", 3, 4, dtype=F64)
    x, _ = _inputs(layer)
    out, _ = layer(x)
    loss = out.sum()
    with torch.no_grad():
        out.add_(1.0)  # the kernels' buffer, which backward reads
    with pytest.raises(RuntimeError, match="modified by an inplace operation"):
        loss.backward()


TORCH_ON_JAX = r"""
import sys
import numpy as np, pytest, torch
from symbolic_lstm.torch import RecurrentLayer

for cell in sys.argv[1:]:
    for dtype, tol in ((torch.float64, 1e-10), (torch.float32, 1e-4)):
        ours = RecurrentLayer(cell, 3, 5, dtype=dtype, seed=2, batch_first=True)
        fast = RecurrentLayer(cell, 3, 5, dtype=dtype, seed=2, batch_first=True, backend="jax")
        assert "backend='jax'" in repr(fast)
        g = torch.Generator().manual_seed(0)
        x = torch.randn(4, 6, 3, dtype=dtype, generator=g)
        h0 = tuple(torch.randn(1, 4, 5, dtype=dtype, generator=g) for _ in ours.states)
        got = []
        for layer in (ours, fast):
            X, H = x.clone().requires_grad_(), tuple(h.clone().requires_grad_() for h in h0)
            out, last = layer(X, H)
            last = (last,) if isinstance(last, torch.Tensor) else last
            assert out.dtype == dtype and out.shape == (4, 6, 5)
            # the output and every state's last value reach the loss: the other states' seeds are used too
            loss = (out ** 2).sum() + sum((s ** 3).sum() for s in last)
            got.append([out, *torch.autograd.grad(loss, [X, *H, *layer.parameters()])])
        for a, b in zip(*got):
            np.testing.assert_allclose(b.detach().numpy(), a.detach().numpy(), rtol=tol, atol=tol)

layer = RecurrentLayer("lstm", 2, 3, dtype=torch.float64, backend="jax")
x = torch.randn(3, 2, 2, dtype=torch.float64, requires_grad=True)
assert torch.autograd.gradcheck(lambda x: layer(x)[0], (x,))
out, last = layer(torch.zeros(0, 2, 2, dtype=torch.float64))  # an empty sequence: the initial state comes back
assert out.shape == (0, 2, 3) and all(s.shape == (1, 2, 3) for s in last)
out, _ = layer(x)
loss = out.sum()
with torch.no_grad():
    out.add_(1.0)  # the JAX module's buffer, which backward reads
with pytest.raises(RuntimeError, match="modified by an inplace operation"):
    loss.backward()
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed (pip install '.[jax]')")
def test_the_layer_runs_on_the_jax_module_with_the_same_gradients(tmp_path):
    """backend="jax": the JAX module through DLPack gives the NumPy module's outputs and gradients (1e-10 in
    float64; float32 kept), passes gradcheck, and refuses an output edited in place.  In a child process."""
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    cells = ["lstm", "gru", f"{PAPERS}:mi_rnn"]
    done = subprocess.run([sys.executable, "-c", TORCH_ON_JAX, *cells], capture_output=True, text=True, env=env)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr[-3000:]


def test_an_unknown_backend_is_named():
    with pytest.raises(ValueError, match="backend must be one of 'numpy', 'jax', got 'tf'"):
        RecurrentLayer("lstm", 3, 4, backend="tf")


def test_the_backend_says_how_tensors_reach_its_module():
    """The layer asks its backend, never its name: CPU tensors reach the NumPy module through shared memory;
    tensors elsewhere go to the backend it names for them (the
    array-API module, on the tensors themselves); a backend that names none refuses them, before any work."""
    pytest.importorskip("array_api_compat")
    from symbolic_lstm.bridges.exchange import SharedMemory, Themselves
    from symbolic_lstm.codegen.backends import BACKENDS, JaxBackend

    layer = RecurrentLayer("lstm", 3, 4, dtype=F64)
    exchange, module = layer.runner(torch.device("cpu"))
    assert isinstance(exchange, SharedMemory) and module is layer.kernels and module.BACKEND == "numpy"
    exchange, module = layer.runner(torch.device("meta"))  # any device but the CPU
    assert isinstance(exchange, Themselves) and module.BACKEND == "array-api"
    assert BACKENDS["jax"].elsewhere is None and BACKENDS["jax"].tensors == "dlpack"
    if importlib.util.find_spec("jax") is not None:
        fast = RecurrentLayer("lstm", 3, 4, dtype=F64, backend=JaxBackend())  # the object as well as its name
        assert fast.backend == "jax"
        with pytest.raises(ValueError, match="backend='jax' runs CPU tensors, got x on meta; use backend='numpy'"):
            fast.runner(torch.device("meta"))
