"""The generated NumPy module: API contract, gradients vs the complex-step reference, dtypes, edge shapes, errors."""

from __future__ import annotations

import ast

import numpy as np
import pytest

from symbolic_lstm import load
from symbolic_lstm.check.gradcheck import DEFAULT_PROBLEMS, check_module, numeric_gradient, relative_error
from symbolic_lstm.codegen.pipeline import generate
from symbolic_lstm.engine.cells import lstm as lstm_cell
from symbolic_lstm.engine.functions import softsign
from symbolic_lstm.runtime.paths import generated_dir

KEYS = ["W_f", "b_f", "W_u", "b_u", "W_c", "b_c", "W_o", "b_o"]


def _problem(k, T=4, B=3, n_x=2, n_a=3, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    p = k.init_params(n_x, n_a, seed=seed, dtype=dtype)
    x = rng.normal(size=(T, B, n_x)).astype(dtype)
    a0 = (0.5 * rng.normal(size=(B, n_a))).astype(dtype)
    c0 = (0.5 * rng.normal(size=(B, n_a))).astype(dtype)
    y = rng.normal(size=(T, B, n_a)).astype(dtype)
    return p, x, a0, c0, y


def test_public_api_shapes(k):
    p = k.init_params(2, 3, seed=0)
    assert list(p) == KEYS
    for g in "fuco":
        assert p[f"W_{g}"].shape == (3, 5) and p[f"b_{g}"].shape == (3,)
    x = np.zeros((4, 6, 2))
    a, c, cache = k.forward(x, p)
    assert a.shape == c.shape == (4, 6, 3)
    _E, da = k.mse_loss(a, np.ones((4, 6, 3)))
    g = k.backward(da, cache)
    assert set(g) == {*KEYS, "x", "a0", "c0"}
    assert g["x"].shape == (4, 6, 2) and g["a0"].shape == g["c0"].shape == (6, 3)
    assert all(g[name].shape == p[name].shape for name in KEYS)


def test_every_gradient_matches_central_differences(k):
    rows = check_module(k, seed=0, tol=1e-7)
    assert {r.key for r in rows} == {*KEYS, "x", "a0", "c0"}
    assert all(r.ok for r in rows), [(r.key, r.max_rel_error) for r in rows if not r.ok]


@pytest.mark.parametrize(
    "variant",
    [
        lstm_cell.build(candidate=softsign, name="lstm_softsign"),
        lstm_cell.build(output_activation=lambda e: e, name="lstm_linear_out"),
    ],
    ids=["softsign-candidate", "no-output-tanh"],
)
def test_variant_cell_kernels_match_central_differences(variant, tmp_path):
    """Change a stage; the generated forward and backward change with it and stay exact."""
    generate([variant], tmp_path)
    kv = load(variant.name, tmp_path)
    rows = check_module(kv, seed=1, tol=1e-7, cell=variant)
    assert all(r.ok for r in rows), [(r.key, r.max_rel_error) for r in rows if not r.ok]
    # the forward is the variant's own: compare one step with the cell's formula, evaluated independently
    p = kv.init_params(2, 3, seed=0)
    x = np.random.default_rng(0).normal(size=(1, 2, 2))
    a, c, _ = kv.forward(x, p)
    z = {g: x[0] @ p[f"W_{g}"][:, 3:].T + p[f"b_{g}"] for g in "fuco"}
    sig = {g: 1 / (1 + np.exp(-z[g])) for g in "fuo"}
    cand = z["c"] / (1 + np.abs(z["c"])) if variant.name == "lstm_softsign" else np.tanh(z["c"])
    c1 = sig["u"] * cand
    out = np.tanh(c1) if variant.name == "lstm_softsign" else c1
    np.testing.assert_allclose(c[0], c1, rtol=1e-12)
    np.testing.assert_allclose(a[0], sig["o"] * out, rtol=1e-12)


def test_check_problems_cover_edges():
    Ts, Bs, modes = {p[0] for p in DEFAULT_PROBLEMS}, {p[1] for p in DEFAULT_PROBLEMS}, {p[4] for p in DEFAULT_PROBLEMS}
    assert 1 in Ts and max(Ts) > 1 and 1 in Bs and max(Bs) > 1
    assert modes == {"many-to-many", "many-to-one"}
    assert {p[5] for p in DEFAULT_PROBLEMS} == {True, False}


def test_gradient_check_is_not_vacuous(k, tmp_path):
    """A module with one sign flipped in backward fails the same check."""
    src = (generated_dir() / "lstm.py").read_text(encoding="utf-8")
    broken = src.replace("np.multiply(Gamma_f, delta_c, out=dc_next)", "np.multiply(Gamma_f, -delta_c, out=dc_next)", 1)
    assert broken != src
    (tmp_path / "lstm.py").write_text(broken, encoding="utf-8")
    rows = check_module(load("lstm", tmp_path), seed=0)
    bad = {r.key for r in rows if not r.ok}
    assert "c0" in bad and "W_f" in bad


def test_relative_error_floors_zero_gradients():
    assert relative_error(np.zeros(3), np.zeros(3)) == 0.0
    assert relative_error(np.array([1e-20, 1.0]), np.array([0.0, 1.0])) < 1e-12
    assert relative_error(np.array([2.0]), np.array([1.0])) == pytest.approx(1 / 3)


def test_numeric_gradient_of_a_known_function():
    x = np.array([0.3, -1.2])
    g = numeric_gradient(lambda: float(np.sum(np.sin(x))), x)
    assert np.allclose(g, np.cos(x), rtol=1e-10, atol=0)


@pytest.mark.parametrize("mode", ["many-to-many", "many-to-one"])
def test_float32_agrees_with_float64_and_keeps_dtype(k, mode):
    p64, x64, a064, c064, y64 = _problem(k, T=6, B=4, n_x=3, n_a=5)
    cast = {name: v.astype(np.float32) for name, v in p64.items()}
    a32, c32, cache32 = k.forward(x64.astype(np.float32), cast, a064.astype(np.float32), c064.astype(np.float32))
    a64, c64, cache64 = k.forward(x64, p64, a064, c064)
    assert a32.dtype == c32.dtype == np.float32
    np.testing.assert_allclose(a32, a64, atol=1e-5, rtol=0)
    np.testing.assert_allclose(c32, c64, atol=1e-5, rtol=0)
    y = y64 if mode == "many-to-many" else y64[-1]
    E32, da32 = k.mse_loss(a32, y.astype(np.float32), mode)
    E64, da64 = k.mse_loss(a64, y, mode)
    assert da32.dtype == np.float32
    assert E32 == pytest.approx(E64, rel=1e-5)
    g32, g64 = k.backward(da32, cache32), k.backward(da64, cache64)
    for key in g64:
        assert g32[key].dtype == np.float32, key
        scale = max(1.0, float(np.max(np.abs(g64[key]))))
        np.testing.assert_allclose(g32[key], g64[key], atol=2e-5 * scale, rtol=0, err_msg=key)


def test_split_sequence_equals_whole(k):
    p, x, a0, c0, _ = _problem(k, T=7, B=2)
    a, c, _ = k.forward(x, p, a0, c0)
    a1, c1, _ = k.forward(x[:3], p, a0, c0)
    a2, c2, _ = k.forward(x[3:], p, a1[-1].copy(), c1[-1].copy())
    np.testing.assert_allclose(np.concatenate([a1, a2]), a, rtol=0, atol=1e-14)
    np.testing.assert_allclose(np.concatenate([c1, c2]), c, rtol=0, atol=1e-14)


def test_split_backward_chains_through_initial_state(k):
    """backward's a0/c0 gradients are exactly what the previous segment needs as da/dc at its last step."""
    p, x, a0, c0, y = _problem(k, T=6, B=2)
    a, _c, cache = k.forward(x, p, a0, c0)
    _, da = k.mse_loss(a, y)
    whole = k.backward(da, cache)
    a1, c1, cache1 = k.forward(x[:2], p, a0, c0)
    _a2, _c2, cache2 = k.forward(x[2:], p, a1[-1].copy(), c1[-1].copy())
    g2 = k.backward(da[2:], cache2)
    da1, dc1 = da[:2].copy(), np.zeros_like(a1)
    da1[-1] += g2["a0"]
    dc1[-1] += g2["c0"]
    g1 = k.backward(da1, cache1, dc=dc1)
    for key in KEYS:
        np.testing.assert_allclose(g1[key] + g2[key], whole[key], rtol=1e-12, atol=1e-14, err_msg=key)
    np.testing.assert_allclose(np.concatenate([g1["x"], g2["x"]]), whole["x"], rtol=1e-12, atol=1e-14)


def test_backward_consumes_the_cache_unless_asked_not_to(k):
    p, x, a0, c0, y = _problem(k)
    a, _, cache = k.forward(x, p, a0, c0)
    _, da = k.mse_loss(a, y)
    kept = k.backward(da, cache, keep_cache=True)
    again = k.backward(da, cache)  # the cache was kept: same answer
    for key in kept:
        np.testing.assert_array_equal(kept[key], again[key])
    with pytest.raises(ValueError, match="already used by backward"):
        k.backward(da, cache)


def test_T1_and_B1(k):
    p, x, a0, c0, y = _problem(k, T=1, B=1)
    a, c, cache = k.forward(x, p, a0, c0)
    assert a.shape == (1, 1, 3)
    g = k.backward(k.mse_loss(a, y)[1], cache)
    # T = 1: ∂E/∂c<0> = δc<1>·Γ_f<1> with δc<1> = δa<1>·Γ_o(1 − tanh²c<1>)
    G = 0.5 * np.tanh(0.5 * (p["W_f"] @ np.concatenate([a0[0], x[0, 0]]) + p["b_f"])) + 0.5
    Go = 0.5 * np.tanh(0.5 * (p["W_o"] @ np.concatenate([a0[0], x[0, 0]]) + p["b_o"])) + 0.5
    delta_c = (a[0, 0] - y[0, 0]) * Go * (1 - np.tanh(c[0, 0]) ** 2)
    np.testing.assert_allclose(g["c0"][0], delta_c * G, rtol=1e-12)


def test_default_initial_state_is_zero(k):
    p, x, _, _, _ = _problem(k)
    zeros = np.zeros((x.shape[1], 3))
    a, c, _ = k.forward(x, p)
    a_, c_, _ = k.forward(x, p, zeros, zeros)
    np.testing.assert_array_equal(a, a_)
    np.testing.assert_array_equal(c, c_)


def test_many_to_one_gradient_is_zero_before_T(k):
    p, x, a0, c0, y = _problem(k, T=5)
    a, _, _ = k.forward(x, p, a0, c0)
    E, da = k.mse_loss(a, y[-1], "many-to-one")
    assert np.all(da[:-1] == 0) and np.any(da[-1] != 0)
    assert E == pytest.approx(0.5 * np.sum((a[-1] - y[-1]) ** 2))


def test_cache_holds_only_what_backward_reads(k):
    T, B, n_x, n_a = 10, 4, 6, 5
    p, x, a0, c0, _ = _problem(k, T=T, B=B, n_x=n_x, n_a=n_a)
    _, _, cache = k.forward(x, p, a0, c0)
    per_sequence = sum(v.size for name, v in cache.items() if not name.startswith("_W_"))  # the weights' copies aside
    # [a<t-1>, x<t>], four gate activations, c<t>, tanh(c<t>) per step (+ the two initial states)
    assert per_sequence == (n_x + 7 * n_a) * T * B + 2 * B * n_a


def test_generated_module_imports_only_numpy():
    tree = ast.parse((generated_dir() / "lstm.py").read_text(encoding="utf-8"))
    imported = set()
    for n in ast.walk(tree):
        if isinstance(n, ast.Import):
            imported |= {a.name.split(".")[0] for a in n.names}
        elif isinstance(n, ast.ImportFrom) and n.module != "__future__":
            imported.add((n.module or "").split(".")[0])
    assert imported == {"numpy"}


def test_every_gradient_line_names_its_derivation_step():
    """The first statement computing each δ (and each weight gradient) carries the derivation step."""
    src = (generated_dir() / "lstm.py").read_text(encoding="utf-8")
    body = src[src.index("    for t in range(T - 1, -1, -1):") : src.index("def mse_loss")]
    targets = ["delta_a", "delta_c", "delta_sum_f", "delta_sum_u", "delta_sum_c", "delta_sum_o", "da_next", "dc_next"]
    for name in targets:
        first = next(ln for ln in body.splitlines() if f"out={name})" in ln)
        assert "# " in first, first
        comment = first.split("# ", 1)[1]
        assert "∂" in comment or "δ" in comment, first
    for name in ("np.matmul(_dS2.T, _a_seq", "np.matmul(_dS2.T, x", "_db =", "_dx ="):
        line = next(ln for ln in body.splitlines() if ln.strip().startswith(name))
        assert "# ∂E/∂" in line, line


def test_generated_file_header():
    head = (generated_dir() / "lstm.py").read_text(encoding="utf-8").splitlines()[:4]
    assert head[0].startswith("# Autogenerated by symbolic-lstm") and "do not modify by hand" in head[0]
    # lines 1-2 are fixed text (no user text can make an encoding declaration there); the cell comes third
    assert head[1].startswith("# source hash: ") and head[2].startswith("# cell: lstm")


@pytest.mark.parametrize("cell", ["lstm", "gru", "peephole", "layernorm"])
def test_consumed_buffers_are_reused_and_never_leak_into_results(cell):
    """backward (keep_cache=False) hands the cache's internal buffers to the next forward of that size."""
    km = load(cell)
    km.release_buffers()
    rng = np.random.default_rng(3)
    T, B, n_x, n_a = 5, 3, 2, 4
    p = km.init_params(n_x, n_a, seed=1)
    x, y = rng.normal(size=(T, B, n_x)), rng.normal(size=(T, B, n_a))

    def step(x, p, y=y):
        out = km.forward(x, p)
        cache = out[-1]
        kept = {name: cache[name] for name in ("_gates", *[n for n in cache if n.endswith("_seq")])}
        return km.backward(km.mse_loss(out[0], y)[1], cache), kept

    first, buffers = step(x, p)
    # the next forward takes the consumed gate buffer instead of faulting in fresh pages
    cache = km.forward(x, p)[-1]
    assert np.shares_memory(cache["_gates"], buffers["_gates"])
    km.backward(km.mse_loss(km.forward(x, p)[0], y)[1], cache, keep_cache=True)
    # same inputs through recycled memory: the same gradients, bit for bit
    again, _ = step(x, p)
    for key in first:
        np.testing.assert_array_equal(first[key], again[key], err_msg=key)
    # a cache kept with keep_cache=True is never recycled, whatever runs in between
    out = km.forward(x, p)
    kept_grads = km.backward(km.mse_loss(out[0], y)[1], out[-1], keep_cache=True)
    step(rng.normal(size=(T, B, n_x)), p)
    step(x[:2], p, y[:2])  # another size: fresh buffers, the spare one is dropped
    for key, value in km.backward(km.mse_loss(out[0], y)[1], out[-1]).items():
        np.testing.assert_array_equal(value, kept_grads[key], err_msg=key)
    # a consumed cache still says so, though its buffers moved on
    with pytest.raises(ValueError, match="already used by backward"):
        km.backward(km.mse_loss(out[0], y)[1], out[-1])
    _, last = step(x, p)
    km.release_buffers()  # nothing kept: the next forward allocates afresh
    assert not np.shares_memory(km.forward(x, p)[-1]["_gates"], last["_gates"])


def test_mse_loss_value_is_half_the_squared_gradient(k):
    """E comes from the derived ∂E/∂a (SymPy checked ½(â − a)² = ½(∂E/∂a)²); it equals the direct sum."""
    a = np.random.default_rng(0).normal(size=(4, 3, 5))
    y = np.random.default_rng(1).normal(size=(4, 3, 5))
    E, da = k.mse_loss(a, y)
    assert E == pytest.approx(0.5 * np.sum((y - a) ** 2), rel=1e-14)
    np.testing.assert_array_equal(da, a - y)


def test_lstm_steps_make_few_numpy_calls():
    """The per-step work of the issue's recipe: fused gate blocks, σ through one tanh with its ½ folded into
    W, σ' of the three σ gates in one pass, in-place ufuncs, and one copy each way that regroups a step's
    sums gate by gate (so every ufunc sees contiguous blocks).  A regression here costs every step."""
    tree = ast.parse((generated_dir() / "lstm.py").read_text(encoding="utf-8"))
    counts = {}
    for fn in tree.body:
        if isinstance(fn, ast.FunctionDef) and fn.name in ("forward", "backward"):
            loop = next(n for n in ast.walk(fn) if isinstance(n, ast.For))
            calls = [
                n
                for n in ast.walk(loop)
                if isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and getattr(n.func.value, "id", "") == "np"
            ]
            counts[fn.name] = len(calls) + sum(isinstance(n, ast.AugAssign) for n in ast.walk(loop))
    assert counts == {"forward": 13, "backward": 22}, counts  # forward: one of its two copies runs at t = 1 only
