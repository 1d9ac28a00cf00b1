"""Hard to break: every bad input gets a clear error, extreme values stay finite, long sequences run.

The bad-input matrix has one row per mistake a user can make with the generated module; each row names
the exception type and the words the message must contain (the array, its shape or dtype, what was
expected).  Documented non-errors (T = 0, B = 0, integer targets, ``check_finite=False``) have tests too.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pytest

from symbolic_lstm.check.gradcheck import SATURATED, check_module, relative_error
from symbolic_lstm.codegen.loader import load
from symbolic_lstm.runtime.paths import generated_dir

T, B, N_X, N_A = 5, 4, 2, 3


@pytest.fixture
def d(k):
    """A fresh, valid problem: parameters, inputs, states, targets, and a forward pass."""
    rng = np.random.default_rng(7)
    p = k.init_params(N_X, N_A, seed=3)
    x = rng.normal(size=(T, B, N_X))
    a0, c0 = rng.normal(size=(B, N_A)), rng.normal(size=(B, N_A))
    y = rng.normal(size=(T, B, N_A))
    a, c, cache = k.forward(x, p, a0, c0)
    da = k.mse_loss(a, y)[1]
    return SimpleNamespace(p=p, x=x, a0=a0, c0=c0, y=y, a=a, c=c, cache=cache, da=da)


def _with(p, key, value):
    return {**p, key: value}


def _nan_at(arr):
    out = np.array(arr, copy=True)
    out.flat[0] = np.nan
    return out


def _consumed(k, d):
    k.backward(d.da, d.cache)
    return k.backward(d.da, d.cache)


# (id, call, exception, regex the message must match)
BAD = [
    # x
    (
        "x rank 2",
        lambda k, d: k.forward(d.x[0], d.p),
        ValueError,
        r"x must have shape \(T, B, n_x\), got shape \(4, 2\)",
    ),
    ("x rank 4", lambda k, d: k.forward(d.x[None], d.p), ValueError, r"x must have shape \(T, B, n_x\)"),
    ("x scalar", lambda k, d: k.forward(1.0, d.p), ValueError, r"x must have shape \(T, B, n_x\), got shape \(\)"),
    ("x ragged", lambda k, d: k.forward([[[1.0]], [[1.0, 2.0]]], d.p), ValueError, "x cannot be read as an array"),
    (
        "x n_x disagrees",
        lambda k, d: k.forward(d.x[..., :1], d.p),
        ValueError,
        r"x has n_x = 1 features but p\['W_f'\] \(3, 5\) = \(n_a, n_a \+ n_x\) is for n_x = 2",
    ),
    ("x n_x = 0", lambda k, d: k.forward(d.x[..., :0], d.p), ValueError, r"n_x ≥ 1"),
    ("x integer", lambda k, d: k.forward(d.x.astype(int), d.p), TypeError, "x must be float32 or float64, got int64"),
    ("x complex", lambda k, d: k.forward(d.x + 0j, d.p), TypeError, "x must be float32 or float64, got complex128"),
    ("x bool", lambda k, d: k.forward(d.x > 0, d.p), TypeError, "x must be float32 or float64, got bool"),
    (
        "x object",
        lambda k, d: k.forward(d.x.astype(object), d.p),
        TypeError,
        "x must be float32 or float64, got object",
    ),
    ("x strings", lambda k, d: k.forward(np.full((T, B, N_X), "1"), d.p), TypeError, "x must be float32 or float64"),
    (
        "x float32, p float64",
        lambda k, d: k.forward(d.x.astype(np.float32), d.p),
        TypeError,
        r"x has dtype float32 but the parameters are float64; convert one, e\.g\. x\.astype\(np\.float64\)",
    ),
    (
        "x nan",
        lambda k, d: k.forward(_nan_at(d.x), d.p),
        ValueError,
        r"x holds 1 non-finite value\(s\).*check_finite=False",
    ),
    ("x inf", lambda k, d: k.forward(d.x * np.inf, d.p), ValueError, r"x holds 40 non-finite value\(s\)"),
    # initial states
    (
        "a0 shape",
        lambda k, d: k.forward(d.x, d.p, d.a0[:2]),
        ValueError,
        r"a0 must have shape \(B, n_a\) = \(4, 3\), got \(2, 3\)",
    ),
    (
        "a0 rank 1",
        lambda k, d: k.forward(d.x, d.p, d.a0[0]),
        ValueError,
        r"a0 must have shape \(B, n_a\) = \(4, 3\), got \(3,\)",
    ),
    (
        "c0 shape",
        lambda k, d: k.forward(d.x, d.p, d.a0, d.c0.T),
        ValueError,
        r"c0 must have shape \(B, n_a\) = \(4, 3\), got \(3, 4\)",
    ),
    (
        "a0 float32",
        lambda k, d: k.forward(d.x, d.p, d.a0.astype(np.float32)),
        TypeError,
        "a0 has dtype float32, expected float64 like the parameters",
    ),
    (
        "c0 integer",
        lambda k, d: k.forward(d.x, d.p, c0=d.c0.astype(int)),
        TypeError,
        "c0 must be float32 or float64, got int64",
    ),
    ("c0 nan", lambda k, d: k.forward(d.x, d.p, c0=_nan_at(d.c0)), ValueError, r"c0 holds 1 non-finite value\(s\)"),
    # parameters
    ("p not a dict", lambda k, d: k.forward(d.x, list(d.p.values())), TypeError, "p must be a dict of parameters"),
    (
        "p missing",
        lambda k, d: k.forward(d.x, {kk: v for kk, v in d.p.items() if kk != "b_o"}),
        ValueError,
        r"missing \['b_o'\]",
    ),
    ("p extra", lambda k, d: k.forward(d.x, _with(d.p, "W_y", d.p["W_f"])), ValueError, r"unexpected \['W_y'\]"),
    (
        "W columns",
        lambda k, d: k.forward(d.x, _with(d.p, "W_c", d.p["W_c"][:, :4])),
        ValueError,
        r"p\['W_c'\] must have shape \(n_a, n_a \+ n_x\) = \(3, 5\) \(n_a = 3, n_x = 2\), got \(3, 4\)",
    ),
    (
        "W rows",
        lambda k, d: k.forward(d.x, _with(d.p, "W_o", d.p["W_o"][:2])),
        ValueError,
        r"p\['W_o'\] must have shape",
    ),
    (
        "W rank 1",
        lambda k, d: k.forward(d.x, _with(d.p, "W_f", d.p["W_f"][0])),
        ValueError,
        r"p\['W_f'\] must have shape \(n_a, n_a \+ n_x\) = \(3, 5\) \(n_a = 3, n_x = 2\), got \(5,\)",
    ),
    (
        "b length",
        lambda k, d: k.forward(d.x, _with(d.p, "b_u", d.p["b_u"][:2])),
        ValueError,
        r"p\['b_u'\] must have shape \(n_a,\) = \(3,\) \(n_a = 3, n_x = 2\), got \(2,\)",
    ),
    (
        "b as column",
        lambda k, d: k.forward(d.x, _with(d.p, "b_f", d.p["b_f"][:, None])),
        ValueError,
        r"p\['b_f'\] must have shape \(n_a,\)",
    ),
    (
        "params integer",
        lambda k, d: k.forward(d.x, {kk: v.astype(int) for kk, v in d.p.items()}),
        TypeError,
        r"p\['W_f'\] must be float32 or float64, got int64",
    ),
    (
        "params float16",
        lambda k, d: k.forward(d.x, {kk: v.astype(np.float16) for kk, v in d.p.items()}),
        TypeError,
        r"p\['W_f'\] must be float32 or float64, got float16",
    ),
    (
        "params mixed dtypes",
        lambda k, d: k.forward(d.x, _with(d.p, "W_u", d.p["W_u"].astype(np.float32))),
        TypeError,
        r"p\['W_u'\] has dtype float32 but p\['W_f'\] has float64",
    ),
    (
        "param nan",
        lambda k, d: k.forward(d.x, _with(d.p, "b_c", _nan_at(d.p["b_c"]))),
        ValueError,
        r"p\['b_c'\] holds 1 non-finite",
    ),
    (
        "param inf",
        lambda k, d: k.forward(d.x, _with(d.p, "W_o", -np.inf * d.p["W_o"])),
        ValueError,
        r"p\['W_o'\] holds 15 non-finite",
    ),
    # backward
    (
        "da shape",
        lambda k, d: k.backward(d.da[:2], d.cache),
        ValueError,
        r"da must have shape \(T, B, n_a\) = \(5, 4, 3\).*got \(2, 4, 3\)",
    ),
    (
        "da float32",
        lambda k, d: k.backward(d.da.astype(np.float32), d.cache),
        TypeError,
        r"da has dtype float32 but the forward pass ran in float64",
    ),
    (
        "da integer",
        lambda k, d: k.backward(d.da.astype(int), d.cache),
        TypeError,
        "da must be float32 or float64, got int64",
    ),
    ("da nan", lambda k, d: k.backward(_nan_at(d.da), d.cache), ValueError, r"da holds 1 non-finite"),
    (
        "dc shape",
        lambda k, d: k.backward(d.da, d.cache, dc=d.da[0]),
        ValueError,
        r"dc must have shape \(T, B, n_a\) = \(5, 4, 3\)",
    ),
    (
        "cache not a dict",
        lambda k, d: k.backward(d.da, (d.a, d.c)),
        TypeError,
        "cache must be the dict returned by this module's forward",
    ),
    ("cache incomplete", lambda k, d: k.backward(d.da, {"x": d.x}), TypeError, "cache must be the dict returned"),
    ("cache used twice", _consumed, ValueError, "already used by backward"),
    # loss
    (
        "y shape m2m",
        lambda k, d: k.mse_loss(d.a, d.y[1:]),
        ValueError,
        r"y must have shape \(T, B, n_a\) = \(5, 4, 3\), got \(4, 4, 3\)",
    ),
    (
        "y shape m2o",
        lambda k, d: k.mse_loss(d.a, d.y, "many-to-one"),
        ValueError,
        r"y must have shape \(B, n_a\) = \(4, 3\)",
    ),
    ("y complex", lambda k, d: k.mse_loss(d.a, d.y + 1j), TypeError, "y must hold real numbers, got dtype complex128"),
    ("y nan", lambda k, d: k.mse_loss(d.a, _nan_at(d.y)), ValueError, r"y holds 1 non-finite"),
    ("a rank", lambda k, d: k.mse_loss(d.a[0], d.y[0]), ValueError, r"a must have shape \(T, B, n_a\)"),
    ("a integer", lambda k, d: k.mse_loss(d.a.astype(int), d.y), TypeError, "a must be float32 or float64"),
    (
        "loss mode",
        lambda k, d: k.mse_loss(d.a, d.y, "one-to-many"),
        ValueError,
        "mode must be 'many-to-many' or 'many-to-one'",
    ),
    (
        "many-to-one, T = 0",
        lambda k, d: k.mse_loss(d.a[:0], d.y[0], "many-to-one"),
        ValueError,
        r"sequence is empty \(T = 0\)",
    ),
    # init_params
    ("n_a = 0", lambda k, d: k.init_params(2, 0), ValueError, "n_a must be a positive integer, got 0"),
    ("n_x < 0", lambda k, d: k.init_params(-1, 3), ValueError, "n_x must be a positive integer, got -1"),
    ("n_a float", lambda k, d: k.init_params(2, 2.5), ValueError, "n_a must be a positive integer, got 2.5"),
    ("n_a bool", lambda k, d: k.init_params(2, True), ValueError, "n_a must be a positive integer, got True"),
    (
        "dtype integer",
        lambda k, d: k.init_params(2, 3, dtype=np.int64),
        TypeError,
        "dtype must be float32 or float64, got int64",
    ),
    ("dtype nonsense", lambda k, d: k.init_params(2, 3, dtype="banana"), TypeError, "dtype must be float32 or float64"),
]


@pytest.mark.parametrize(("call", "exc", "pattern"), [row[1:] for row in BAD], ids=[row[0] for row in BAD])
def test_bad_input_matrix(k, d, call, exc, pattern):
    with pytest.raises(exc, match=pattern):
        call(k, d)


def test_bad_input_matrix_ids_are_unique():
    assert len({row[0] for row in BAD}) == len(BAD)


# -- documented non-errors ----------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(("T_", "B_"), [(0, 3), (4, 0), (0, 0)])
def test_empty_sequence_or_batch_is_defined(k, dtype, T_, B_):
    """T = 0 or B = 0: empty outputs, all-zero parameter gradients, no error."""
    p = k.init_params(N_X, N_A, dtype=dtype)
    a, c, cache = k.forward(np.zeros((T_, B_, N_X), dtype), p)
    assert a.shape == c.shape == (T_, B_, N_A) and a.dtype == dtype
    E, da = k.mse_loss(a, np.zeros((T_, B_, N_A)))
    assert E == 0.0 and da.shape == (T_, B_, N_A)
    g = k.backward(da, cache)
    for name, v in p.items():
        assert g[name].shape == v.shape and g[name].dtype == dtype and not g[name].any()
    assert g["x"].shape == (T_, B_, N_X) and g["a0"].shape == g["c0"].shape == (B_, N_A)


def test_empty_sequence_passes_the_initial_state_gradient_through(k, d):
    """With T = 0 nothing depends on a<0>, c<0>: their gradients are zero, whatever they are."""
    a, _, cache = k.forward(d.x[:0], d.p, d.a0, d.c0)
    g = k.backward(np.zeros_like(a), cache)
    assert not g["a0"].any() and not g["c0"].any()


def test_integer_targets_are_accepted(k, d):
    labels = (d.y > 0).astype(np.int64)
    assert k.mse_loss(d.a, labels)[0] == pytest.approx(k.mse_loss(d.a, labels.astype(float))[0])


def test_check_finite_false_skips_the_pass(k, d):
    """Skipping the check is allowed: nan then flows through instead of raising."""
    x = _nan_at(d.x)
    a, _, cache = k.forward(x, d.p, check_finite=False)
    assert np.isnan(a[:, 0]).all() and np.isfinite(a[:, 1:]).all()
    da = np.full_like(a, np.nan)
    g = k.backward(da, cache, check_finite=False)
    assert np.isnan(g["W_f"]).all()
    assert np.isnan(k.mse_loss(d.a, _nan_at(d.y), check_finite=False)[0])


def test_inputs_are_not_modified(k, d):
    before = {name: v.copy() for name, v in d.p.items()}, d.x.copy(), d.a0.copy(), d.c0.copy(), d.y.copy()
    a, _, cache = k.forward(d.x, d.p, d.a0, d.c0)
    _E, da = k.mse_loss(a, d.y)
    da_copy = da.copy()
    k.backward(da, cache)
    assert all(np.array_equal(before[0][n], d.p[n]) for n in d.p)
    for old, new in zip(before[1:], (d.x, d.a0, d.c0, d.y), strict=True):
        assert np.array_equal(old, new)
    assert np.array_equal(da, da_copy)


def test_non_contiguous_and_list_inputs_give_the_same_answer(k, d):
    ref = k.forward(d.x, d.p, d.a0, d.c0)[0]
    xf = np.asfortranarray(d.x)
    strided = np.empty((T, B, 2 * N_X))[..., ::2]
    strided[...] = d.x
    p_lists = {name: v.tolist() for name, v in d.p.items()}
    for x, p in ((xf, d.p), (strided, d.p), (d.x.tolist(), p_lists)):
        assert np.array_equal(k.forward(x, p, d.a0, d.c0)[0], ref)


# -- numerics -----------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_pre_activations_raise_no_warnings_and_stay_finite(k, dtype):
    """|sum| up to 1e4: sigmoid via ½tanh(x/2)+½ and tanh never overflow; gradients stay finite."""
    rng = np.random.default_rng(0)
    p = {name: (1e3 * np.sign(v)).astype(dtype) for name, v in k.init_params(N_X, N_A, seed=1).items()}
    x = (rng.choice([-1.0, 1.0], size=(T, B, N_X)) * 4).astype(dtype)
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        a, _c, cache = k.forward(x, p)
        assert np.abs(cache["_gates"]).max() <= 1  # σ in [0, 1], tanh in [−1, 1]: no inf / nan anywhere
        E, da = k.mse_loss(a, np.zeros_like(a))
        g = k.backward(da, cache)
    sums = np.einsum("tbi,gi->tbg", x, p["W_f"][:, N_A:])
    assert np.abs(sums).max() >= 1e3
    assert all(np.isfinite(v).all() for v in g.values()) and np.isfinite(E)


def test_long_sequence_runs_with_memory_linear_in_T(k):
    """T = 10 000, B = 1: a loop, not recursion; the cache holds (n_x + 7 n_a)·T·B numbers (+ one step)."""
    n_x, n_a, T_ = 3, 8, 10_000
    p = k.init_params(n_x, n_a, seed=0)
    x = np.random.default_rng(0).normal(size=(T_, 1, n_x))
    a, _c, cache = k.forward(x, p)
    numbers = sum(v.size for name, v in cache.items() if not name.startswith("_W_"))  # the weights' copies aside
    assert numbers == (n_x + 7 * n_a) * T_ + 2 * n_a  # a<0>, c<0> ride along
    g = k.backward(k.mse_loss(a, np.zeros_like(a[0]), "many-to-one")[1], cache)
    assert all(np.isfinite(v).all() for v in g.values())
    # The last input reaches the loss; the first one's influence has long decayed but is computed.
    assert np.abs(g["x"][-1]).max() > 0


def test_saturated_gates_pass_the_stated_looser_tolerance(k):
    for seed in range(3):
        rows = check_module(k, seed=seed, regime=SATURATED)
        assert all(r.ok for r in rows), [(r.key, r.max_rel_error, r.judged) for r in rows if not r.ok]
    # Saturation is real: at 20x the initial scale a third or more of the σ gates are within 1e-3 of 0 or 1
    rng = np.random.default_rng(0)
    p = {name: SATURATED.weight_scale * v for name, v in k.init_params(3, 8, seed=0).items()}
    z = np.concatenate([0.5 * rng.normal(size=(64, 8)), rng.normal(size=(64, 3))], axis=1)
    gates = np.concatenate([1 / (1 + np.exp(-(z @ p[f"W_{g}"].T + p[f"b_{g}"]))) for g in "fuo"])
    assert np.mean(np.minimum(gates, 1 - gates) < 1e-3) > 0.3


def test_saturated_check_still_catches_a_wrong_gradient(tmp_path):
    src = (generated_dir() / "lstm.py").read_text(encoding="utf-8")
    broken = src.replace("delta_sum_o *= _tanh_c", "delta_sum_o *= 0.999 * _tanh_c", 1)
    assert broken != src
    (tmp_path / "lstm.py").write_text(broken, encoding="utf-8")
    rows = check_module(load("lstm", tmp_path), seed=0, regime=SATURATED)
    assert {r.key for r in rows if not r.ok} >= {"W_o", "b_o"}


def test_absolute_allowance_only_discounts_round_off():
    assert relative_error(np.array([1e-12]), np.array([0.0]), atol=1e-9) == 0.0
    assert relative_error(np.array([1.0]), np.array([1.1]), atol=1e-9) == pytest.approx(0.1 / 2.1, rel=1e-6)
