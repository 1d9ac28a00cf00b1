"""Cells as their papers write them (``tests/cells/papers.py``): right or refused, never written wrong.

SRU (an output that is not a state; and as Lei et al. write it, with the highway (1 − r) ⊙ x reading the
input unit by unit), MinimalRNN (a linear stage over a linear stage), coRNN and LEM (states named y and z, as
the papers do; LEM's W_y reads z after its update in the same step) and the Mogrifier LSTM (nodes of n_x
units): each proves, generates with both backends, passes ``check``, agrees with a PyTorch implementation
written from the paper to 1e-10, trains, and runs through the torch and JAX bridges.
"""

from __future__ import annotations

import importlib.util
import inspect
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

from symbolic_lstm import CellBuilder, CellError, get_cell, load, sigmoid
from symbolic_lstm import train as tr
from symbolic_lstm.check.gradcheck import check_module
from symbolic_lstm.cli import main
from symbolic_lstm.proof import obligations as proof

PAPERS = Path(__file__).parent / "cells" / "papers.py"
CELLS = ["sru", "sru_paper", "minimal_rnn", "linear_over_linear", "cornn", "lem", "mogrifier2", "mogrifier"]
MODULE = {"mogrifier": "mogrifier4"}  # the module's name where it is not the function's


def spec(name: str) -> str:
    return f"{PAPERS}:{name}"


def sizes(name: str) -> tuple[int, int]:
    """(n_x, n_a): equal for the cell that reads x unit by unit beside n_a units."""
    return (4, 4) if get_cell(spec(name)).square else (3, 5)


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    out = tmp_path_factory.mktemp("paper_kernels")
    for name in CELLS:
        for backend in ("numpy", "array-api"):
            r = CliRunner().invoke(main, ["generate", "--cell", spec(name), "--out", str(out), "--backend", backend])
            assert r.exit_code == 0, r.output
    return out


def module(kernels: Path, name: str, backend: str = "numpy"):
    base = MODULE.get(name, name)
    return load(base if backend == "numpy" else f"{base}_array_api", kernels)


# -- prove, check ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", [c for c in CELLS if c != "mogrifier"])
def test_the_engine_proves_them(name):
    lines = proof.prove(get_cell(spec(name)), n_a=1, n_x=1, T=2, points=2, workers=2)
    assert lines and all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


@pytest.mark.slow  # four mogrifier rounds: ~25 s
def test_the_four_round_mogrifier_proves():
    lines = proof.prove(get_cell(spec("mogrifier")), n_a=1, n_x=1, T=2, points=2, workers=2)
    assert lines and all(ln.ok for ln in lines)


@pytest.mark.parametrize("backend", ["numpy", "array-api"])
@pytest.mark.parametrize("name", CELLS)
def test_both_backends_pass_check(name, backend, kernels):
    report = check_module(module(kernels, name, backend), cell=get_cell(spec(name)))
    assert report.ok, report.verdict()


@pytest.mark.parametrize("name", CELLS)
def test_the_array_api_module_equals_the_numpy_module(name, kernels):
    k, m = module(kernels, name), module(kernels, name, "array-api")
    n_x, n_a = sizes(name)
    rng = np.random.default_rng(3)
    p = k.init_params(n_x, n_a, seed=2)
    x, y = rng.normal(size=(4, 3, n_x)), rng.normal(size=(4, 3, n_a))
    init = {f"{s}0": 0.5 * rng.normal(size=(3, n_a)) for s in k.STATES}
    a, b = k.forward(x, p, **init), m.forward(x, p, **init)
    assert k.RETURNS == m.RETURNS and k.RETURNS[0] == k.OUTPUT
    for u, v in zip(a[:-1], b[:-1], strict=True):
        np.testing.assert_allclose(u, v, rtol=1e-12, atol=1e-14)
    ga, gb = k.backward(k.mse_loss(a[0], y)[1], a[-1]), m.backward(m.mse_loss(b[0], y)[1], b[-1])
    assert set(ga) == set(gb)
    for key in ga:
        np.testing.assert_allclose(ga[key], gb[key], rtol=1e-10, atol=1e-13, err_msg=key)


def test_which_numpy_layout_each_cell_gets(kernels):
    """The fused gate buffer where it lays the cell out; stage by stage for n_x-unit nodes or x read unit by unit."""
    for name in CELLS:
        k = module(kernels, name)
        stages = k.LAYOUT == "stages"
        assert stages == (name in ("sru_paper", "mogrifier2", "mogrifier")), name


# -- agreement with PyTorch implementations written from the papers ------------------------------------


def _sru(torch, q, s, x):  # Lei et al. 2018 with a projection W_h x in place of the highway's x
    f = torch.sigmoid(x @ q["W_f"].T + q["b_f"])
    r = torch.sigmoid(x @ q["W_r"].T + q["b_r"])
    c = f * s["c"] + (1 - f) * (x @ q["W"].T)
    return r * torch.tanh(c) + (1 - r) * (x @ q["W_h"].T), {"c": c}


def _sru_paper(torch, q, s, x):  # Lei et al. 2018, eqs. 3–5
    f = torch.sigmoid(x @ q["W_f"].T + q["v_f"] * s["c"] + q["b_f"])
    r = torch.sigmoid(x @ q["W_r"].T + q["v_r"] * s["c"] + q["b_r"])
    c = f * s["c"] + (1 - f) * (x @ q["W"].T)
    return r * c + (1 - r) * x, {"c": c}


def _minimal_rnn(torch, q, s, x):  # Chen 2017
    z = x @ q["W_z"].T
    u = torch.sigmoid(torch.cat([s["h"], z], 1) @ q["U"].T + q["b_u"])
    h = u * s["h"] + (1 - u) * z
    return h, {"h": h}


def _linear_over_linear(torch, q, s, x):
    a = torch.tanh(torch.cat([s["a"], x @ q["W"].T], 1) @ q["V"].T + q["b"])
    return a, {"a": a}


def _cornn(torch, q, s, x, dt=0.042, gamma=2.7, eps=4.7):  # Rusch & Mishra 2021, eq. 3
    y, z = s["y"], s["z"]
    z = z + dt * torch.tanh(torch.cat([y, z, x], 1) @ q["W"].T + q["b"]) - dt * gamma * y - dt * eps * z
    y = y + dt * z
    return y, {"y": y, "z": z}


def _lem(torch, q, s, x):  # Rusch et al. 2022, eq. 3, Δt = 1
    yu = torch.cat([s["y"], x], 1)
    dt1 = torch.sigmoid(yu @ q["W_1"].T + q["b_1"])
    dt2 = torch.sigmoid(yu @ q["W_2"].T + q["b_2"])
    z = (1 - dt1) * s["z"] + dt1 * torch.tanh(yu @ q["W_z"].T + q["b_z"])
    y = (1 - dt2) * s["y"] + dt2 * torch.tanh(torch.cat([z, x], 1) @ q["W_y"].T + q["b_y"])
    return y, {"y": y, "z": z}


def _mogrifier(rounds):  # Melis et al. 2020, eqs. 1–2, then the LSTM
    def step(torch, q, s, x):
        h = s["h"]
        for i in range(1, rounds + 1):
            if i % 2:
                x = 2 * torch.sigmoid(h @ q[f"Q{i}"].T) * x
            else:
                h = 2 * torch.sigmoid(x @ q[f"R{i}"].T) * h
        hx = torch.cat([h, x], 1)
        f, u, o = (torch.sigmoid(hx @ q[f"W_{g}"].T + q[f"b_{g}"]) for g in "fuo")
        c = f * s["c"] + u * torch.tanh(hx @ q["W_c"].T + q["b_c"])
        h = o * torch.tanh(c)
        return h, {"h": h, "c": c}

    return step


TORCH_STEPS = {
    "sru": _sru,
    "sru_paper": _sru_paper,
    "minimal_rnn": _minimal_rnn,
    "linear_over_linear": _linear_over_linear,
    "cornn": _cornn,
    "lem": _lem,
    "mogrifier2": _mogrifier(2),
    "mogrifier": _mogrifier(4),
}


@pytest.mark.parametrize("backend", ["numpy", "array-api"])
@pytest.mark.parametrize("name", CELLS)
def test_agrees_with_torch_written_from_the_paper(name, backend, kernels):
    torch = pytest.importorskip("torch")
    k = module(kernels, name, backend)
    n_x, n_a = sizes(name)
    T, B = 5, 3
    rng = np.random.default_rng(11)
    p = {n: v + 0.3 * rng.normal(size=v.shape) for n, v in module(kernels, name).init_params(n_x, n_a, seed=4).items()}
    x, y = rng.normal(size=(T, B, n_x)), rng.normal(size=(T, B, n_a))
    init = {f"{s}0": 0.5 * rng.normal(size=(B, n_a)) for s in k.STATES}
    others = {f"d{s}": rng.normal(size=(T, B, n_a)) for s in k.RETURNS[1:]}  # seeds of the other states
    out = k.forward(x, p, **init)
    ours = k.backward(k.mse_loss(out[0], y)[1], out[-1], **others)

    tp = {n: torch.tensor(v, requires_grad=True) for n, v in p.items()}
    tx = torch.tensor(x, requires_grad=True)
    ti = {n: torch.tensor(v, requires_grad=True) for n, v in init.items()}
    state = {s: ti[f"{s}0"] for s in k.STATES}
    outs, seqs = [], {s: [] for s in k.STATES}
    for t in range(T):
        o, state = TORCH_STEPS[name](torch, tp, state, tx[t])
        outs.append(o)
        for s_ in k.STATES:
            seqs[s_].append(state[s_])
    E = 0.5 * ((torch.stack(outs) - torch.tensor(y)) ** 2).sum()
    for s_ in k.RETURNS[1:]:
        E = E + (torch.stack(seqs[s_]) * torch.tensor(others[f"d{s_}"])).sum()
    E.backward()
    np.testing.assert_allclose(np.asarray(out[0]), torch.stack(outs).detach().numpy(), rtol=1e-12, atol=1e-14)
    theirs = {n: v.grad.numpy() for n, v in tp.items()} | {k.INPUT: tx.grad.numpy()}
    theirs |= {n: v.grad.numpy() for n, v in ti.items()}
    assert set(ours) == set(theirs)
    for n, g in ours.items():
        scale = float(np.max(np.abs(theirs[n]))) or 1.0
        np.testing.assert_allclose(np.asarray(g), theirs[n], rtol=1e-10, atol=1e-10 * scale, err_msg=n)


# -- training and the bridges ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", CELLS)
def test_trains(name, kernels):
    """A few epochs on the shipped sunspots (n_x = 1; the square SRU with n_a = 1): the loss falls."""
    k = module(kernels, name)
    hidden = 1 if get_cell(spec(name)).square else 6
    config = tr.Config(spec(name), "sunspots", window=12, hidden=hidden, epochs=6, batch=32, lr=0.01, seed=1)
    problem = tr.Problem(tr.load_series("sunspots"), config.window, config.holdout)
    history, _, _ = tr.train(k, config, problem)
    assert np.all(np.isfinite(history.losses)) and np.isfinite(history.test_rmse)
    assert history.losses[-1] < history.losses[0], history.losses


def test_train_cli_runs_an_output_that_is_not_a_state(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    r = CliRunner().invoke(main, ["train", "--cell", spec("sru"), "--data", "sunspots", "--epochs", "40", "-q"])
    assert r.exit_code == 0, r.output
    rmse, naive = (float(v) for v in re.search(r"RMSE ([0-9.]+) sunspots vs ([0-9.]+)", r.output).groups())
    assert rmse < naive, r.output  # trained on h, not on the state c: better than repeating last year


def test_train_cli_names_the_size_a_square_cell_needs(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    r = CliRunner().invoke(main, ["train", "--cell", spec("sru_paper"), "--data", "sunspots", "--hidden", "8"])
    assert r.exit_code == 2 and "n_a must equal n_x = 1" in r.output and "--hidden 1" in r.output, r.output


@pytest.mark.parametrize("name", CELLS)
def test_torch_bridge_gradcheck(name, tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    from torch.func import functional_call

    from symbolic_lstm.bridges.torch import RecurrentLayer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    n_x, n_a = (2, 2) if get_cell(spec(name)).square else (2, 3)
    layer = RecurrentLayer(spec(name), n_x, n_a, dtype=torch.float64, seed=1)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 2, n_x, dtype=torch.float64, generator=g).requires_grad_()
    init = tuple(0.5 * torch.randn(1, 2, n_a, dtype=torch.float64, generator=g).requires_grad_() for _ in layer.states)
    names = layer.param_names
    params = tuple((getattr(layer, n).detach() + 0.1).clone().requires_grad_() for n in names)

    def f(x, *rest):
        state, ps = rest[: len(init)], rest[len(init) :]
        out, last = functional_call(layer, dict(zip(names, ps, strict=True)), (x, state))
        return out, *((last,) if isinstance(last, torch.Tensor) else last)  # one state: h_n a tensor

    assert torch.autograd.gradcheck(f, (x, *init, *params), eps=1e-6, atol=1e-8, rtol=1e-6)
    out, last = layer(x.detach())
    last = (last,) if isinstance(last, torch.Tensor) else last
    assert out.shape == (3, 2, n_a) and len(last) == len(layer.states) and last[0].shape == (1, 2, n_a)


JAX_CHECK = """
import sys
import jax, jax.numpy as jnp, numpy as np
jax.config.update("jax_enable_x64", True)
from symbolic_lstm import get_cell
from symbolic_lstm.jax import recurrent
from symbolic_lstm.loader import module_for

cell = get_cell(sys.argv[1])
n_x, n_a = (4, 4) if cell.square else (3, 5)
k = module_for(cell).module
rng = np.random.default_rng(0)
p = {n: v + 0.1 * rng.normal(size=v.shape) for n, v in k.init_params(n_x, n_a, seed=1).items()}
x, y = rng.normal(size=(4, 2, n_x)), rng.normal(size=(4, 2, n_a))
init = {f"{s}0": rng.normal(size=(2, n_a)) for s in k.STATES}
out = k.forward(x, p, **init)
g = k.backward(k.mse_loss(out[0], y)[1], out[-1])
run = recurrent(cell)
loss = lambda P, X, *I: 0.5 * jnp.sum((run(P, X, *I) - y) ** 2)
gp, gx, *gi = jax.grad(loss, argnums=tuple(range(2 + len(init))))(
    {n: jnp.asarray(v) for n, v in p.items()}, jnp.asarray(x), *(jnp.asarray(v) for v in init.values()))
np.testing.assert_allclose(np.asarray(run(p, x, *init.values())), out[0], rtol=1e-12)
for n in p:
    np.testing.assert_allclose(np.asarray(gp[n]), g[n], rtol=1e-10, atol=1e-12, err_msg=n)
np.testing.assert_allclose(np.asarray(gx), g[k.INPUT], rtol=1e-10, atol=1e-12)
for a, s in zip(gi, k.STATES):
    np.testing.assert_allclose(np.asarray(a), g[f"{s}0"], rtol=1e-10, atol=1e-12)
"""


@pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed (pip install '.[jax]')")
@pytest.mark.slow  # XLA traces each cell for seconds
@pytest.mark.parametrize("name", ["sru", "sru_paper", "minimal_rnn", "lem", "cornn", "mogrifier2"])
def test_jax_bridge(name, tmp_path):
    env = {"XDG_CACHE_HOME": str(tmp_path), "PATH": "/usr/bin:/bin"}
    done = subprocess.run([sys.executable, "-c", JAX_CHECK, spec(name)], capture_output=True, text=True, env=env)
    assert done.returncode == 0, done.stderr[-3000:]


def test_a_generator_bug_in_the_stage_layout_is_refused_before_writing(tmp_path, monkeypatch):
    """A sign flipped in the highway's branch of ∂E/∂x<t> (SRU as the paper writes it): nothing is written."""
    from symbolic_lstm.codegen import pipeline as smoke

    real = smoke.render

    def broken(cell, backend):
        text = real(cell, backend)
        assert "_dx_all[t] = dh[t]*(1 - r)" in text
        return text.replace("_dx_all[t] = dh[t]*(1 - r)", "_dx_all[t] = -dh[t]*(1 - r)", 1)

    monkeypatch.setattr(smoke, "render", broken)
    r = CliRunner().invoke(main, ["generate", "--cell", spec("sru_paper"), "--out", str(tmp_path)])
    assert r.exit_code == 2 and "computes wrong values" in r.output and "x exceed" in r.output, r.output
    assert "stages at fault (where those gradients enter): " in r.output and list(tmp_path.iterdir()) == []


# -- names ----------------------------------------------------------------------------------------------


def test_the_papers_names_work_and_the_losses_rename_their_argument(kernels):
    k = module(kernels, "lem")
    assert k.STATES == ("y", "z") and k.INPUT == "u" and k.OUTPUT == "y"
    assert list(inspect.signature(k.mse_loss).parameters)[:2] == ["y_out", "y"]
    assert list(inspect.signature(k.backward).parameters)[:3] == ["dy", "cache", "dz"]


@pytest.mark.parametrize("bad", ["xp", "np", "range", "_state", "cache"])
def test_a_name_the_modules_use_is_refused_for_every_backend_when_the_cell_is_built_naming_it(bad):
    cell = CellBuilder("clash", inputs=("x",), states=("a",), output="a")
    with pytest.raises(CellError, match=rf"stage name '{bad}' .*rename it \(for example '\w+'\)"):
        cell.linear(bad, [cell.prev("a"), cell.input("x")], weight="W", bias="b")


def test_a_keyword_is_refused_when_the_cell_is_built():
    cell = CellBuilder("kw", inputs=("x",), states=("a",), output="a")
    with pytest.raises(CellError, match="'lambda' is a Python keyword"):
        cell.linear("lambda", [cell.prev("a"), cell.input("x")], weight="W", bias="b")


def test_a_state_read_after_its_update_by_a_linear_stage_gets_steps_1_to_T(kernels):
    """LEM's W_y reads z<t>: its weight gradient's product runs over z<1..T>, not z<0..T> (T + 1 rows)."""
    text = (kernels / "lem.py").read_text()
    assert "_z_seq[1:].reshape(T * B, n_a)" in text


def test_mgu_as_zhou_et_al_write_it():
    """The README's MGU: the candidate reads Γ_f ⊙ a<t-1> — a linear stage over an inner node."""
    cell = CellBuilder("mgu", inputs=("x",), states=("a",), output="a")
    a_prev, x = cell.prev("a"), cell.input("x")
    f = cell.stage("Gamma_f", sigmoid(cell.linear("sum_f", [a_prev, x], weight="W_f", bias="b_f")))
    fa = cell.stage("fa", f * a_prev)
    h = cell.stage("h_tilde", sp.tanh(cell.linear("sum_h", [fa, x], weight="W_h", bias="b_h")))
    cell.stage("a", (1 - f) * a_prev + f * h)
    built = cell.build()
    assert proof.prove(built, n_a=1, n_x=1, T=2, points=2, workers=1)
