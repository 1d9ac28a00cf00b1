"""The in-place printer: ufunc statements with out= compute exactly what the expression says."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symbolic_lstm.codegen.backends.numpy.inplace import (
    SIGMOID_INNER,
    InplaceError,
    inplace,
    scratch_needed,
    sigmoid_of_scaled,
)
from symbolic_lstm.engine.functions import sigmoid, softsign

NAMES = "Gamma_f Gamma_u Gamma_o c_tilde c c_prev delta_a delta_c tanh_c dc_next a y n"
SYMS = sp.symbols(NAMES)
Gf, Gu, Go, ct, c, cp, da, dc, tc, dcn, a, y, n = SYMS

CASES = [
    Gf * cp + Gu * ct,
    Go * da * (1 - tc**2) + dcn,
    Go * da * tc * (1 - Go),
    Gu * dc * (1 - ct**2),
    sp.tanh(c),
    sigmoid(a),
    sigmoid(a + 2 * y),
    Gu * dc / (sp.Abs(a) + 1) ** 2,
    y - a,
    -a,
    3 * a,
    a,
    1 / (1 + sp.Abs(a)),
    2 * sp.exp(-a) - a * y / 2,
    softsign(a) * y,
    (a - y) ** 3 + sp.Rational(1, 3),
    sp.sinh(a) + y,  # unknown to the lowering: falls back to the printed expression
    # issue 36: a power under a fraction bar (the kernel printer wrote a/n**2 as a/n*n)
    a / n**2,
    -a * c / n**2,
    (a + c) ** 2 / n**2,
    1 / n**2,
    sp.atan(a / n**2) + y,  # the same forms inside a fallback to the printed expression
    sp.Piecewise((-a * c / n**2, a > 0), ((a + c) ** 2 / n**2, True)),
]


def _reference(e):
    e = e.replace(sigmoid, lambda z: 1 / (1 + sp.exp(-z))).replace(softsign, lambda z: z / (1 + sp.Abs(z)))
    return sp.lambdify(SYMS, e, "numpy")


@pytest.mark.parametrize("expr", CASES, ids=[str(e) for e in CASES])
def test_inplace_matches_expression(expr):
    rng = np.random.default_rng(0)
    env = {s.name: rng.normal(size=(3, 4)) for s in SYMS}
    scratch = [f"tmp{i}" for i in range(4)]
    code = inplace(expr, "out", scratch)
    assert scratch_needed(expr) <= len(scratch)
    ns = {"np": np, **{k: v.copy() for k, v in env.items()}, "out": np.empty((3, 4))}
    ns.update({s: np.empty((3, 4)) for s in scratch})
    exec("\n".join(code), ns)
    want = _reference(expr)(*(env[s.name] for s in SYMS))
    np.testing.assert_allclose(ns["out"], want, rtol=1e-12, atol=1e-14)
    for k, v in env.items():  # inputs untouched
        np.testing.assert_array_equal(ns[k], v)


def test_in_place_activation_of_its_own_buffer():
    code = inplace(sigmoid(sp.Symbol("S")), "S", [])
    S = np.array([-1e4, -3.0, 0.0, 2.0, 1e4], dtype=np.float32)
    ns = {"np": np, "S": S}
    with np.errstate(all="raise"):
        exec("\n".join(code), ns)
    expected = [0.0, 1 / (1 + np.exp(3.0)), 0.5, 1 / (1 + np.exp(-2.0)), 1.0]
    np.testing.assert_allclose(S, expected, atol=1e-7)


@pytest.mark.parametrize("f", [sigmoid, sp.tanh, softsign, sp.Abs])
def test_activation_in_place_reads_its_argument_before_overwriting(f):
    """``S = f(S)`` (how the kernels activate a block of gate columns) equals f of the old S."""
    x = np.array([-3.0, -0.4, 0.0, 0.7, 2.5])
    S = x.copy()
    exec("\n".join(inplace(f(sp.Symbol("S")), "S", ["tmp0"])), {"np": np, "S": S, "tmp0": np.empty_like(S)})
    np.testing.assert_allclose(S, _reference(f(a))(*[x if s == a else 0 for s in SYMS]), rtol=1e-12)


def test_reading_the_destination_is_refused():
    with pytest.raises(InplaceError, match="reads its destination"):
        inplace(a * y + a, "a", ["tmp0"])


def test_sigmoid_of_scaled_is_sigmoid_when_the_argument_carries_the_inner_factor():
    """Kernels fold σ's inner ½ into W and b; what they then apply must still be σ (checked symbolically)."""
    x = sp.Symbol("x", real=True)
    assert sigmoid_of_scaled("v") == ["np.tanh(v, out=v)", "v *= 0.5", "v += 0.5"]
    applied = sp.tanh(sp.nsimplify(SIGMOID_INNER) * x) / 2 + sp.Rational(1, 2)
    assert sp.simplify((applied - sigmoid(x)).rewrite(sp.exp)) == 0
