"""Cells with several per-step inputs (x<t> and a context z<t> of its own width n_z): every backend's module
passes ``check`` (grads["z"] included), agrees with PyTorch autograd of the same stages and with central
differences, refuses a missing or misshapen z, and the JAX bridge, the proof and ``train`` take them as the
contract says (``docs/cells.md``: several inputs)."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import several_input_cells as cells
from autodiff import assert_agrees, torch_reference
from click.testing import CliRunner

from symbolic_lstm import CellBuilder, load
from symbolic_lstm.check.gradcheck import DEFAULT_PROBLEMS, check_module
from symbolic_lstm.cli import main
from symbolic_lstm.codegen.pipeline import module_name, write_checked
from symbolic_lstm.engine.cell import CellError
from symbolic_lstm.proof import obligations as proof

HAS_JAX = importlib.util.find_spec("jax") is not None
HAS_TORCH = importlib.util.find_spec("torch") is not None
BACKENDS = ["numpy", "array-api", *(["jax"] if HAS_JAX else [])]
CELLS = {"decoder_gru": cells.decoder_gru, "decoder_lstm": cells.decoder_lstm, "one_reader": cells.one_reader}


@pytest.fixture(scope="module")
def modules(tmp_path_factory):
    """Each test cell's module in each backend, written by the pipeline (its smoke run checked it first)."""
    out = tmp_path_factory.mktemp("several_inputs")
    found = {}
    for name, build in {**CELLS, "z_unitwise": cells.z_unitwise}.items():
        cell = build()
        for backend in BACKENDS:
            write_checked(cell, backend, out)
            found[name, backend] = (cell, load(module_name(cell, backend), out))
    return found


def _problem(cell, n_x=2, n_z=3, n_a=4, T=3, B=2, seed=3):
    rng = np.random.default_rng(seed)
    p = {n: rng.uniform(-0.8, 0.8, size=s) for n, s in cell.param_shapes(n_x, n_a, {"n_z": n_z}).items()}
    xs = {"x": rng.normal(size=(T, B, n_x)), "z": rng.normal(size=(T, B, n_z))}
    init = {f"{s}0": 0.5 * rng.normal(size=(B, n_a)) for s in cell.states}
    y = rng.normal(size=(T, B, n_a))
    extra = {s: rng.normal(size=(T, B, n_a)) for s in cell.returns[1:]}
    return p, xs, init, y, extra


def _gradients(k, p, xs, init, y, extra):
    out = k.forward(xs["x"], p, **init, z=xs["z"])
    grads = k.backward(k.mse_loss(out[0], y)[1], out[-1], **{f"d{s}": v for s, v in extra.items()})
    return out, {key: np.asarray(g) for key, g in grads.items()}


def test_widths_and_names():
    cell = cells.decoder_gru()
    assert cell.input_widths == {"x": "n_x", "z": "n_z"} and cell.extra_widths == ("n_z",)
    assert cell.param_shapes(2, 4, {"n_z": 5}) == {
        "W_u": (4, 11), "b_u": (4,), "W_r": (4, 5), "b_r": (4,), "W_h": (4, 11), "b_h": (4,),
    }  # fmt: skip
    with pytest.raises(ValueError, match=r"n_z=…; missing \[.n_z.\]"):
        cell.param_shapes(2, 4)
    with pytest.raises(CellError, match="input 'x''s width would be 'n_x'"):
        CellBuilder("bad", inputs=("u", "x"))  # n_x is the first input's width
    with pytest.raises(CellError, match="'n_a'"):
        CellBuilder("bad", inputs=("x", "a"), states=("h",), output="h")


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", [*CELLS, "z_unitwise"])
def test_every_backend_passes_check(modules, name, backend):
    """Six problems (z 1 to 4 wide, never as wide as x where it is 1), grads["z"] among the gradients judged."""
    cell, k = modules[name, backend]
    assert k.INPUT == "x" and k.INPUTS == ("x", "z")
    problems = DEFAULT_PROBLEMS if backend != "jax" else DEFAULT_PROBLEMS[:2]  # JAX compiles once per shape
    report = check_module(k, cell=cell, problems=problems)
    assert report.ok, f"{report}\n{report.verdict()}"
    assert {"x", "z"} <= {row.key for row in report}
    assert next(row.shape for row in report if row.key == "z") == "(T, B, n_z)"


@pytest.mark.skipif(not HAS_TORCH, reason="needs torch")
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("name", CELLS)
def test_gradients_agree_with_autograd(modules, name, backend):
    """Every parameter, x, z and every initial state, against PyTorch autograd of the same stages."""
    cell, k = modules[name, backend]
    p, xs, init, y, extra = _problem(cell)
    out, ours = _gradients(k, p, xs, init, y, extra)
    seqs, theirs = torch_reference(cell, p, xs, init, y, extra)
    for got, want in zip(out[:-1], seqs, strict=True):
        np.testing.assert_allclose(np.asarray(got), want, rtol=1e-10, atol=1e-12)
    assert set(ours) == {*cell.params, "x", "z", *(f"{s}0" for s in cell.states)}
    assert_agrees(ours, theirs)


@pytest.mark.parametrize("n_z", [1, 5])
def test_gradients_agree_with_central_differences(modules, n_z):
    """∂E/∂z (and ∂E/∂x, a weight reading z) by central differences of the module's own forward, z 1 or 5 wide."""
    cell, k = modules["decoder_gru", "numpy"]
    p, xs, init, y, _ = _problem(cell, n_z=n_z, seed=11)
    _, ours = _gradients(k, p, xs, init, y, {})

    def error() -> float:
        return k.mse_loss(k.forward(xs["x"], p, **init, z=xs["z"])[0], y)[0]

    h = 1e-6
    for arr, key in ((xs["z"], "z"), (xs["x"], "x"), (p["W_r"], "W_r")):
        numeric = np.zeros_like(arr)
        for i in np.ndindex(arr.shape):
            keep = arr[i]
            arr[i] = keep + h
            up = error()
            arr[i] = keep - h
            down = error()
            arr[i] = keep
            numeric[i] = (up - down) / (2 * h)
        np.testing.assert_allclose(ours[key], numeric, rtol=1e-6, atol=1e-8, err_msg=key)


@pytest.mark.parametrize("backend", BACKENDS)
def test_z_is_required_and_checked(modules, backend):
    cell, k = modules["decoder_lstm", backend]
    p, xs, init, *_ = _problem(cell)
    with pytest.raises(ValueError, match=r"forward needs z=.*\(T, B, n_z\)"):
        k.forward(xs["x"], p, **init)
    with pytest.raises(ValueError, match=r"z must have shape \(T, B, n_z\)"):
        k.forward(xs["x"], p, **init, z=xs["z"][:2])  # T differs from x's
    with pytest.raises(ValueError, match=r"z must have shape \(T, B, n_z\)"):
        k.forward(xs["x"], p, **init, z=xs["z"][0])  # not a sequence
    with pytest.raises(ValueError, match=r"n_z = 6|z has n_z = 6"):
        k.forward(xs["x"], p, **init, z=np.concatenate([xs["z"], xs["z"]], axis=2))  # not the weights' n_z


def test_numpy_names_the_width_of_z_and_init_params_wants_it(modules):
    cell, k = modules["decoder_gru", "numpy"]
    p, xs, *_ = _problem(cell, n_z=3)
    with pytest.raises(ValueError, match=r"z has n_z = 6 features but p\['W_\w'\].* is for n_z = 3"):
        k.forward(xs["x"], p, z=np.concatenate([xs["z"], xs["z"]], axis=2))
    with pytest.raises(TypeError, match="n_z"):
        k.init_params(2, 4)
    assert k.init_params(2, 4, n_z=1)["W_r"].shape == (4, 1)


def test_an_input_read_by_one_stage_only(modules):
    cell, k = modules["one_reader", "numpy"]
    p, xs, init, y, _ = _problem(cell, n_z=1)
    _, grads = _gradients(k, p, xs, init, y, {})
    assert grads["z"].shape == xs["z"].shape and np.any(grads["z"] != 0)
    assert grads["W_q"].shape == (4, 1)


def test_single_input_modules_keep_their_api():
    """A one-input module's forward takes no keyword it did not take before, and INPUTS names its one input."""
    k = load("lstm")
    assert k.INPUTS == ("x",)
    p = k.init_params(2, 3)
    a, _, cache = k.forward(np.zeros((2, 1, 2)), p)
    assert set(k.backward(np.ones_like(a), cache)) == {*k.PARAMS, "x", "a0", "c0"}


def test_proof_proves_dz():
    lines = proof.prove(cells.decoder_gru(), n_a=1, n_x=1, T=2, points=2, workers=1)
    assert {ln.gradient for ln in lines} >= {"x", "z"} and all(ln.ok for ln in lines)


def test_train_refuses_several_inputs(tmp_path):
    spec = f"{cells.__file__}:decoder_gru"
    result = CliRunner().invoke(main, ["train", "--cell", spec, "--epochs", "1"])
    assert result.exit_code == 2, result.output
    assert "2 per-step inputs (x, z)" in result.output


@pytest.mark.skipif(not HAS_JAX, reason="needs jax")
def test_jax_bridge_takes_z_by_keyword_under_jit_vmap_and_grad(modules):
    import jax
    import jax.numpy as jnp

    from symbolic_lstm.bridges.jax import recurrent

    cell = cells.decoder_gru()
    p, xs, init, y, _ = _problem(cell)
    run = recurrent(cell)
    with jax.enable_x64(True):
        params = {n: jnp.asarray(v) for n, v in p.items()}
        x, z, a0 = jnp.asarray(xs["x"]), jnp.asarray(xs["z"]), jnp.asarray(init["a0"])

        def loss(params, x, z, a0):
            return 0.5 * jnp.sum((run(params, x, a0, z=z) - y) ** 2)

        grads = jax.jit(jax.grad(loss, argnums=(0, 1, 2, 3)))(params, x, z, a0)
        batched = jax.vmap(lambda z1: run(params, x, a0, z=z1))(jnp.stack([z, 2 * z]))
        with pytest.raises(ValueError, match=r"missing \['z'\]"):
            run(params, x, a0)
        with pytest.raises(ValueError, match=r"z must have shape \(T, B, n_z\)"):
            run(params, x, a0, z=z[:1])
    _, k = modules["decoder_gru", "numpy"]
    out, ours = _gradients(k, p, xs, init, y, {})
    np.testing.assert_allclose(np.asarray(batched[0]), out[0], rtol=1e-10, atol=1e-12)
    for key, g in zip(("params", "x", "z", "a0"), grads, strict=True):
        if key == "params":
            for n, v in g.items():
                np.testing.assert_allclose(np.asarray(v), ours[n], rtol=1e-9, atol=1e-12, err_msg=n)
        else:
            np.testing.assert_allclose(np.asarray(g), ours[key], rtol=1e-9, atol=1e-12, err_msg=key)
