"""Property-based tests (hypothesis) of the generated module, and a fuzz test of its input checks.

Properties, over random shapes, seeds, dtypes and loss modes:
* the gradient is the derivative: for a random direction V through every input and parameter at once,
  Σ ⟨∂E/∂θ, V_θ⟩ equals dE(θ + sV)/ds at s = 0 by central differences;
* a sequence split in two (the second half started from the first half's last state) gives the same
  forward outputs, and its backward, chained through the initial-state gradients, the same gradients.
Fuzz: random mutations of a valid call (shapes, ranks, dtypes, non-finite and huge values, wrong types,
missing or extra keys) either raise ValueError/TypeError or return finite arrays of the documented shapes.
"""

from __future__ import annotations

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, event, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from symbolic_lstm.check.gradcheck import numeric_gradient  # noqa: E402

MODES = ("many-to-many", "many-to-one")
SETTINGS = settings(deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True)

shapes = st.tuples(st.integers(1, 6), st.integers(1, 4), st.integers(1, 4), st.integers(1, 5))  # T, B, n_x, n_a


def _problem(k, T, B, n_x, n_a, seed, mode, dtype=np.float64, scale=2.0):
    rng = np.random.default_rng(seed)
    p = {name: scale * v for name, v in k.init_params(n_x, n_a, seed=seed, dtype=dtype).items()}
    x = rng.normal(size=(T, B, n_x)).astype(dtype)
    init = {f"{s}0": (0.5 * rng.normal(size=(B, n_a))).astype(dtype) for s in k.STATES}
    y = rng.normal(size=(T, B, n_a) if mode == "many-to-many" else (B, n_a)).astype(dtype)
    return p, x, init, y


@SETTINGS
@given(shape=shapes, seed=st.integers(0, 2**31 - 1), mode=st.sampled_from(MODES))
def test_directional_derivative_matches_central_differences(k, shape, seed, mode):
    p, x, init, y = _problem(k, *shape, seed, mode)
    out = k.forward(x, p, **init)
    _, da = k.mse_loss(out[0], y, mode)
    g = k.backward(da, out[-1])
    arrays = {**p, "x": x, **init}
    rng = np.random.default_rng(seed + 1)
    V = {name: rng.normal(size=v.shape) for name, v in arrays.items()}
    analytic = sum(float(np.sum(g[name] * V[name])) for name in arrays)
    s = np.zeros(1)

    def E() -> float:
        moved = {name: v + s[0] * V[name] for name, v in arrays.items()}
        pp = {name: moved[name] for name in p}
        res = k.forward(moved["x"], pp, **{name: moved[name] for name in init})
        return k.mse_loss(res[0], y, mode)[0]

    numeric = float(numeric_gradient(E, s)[0])
    scale = sum(float(np.sum(np.abs(g[name] * V[name]))) for name in arrays)
    assert abs(analytic - numeric) <= 1e-7 * scale + 1e-12, (analytic, numeric, scale)


@SETTINGS
@given(
    shape=shapes,
    cut=st.floats(0, 1),
    seed=st.integers(0, 2**31 - 1),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_split_sequence_equals_whole(k, shape, cut, seed, dtype):
    T, B, n_x, n_a = shape
    p, x, init, y = _problem(k, T, B, n_x, n_a, seed, "many-to-many", dtype)
    T1 = round(cut * T)
    whole = k.forward(x, p, **init)
    first = k.forward(x[:T1], p, **init)
    carried = {f"{s}0": (first[j][-1] if T1 else init[f"{s}0"]).copy() for j, s in enumerate(k.STATES)}
    second = k.forward(x[T1:], p, **carried)
    rtol = 1e-5 if dtype == np.float32 else 1e-12
    for j in range(len(k.STATES)):
        joined = np.concatenate([first[j], second[j]])
        np.testing.assert_allclose(joined, whole[j], rtol=rtol, atol=rtol)

    # Backward: the second half's initial-state gradients seed the first half's last step.
    da = k.mse_loss(whole[0], y)[1]
    g = k.backward(da, whole[-1])
    g2 = k.backward(da[T1:], second[-1])
    extra = {f"d{s}": np.zeros((T1, B, n_a), dtype) for s in k.STATES[1:]}
    da1 = da[:T1].copy()
    if T1:
        da1[-1] += g2["a0"]
        for s in k.STATES[1:]:
            extra[f"d{s}"][-1] = g2[f"{s}0"]
    g1 = k.backward(da1, first[-1], **extra)
    for name in p:
        np.testing.assert_allclose(g1[name] + g2[name], g[name], rtol=50 * rtol, atol=50 * rtol)
    np.testing.assert_allclose(np.concatenate([g1["x"], g2["x"]]), g["x"], rtol=50 * rtol, atol=50 * rtol)


# -- fuzz ---------------------------------------------------------------------------------------

DTYPES = [np.float16, np.float32, np.float64, np.int32, np.int64, np.bool_, np.complex128, object]
VALUES = [np.nan, np.inf, -np.inf, 1e30, -1e30, 0.0]


def _mutate(data, value, name):
    """One random way to get ``value`` wrong (or leave it right)."""
    how = data.draw(st.sampled_from(["keep", "shape", "rank", "dtype", "poison", "type"]), label=f"{name}: how")
    arr = np.asarray(value)
    if how == "shape":
        dims = data.draw(st.lists(st.integers(0, 5), min_size=arr.ndim, max_size=arr.ndim), label=f"{name}: shape")
        return np.ones(dims, arr.dtype)
    if how == "rank":
        nd = data.draw(st.integers(0, 4).filter(lambda n: n != arr.ndim), label=f"{name}: rank")
        return np.ones((2,) * nd, arr.dtype)
    if how == "dtype":
        return arr.astype(data.draw(st.sampled_from(DTYPES), label=f"{name}: dtype"))
    if how == "poison" and arr.size:
        out = arr.copy()
        out.flat[data.draw(st.integers(0, arr.size - 1), label=f"{name}: at")] = data.draw(
            st.sampled_from(VALUES), label=f"{name}: value"
        )
        return out
    if how == "type":
        return data.draw(st.sampled_from([None, "text", 3, [1.0, [2.0]], {"a": 1}]), label=f"{name}: replaced by")
    return value


def _finite_outputs(result):
    arrays = result.values() if isinstance(result, dict) else result
    return all(np.isfinite(v).all() for v in arrays if isinstance(v, np.ndarray))


@settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture], derandomize=True
)
@given(data=st.data())
def test_fuzz_only_documented_exceptions(k, data):
    T, B, n_x, n_a = data.draw(shapes, label="shape")
    p, x, init, y = _problem(k, T, B, n_x, n_a, 0, "many-to-many")
    target = data.draw(st.sampled_from(["x", "p", "key", "a0", "c0", "y", "da", "mode"]), label="target")
    if target == "x":
        x = _mutate(data, x, "x")
    elif target == "p":
        name = data.draw(st.sampled_from(sorted(p)), label="param")
        p = {**p, name: _mutate(data, p[name], name)}
    elif target == "key":
        if data.draw(st.booleans(), label="drop"):
            p.pop(data.draw(st.sampled_from(sorted(p)), label="dropped"))
        else:
            p["W_z"] = p["W_f"]
    elif target in ("a0", "c0") and target in init:
        init[target] = _mutate(data, init[target], target)
    elif target == "y":
        y = _mutate(data, y, "y")
    try:
        a, *_, cache = k.forward(x, p, **init)
        mode = data.draw(st.sampled_from([*MODES, "sideways"]), label="mode") if target == "mode" else "many-to-many"
        if mode == "many-to-one":
            y = y[-1]  # (only target "mode" draws a mode, so y is intact here)
        E, da = k.mse_loss(a, y, mode)
        if target == "da":
            da = _mutate(data, da, "da")
        g = k.backward(da, cache)
    except (ValueError, TypeError) as e:
        event(f"{target}: {type(e).__name__}")
        return
    event(f"{target}: ok")
    # No error: then the answer must be whole and finite.
    assert np.isfinite(E) and _finite_outputs(g) and _finite_outputs((a,))
    assert g["x"].shape == np.shape(x) and all(g[n].shape == np.shape(p[n]) for n in p)
