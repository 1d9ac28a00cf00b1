"""The judge shares nothing with what it judges: the numeric reference (``reference``, ``complex_step``) imports no
printer and no code generator, prints nothing at run time, and its node derivatives are the kernels' gradients.

Its correctness on the cell language itself is shown by the property test beside the printers'
(``test_printers.py``: the evaluator against SymPy's ``evalf``) and its complex step against SymPy's ``diff``
(below, over the same random expression trees).
"""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_layout import _imports

from symbolic_lstm import functions, get_cell
from symbolic_lstm.complex_step import ComplexStep
from symbolic_lstm.reference import JudgeError, compile_expression

PAPERS = "tests/cells/papers.py"
#: What the judge may import from the package: the cell definition language and itself.
JUDGE_MAY_IMPORT = {
    "symbolic_lstm.reference",
    "symbolic_lstm.complex_step",
    "symbolic_lstm.cell",
    "symbolic_lstm.functions",
    "symbolic_lstm.notation",
}


def _closure(module: str) -> set[str]:
    edges, seen, todo = _imports(), set(), [module]
    while todo:
        m = todo.pop()
        if m not in seen:
            seen.add(m)
            todo += edges.get(m, ())
    return seen


@pytest.mark.parametrize("module", ["symbolic_lstm.reference", "symbolic_lstm.complex_step"])
def test_the_judge_imports_no_printer_and_no_code_generator(module):
    found = _closure(module)
    assert found <= JUDGE_MAY_IMPORT, f"{module} reaches {sorted(found - JUDGE_MAY_IMPORT)}"
    assert not any("printer" in m or "codegen" in m or "emit" in m for m in found)


def _problem(cell, seed=0, T=3, B=2, n_x=3, n_a=4):
    rng = np.random.default_rng(seed)
    shapes = cell.param_shapes(n_x, n_a)
    arrays = {k: rng.uniform(-0.8, 0.8, size=s) for k, s in shapes.items()}
    arrays[cell.inputs[0]] = rng.normal(size=(T, B, n_x))
    arrays |= {f"{s}0": 0.5 * rng.normal(size=(B, n_a)) for s in cell.states}
    return arrays, rng.normal(size=(T, B, n_a))


@pytest.mark.parametrize("name", ["lstm", "layernorm", f"{PAPERS}:hard", f"{PAPERS}:piecewise_float", f"{PAPERS}:sru"])
def test_the_judge_prints_nothing_at_all(name, monkeypatch):
    """With every SymPy printer, lambdify and the package's own print hooks poisoned, the judge builds and runs and
    gives the very numbers it gives unpoisoned: no printed text stands between a cell and its reference values."""
    cell = get_cell(name)
    arrays, y = _problem(cell)
    want = ComplexStep(cell).gradients(arrays, y, "many-to-many", {})

    def poisoned(*a, **k):
        raise AssertionError("the judge printed something")

    monkeypatch.setattr(sp.printing.printer.Printer, "_print", poisoned)
    monkeypatch.setattr(sp.printing.printer.Printer, "doprint", poisoned)
    monkeypatch.setattr(sp, "lambdify", poisoned)
    for f in (functions.sigmoid, functions.softsign, functions.rsqrt):
        monkeypatch.setattr(f, "_numpycode", poisoned, raising=False)
    got = ComplexStep(cell).gradients(arrays, y, "many-to-many", {})
    for key in want:
        np.testing.assert_array_equal(got[key], want[key], err_msg=key)


def test_node_derivatives_are_the_gradients_at_the_leaves(k, lstm):
    """δa<0> through step 1 is ∂E/∂a0 and δx<t> is ∂E/∂x<t>: the judge's δ of every node at every step agrees with
    the kernels where the kernels expose one (and so with the chain rule)."""
    arrays, y = _problem(lstm, T=4)
    p = {n: arrays[n] for n in lstm.params}
    out = k.forward(arrays["x"], p, a0=arrays["a0"], c0=arrays["c0"])
    grads = k.backward(k.mse_loss(out[0], y)[1], out[-1])
    deltas = ComplexStep(lstm).node_gradients(arrays, y, "many-to-many", {})
    np.testing.assert_allclose(deltas[0]["a_prev"], grads["a0"], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(deltas[0]["c_prev"], grads["c0"], rtol=1e-10, atol=1e-13)
    for t, env in enumerate(deltas):
        np.testing.assert_allclose(env["x"], grads["x"][t], rtol=1e-10, atol=1e-13)
    # δa<t> at the last step is the loss's own branch only: a − y
    a_T = out[0][-1]
    np.testing.assert_allclose(deltas[-1]["a"], a_T - y[-1], rtol=1e-12)


def test_the_judge_refuses_what_is_not_in_the_cell_language():
    u = sp.Symbol("u")
    with pytest.raises(JudgeError, match="UnitSum"):
        compile_expression(functions.UnitSum(u))
    with pytest.raises(JudgeError, match="not a finite real"):
        compile_expression(u + sp.I)


class bump(sp.Function):  # noqa: N801 - a user's own function, with its own NumPy printing
    nargs = 1

    def fdiff(self, argindex=1):
        return 2 * self.args[0] * sp.exp(-(self.args[0] ** 2)) * -1

    def _numpycode(self, printer):
        return f"np.exp(-({printer._print(self.args[0])})**2)"


def test_a_users_own_function_is_evaluated_by_sympys_lambdify():
    u = sp.Symbol("u")
    f = compile_expression(1 + bump(u) * u)
    z = np.array([0.3, -1.2])
    np.testing.assert_allclose(f({"u": z}), 1 + np.exp(-(z**2)) * z, rtol=1e-15)
    h = 1e-20
    np.testing.assert_allclose(f({"u": z + 1j * h}).imag / h, np.exp(-(z**2)) * (1 - 2 * z**2), rtol=1e-14)


# -- the complex step of the evaluator is SymPy's derivative ---------------------------------------------------

U = sp.symbols("u0:3")


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_the_complex_step_of_random_expressions_is_sympys_derivative(data):
    from strategies import expressions, kink_arguments_far

    expr = data.draw(expressions(U, safe=True))
    if not expr.free_symbols:
        return
    wrt = data.draw(st.sampled_from(sorted(expr.free_symbols, key=str)))
    rng = np.random.default_rng(data.draw(st.integers(0, 2**16)))
    points = {s.name: rng.uniform(-1.5, 1.5, size=8) for s in U}
    f = compile_expression(expr)
    h = 1e-20
    with np.errstate(all="ignore"):
        stepped = np.asarray(f({**points, wrt.name: points[wrt.name] + 1j * h}), dtype=np.complex128)
    got = np.broadcast_to(stepped.imag / h, (8,))
    d = functions.diff_real(expr, wrt)
    for i in range(8):
        at = {s: sp.Float(points[s.name][i], 30) for s in U}
        if not kink_arguments_far(expr, at):
            continue
        exact = complex(d.evalf(30, subs=at))
        if not np.isfinite(exact.real) or abs(exact.imag) > 1e-20:
            continue
        scale = max(abs(exact.real), 1e-3)
        assert abs(got[i] - exact.real) <= 1e-9 * scale, (expr, wrt, at, got[i], exact)
