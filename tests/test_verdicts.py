"""Verdicts are never wrong in either direction: no ✗ for a correct cell, no ✓ for a wrong gradient.

* ``prove`` is exact for any constant SymPy accepts: floats become the exact rationals of their doubles, roots
  an independent indeterminate per base, and it still catches a wrong local partial in such a cell;
* ``check`` compares with the complex-step derivative of the cell: cells generated at random (hypothesis
  strategies over ``CellBuilder``) all pass, and agree with torch autograd to 1e-10 where torch is installed;
  every single gradient entry changed by a relative 1e-6 fails (above the stated round-off floor);
* a cell file that exits while loading is an error naming the file (exit 2), never a silent success.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symbolic_lstm import CellBuilder, get_cell, load, sigmoid, softsign
from symbolic_lstm.check.gradcheck import FLOOR, NORMAL, SATURATED, check_module, comparisons, relative_error
from symbolic_lstm.cli import main
from symbolic_lstm.codegen.pipeline import generate
from symbolic_lstm.engine.functions import rsqrt
from symbolic_lstm.engine.notation import Partial
from symbolic_lstm.proof import obligations as proof

PAPERS = Path(__file__).parent / "cells" / "papers.py"
FLOAT_CELLS = ["half_tanh", "leaky_max", "sqrt_unit", "softplus_beta", "piecewise_float", "float_power"]


def spec(name: str) -> str:
    return f"{PAPERS}:{name}"


# -- prove: floats and roots ----------------------------------------------------------------------------


@pytest.mark.parametrize("name", [*FLOAT_CELLS, "mi_rnn_biased"])
def test_prove_is_exact_for_float_constants_and_roots(name):
    cell = get_cell(spec(name))
    T = 2 if name == "piecewise_float" else 3  # nested Piecewise grows fast with T
    lines = proof.prove(cell, n_a=1, n_x=1, T=T, points=2, workers=2)
    assert lines and all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


def test_prove_cli_passes_a_float_cell_at_two_units():
    r = CliRunner().invoke(main, ["prove", "--cell", spec("leaky_max"), "--n-a", "2", "-T", "2", "-j", "2"])
    assert r.exit_code == 0, r.output
    assert "all gradients equal direct differentiation" in r.output


def test_floats_become_the_exact_value_of_their_double():
    cell = proof.exact_constants(get_cell(spec("leaky_max")))
    (rational,) = [n for n in cell.stage("a").expr.atoms(sp.Number) if n != 1]
    assert rational == sp.Rational(5764607523034235, 2**59) and float(rational) == 0.01
    assert not cell.stage("a").expr.atoms(sp.Float)
    assert not proof.exact_constants(get_cell(spec("piecewise_float"))).stage("a").expr.atoms(sp.Float)


def test_roots_are_one_indeterminate_per_base():
    """b^(p/q) is r^(pL/q) for one r per base: powers of one root agree, a wrong factor does not."""
    s = sp.Symbol("s")
    u = 1 + s**2
    exprs = [sp.sqrt(u), u ** sp.Rational(-3, 2), u ** sp.Rational(1, 3)]
    atoms = proof.indeterminates(exprs)
    point = proof.random_point(atoms, __import__("random").Random(1))
    assert set(point.roots) == {u} and point.roots[u][1] == 6  # L = lcm(2, 2, 3)
    assert point.at(sp.sqrt(u) ** 3 * u ** sp.Rational(-3, 2)) == 1
    assert point.at(s / sp.sqrt(u) - s * sp.sqrt(u) / u) == 0
    assert point.at(sp.sqrt(u)).is_Rational and point.at(2 * sp.sqrt(u)) != point.at(sp.sqrt(u))
    assert proof.polynomial_zero(sp.sqrt(u) * u - u ** sp.Rational(3, 2))
    assert not proof.polynomial_zero(sp.sqrt(u) - u ** sp.Rational(1, 3))
    # a float exponent: 0.3 is p/2^54, far too fine for one root; its class modulo 1 gets one value instead
    e = sp.Rational(0.3)
    point = proof.random_point(proof.indeterminates([u**e, s]), __import__("random").Random(2))
    assert not point.roots and len(point.classes) == 1
    assert point.at(u**e / u - u ** (e - 1)) == 0 and point.at(u**e) != point.at(u ** (e - 1))
    assert proof.polynomial_zero(sp.diff(u**e, s) - e * 2 * s * u ** (e - 1))


def test_prove_catches_a_wrong_partial_in_a_root_cell(monkeypatch):
    cell = get_cell(spec("sqrt_unit"))
    real = proof.derive

    def tampered(c):
        d = real(c)
        p = Partial(sp.Symbol("a"), sp.Symbol("s"))
        d.partials[p] = d.partials[p] * sp.sqrt(1 + sp.Symbol("s") ** 2)  # off by a root factor
        return d

    monkeypatch.setattr(proof, "derive", tampered)
    lines = proof.prove(cell, n_a=1, n_x=1, T=2, modes=("many-to-many",), workers=1)
    assert {"W", "b", "x", "a0"} <= {ln.gradient for ln in lines if not ln.ok}


# -- check: the multiplicative-integration RNN, float cells ----------------------------------------------


@pytest.mark.parametrize("name", ["mi_rnn_biased", *FLOAT_CELLS])
def test_check_passes_correct_paper_cells(name, tmp_path):
    r = CliRunner().invoke(main, ["check", "--cell", spec(name)], env={"XDG_CACHE_HOME": str(tmp_path)})
    assert r.exit_code == 0, r.output
    assert "FAILED" not in r.output and "gradients within 1e-07 of the complex-step reference" in r.output


@pytest.mark.parametrize("seed", range(4))
def test_mi_rnn_passes_check_at_every_seed(seed, mi_rnn_biased):
    k, cell = mi_rnn_biased
    for regime in (NORMAL, SATURATED):
        report = check_module(k, seed=seed, regime=regime, cell=cell)
        assert report.ok, str(report)


@pytest.fixture(scope="module")
def mi_rnn_biased(tmp_path_factory):
    cell = get_cell(spec("mi_rnn_biased"))
    out = tmp_path_factory.mktemp("mi")
    generate([cell], out)
    return load("mi_rnn_biased", out), cell


# -- check: a wrong gradient always fails ----------------------------------------------------------------


def _caught(c, key: str, i: int, tol: float) -> bool:
    g = c.grads[key].copy()
    g.reshape(-1)[i] *= 1 + 1e-6
    return relative_error(g, c.reference[key], c.allowance) > tol


@pytest.mark.parametrize("name", ["lstm", "gru", "peephole", "layernorm", "rnn"])
def test_every_single_entry_off_by_a_relative_1e_minus_6_fails(name):
    """Through the very comparison check_module makes: each entry of each gradient of each problem, changed
    alone by a relative 1e-6, fails — every entry above 1e-7 of its gradient's largest (below that, the
    change is under float64 round-off of the sums that make the gradient: 1e-13 of the largest, and no
    check can see it; the floor is stated in gradcheck's docstring)."""
    k = load(name)
    seen = total = 0
    for c in comparisons(k, seed=0):
        assert c.reference is not None
        for key, g in c.grads.items():
            scale = float(np.max(np.abs(c.reference[key])))
            total += g.size - np.count_nonzero((g == 0) & (c.reference[key] == 0))  # the padding of a padded batch
            for i, v in enumerate(g.reshape(-1)):
                if abs(v) > 0.1 * FLOOR * scale:
                    seen += 1
                    assert _caught(c, key, i, NORMAL.tol), (key, c.problem, i, v, scale)
    assert seen >= 0.97 * total > 200  # the floor leaves out only entries that are (almost) exactly zero


def test_a_perturbed_module_fails_check_end_to_end(k):
    """A wrapper whose backward is off in one entry of one gradient, by a relative 1e-6."""

    class OffByOne:
        def __init__(self, key):
            self.key = key

        def __getattr__(self, name):
            return getattr(k, name)

        def backward(self, *a, **kw):
            g = k.backward(*a, **kw)
            arr = g[self.key]
            arr.reshape(-1)[np.argmax(np.abs(arr))] *= 1 + 1e-6
            return g

    for key in ("W_f", "b_o", "x", "c0"):
        report = check_module(OffByOne(key), seed=0)
        assert not report.ok and {r.key for r in report if not r.ok} == {key}


def test_a_wrong_forward_fails_even_where_its_backward_agrees_with_it(k):
    class Shifted:
        def __getattr__(self, name):
            return getattr(k, name)

        def forward(self, x, p, **init):
            a, c, cache = k.forward(x, p, **init)
            return a, c * (1 + 1e-8), cache

    report = check_module(Shifted(), seed=0)
    assert not report.forward_ok and not report.ok and "forward" in report.verdict()


# -- check and torch: random cells -----------------------------------------------------------------------

ACTIVATIONS = {
    "sigmoid": sigmoid,
    "tanh": sp.tanh,
    "softsign": softsign,
    "identity": lambda e: e,
    "relu": lambda e: sp.Max(0, e),
    "leaky": lambda e: sp.Max(0.01 * e, e),
    "scaled_tanh": lambda e: sp.tanh(0.5 * e),
}
_examples = itertools.count()


@st.composite
def random_cells(draw):
    """A valid cell: 1–3 linear stages over random operand lists, activations, products and sums of gates,
    optionally a unit parameter, a normalisation (mean stages) and a second state."""
    two = draw(st.booleans())
    states = ("a", "c") if two else ("a",)
    b = CellBuilder("random_cell", inputs=("x",), states=states, output="a")
    leaves = ["x", *(f"{s}_prev" for s in states)]
    gates = []
    for i in range(draw(st.integers(1, 3))):
        ops = draw(st.lists(st.sampled_from(leaves), min_size=1, max_size=len(leaves), unique=True))
        if i == 0 and "x" not in ops:
            ops = ["x", *ops]
        s = b.linear(f"s{i}", ops, weight=f"W{i}", bias=draw(st.sampled_from([f"b{i}", None])))
        act = ACTIVATIONS[draw(st.sampled_from(sorted(ACTIVATIONS)))]
        gates.append(b.stage(f"g{i}", act(s)))
    if draw(st.booleans()):  # layer normalisation of the first gate
        mu = b.mean("mu", gates[0])
        var = b.mean("var", (gates[0] - mu) ** 2)
        gates[0] = b.stage("n0", (gates[0] - mu) * rsqrt(var + sp.Rational(1, 100)))
    a_prev = b.prev("a")
    recur = a_prev * b.vector("v") if draw(st.booleans()) else a_prev
    order = draw(st.permutations(range(len(gates))))
    g = gates[order[0]]
    h = sp.Add(*(gates[i] for i in order[1:])) if len(gates) > 1 else g  # every stage is read
    form = draw(st.sampled_from(["interpolate", "sum", "product"]))
    new = {
        "interpolate": sigmoid(g) * recur + (1 - sigmoid(g)) * h,
        "sum": sp.tanh(g + h / 2 + recur),
        "product": g * h + recur / 2,
    }[form]
    if two:
        c = b.stage("c", sigmoid(h) * b.prev("c") + new)
        b.stage("a", sp.tanh(c) * sigmoid(g))
    else:
        b.stage("a", new)
    return b.build()


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cell=random_cells())
def test_random_cells_pass_check_and_agree_with_torch(cell, tmp_path):
    out = tmp_path / f"example_{next(_examples)}"
    generate([cell], out)
    k = load(cell.name, out)
    report = check_module(k, seed=0, cell=cell)
    assert report.ok, f"{[(st.name, getattr(st, 'expr', None)) for st in cell.stages]}\n{report}"
    try:
        import torch  # noqa: F401
    except ImportError:
        return
    _agrees_with_torch(cell, k)


@pytest.mark.slow  # a symbolic proof per example: with the slow tests
@settings(max_examples=10, deadline=None)
@given(cell=random_cells())
def test_random_cells_prove(cell):
    """prove passes every cell check passes: the same generated cells, proved at n_a = 1, T = 2."""
    lines = proof.prove(cell, n_a=1, n_x=1, T=2, points=2, workers=2)
    assert lines and all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


def _agrees_with_torch(cell, k, T=4, B=3, n_x=3, n_a=5):
    """Torch autograd on the cell's own stages (SymPy's torch printer, :mod:`autodiff`), the same weights: 1e-10."""
    from autodiff import assert_agrees, torch_reference

    rng = np.random.default_rng(7)
    p = {n: 2 * v for n, v in k.init_params(n_x, n_a, seed=3).items()}
    for name in getattr(k, "UNIT_PARAMS", ()):
        p[name] = p[name] + rng.uniform(-0.5, 0.5, size=n_a)
    x = rng.normal(size=(T, B, n_x))
    init = {f"{s}0": 0.5 * rng.normal(size=(B, n_a)) for s in k.STATES}
    y = rng.normal(size=(T, B, n_a))
    out = k.forward(x, p, **init)
    ours = k.backward(k.mse_loss(out[0], y)[1], out[-1])
    assert_agrees(ours, torch_reference(cell, p, x, init, y)[1])


# -- no silent success -----------------------------------------------------------------------------------


@pytest.mark.parametrize("command", ["prove", "check", "generate", "train", "derive", "graph"])
def test_a_cell_file_that_exits_is_a_usage_error_naming_it(command, tmp_path):
    file = tmp_path / "quits.py"
    file.write_text("import sys\nsys.exit(0)\n", encoding="utf-8")
    r = CliRunner().invoke(main, [command, "--cell", f"{file}:build"])
    assert r.exit_code == 2 and str(file) in r.output and "sys.exit(0)" in r.output, r.output
    factory = tmp_path / "factory.py"
    factory.write_text("def build():\n    raise SystemExit(3)\n", encoding="utf-8")
    r = CliRunner().invoke(main, [command, "--cell", f"{factory}:build"])
    assert r.exit_code == 2 and f"{factory}:build()" in r.output and "sys.exit(3)" in r.output, r.output


def test_a_cell_function_that_returns_nothing_is_a_usage_error(tmp_path):
    file = tmp_path / "nothing.py"
    file.write_text("def build():\n    pass\n", encoding="utf-8")
    r = CliRunner().invoke(main, ["prove", "--cell", f"{file}:build"])
    assert r.exit_code == 2 and "NoneType" in r.output and "expected a Cell" in r.output, r.output


def test_a_generated_module_that_exits_on_import_is_an_error(tmp_path):
    src = (Path(load("rnn").__file__)).read_text(encoding="utf-8")
    (tmp_path / "rnn.py").write_text(src.replace("import numpy as np\n", "import numpy as np\nraise SystemExit\n", 1))
    r = CliRunner().invoke(main, ["check", "--cell", "rnn", "--dir", str(tmp_path)])
    assert r.exit_code == 2 and "sys.exit()" in r.output, r.output


@pytest.mark.parametrize("args", [["prove", "--cell", "rnn", "--n-a", "1"], ["check", "--cell", "rnn"]])
def test_every_verdict_command_ends_with_a_verdict_line(args):
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    last = r.output.strip().splitlines()[-1]
    assert last.startswith(("all ", "proved for every T")), last


# -- kinks -----------------------------------------------------------------------------------------------


def _relu_problem(offset):
    """IndRNN: a<1> = relu(W x + b + u a<0>) with W x = 1, b = −1 + offset, a<0> = 0: relu's input is offset."""
    x = np.ones((1, 1, 1))
    p = {"W": np.array([[1.0]]), "b": np.array([-1.0 + offset]), "u": np.array([0.5])}
    return x, p, {"a0": np.zeros((1, 1))}


def test_the_complex_step_takes_the_side_of_the_kink_its_point_is_on():
    """relu's input 5e-4 above its kink: the complex step never crosses it (a central difference with h = 1e-3
    straddles it and measures neither side) and gives the one-sided derivative exactly."""
    from symbolic_lstm.check.complex_step import ComplexStep

    ref = ComplexStep(get_cell(spec("indrnn")))
    x, p, init = _relu_problem(5e-4)
    assert not ref.at_kink(x, p, init)
    g = ref.gradients({**p, "x": x, **init}, np.zeros((1, 1, 1)), "many-to-many", {})
    assert abs(g["b"][0] - 5e-4) < 1e-15  # dE/db = a·relu′ = 5e-4 · 1
    below = ref.gradients({**_relu_problem(-5e-4)[1], "x": x, **init}, np.zeros((1, 1, 1)), "many-to-many", {})
    assert below["b"][0] == 0.0  # the other side: relu′ = 0


def test_a_point_on_a_kink_is_not_judged_and_is_counted(monkeypatch, tmp_path):
    from symbolic_lstm.check.complex_step import ComplexStep

    cell = get_cell(spec("indrnn"))
    ref = ComplexStep(cell)
    assert ref.at_kink(*_relu_problem(0.0)) and ref.at_kink(*_relu_problem(1e-17))
    assert not ComplexStep(get_cell("lstm")).has_kinks
    generate([cell], tmp_path)
    k = load("indrnn", tmp_path)
    report = check_module(k, cell=cell)
    assert report.ok and report.compared == 7 and report.skipped == 0  # six problems and the padded batch
    monkeypatch.setattr(ComplexStep, "at_kink", lambda self, *a: True)  # every point on a kink
    report = check_module(k, cell=cell)
    assert not report.ok and report.skipped > 0 and "every problem's point lies at a kink" in report.verdict()
    assert "not compared" in str(report)


def test_a_group_of_activations_that_needs_scratch_runs_gate_by_gate(tmp_path):
    """Two softsign gates over x<t> alone form one group of the step's block; softsign needs a scratch buffer,
    and the scratch is (B, n_a): generate used to refuse the cell (a shape error in its smoke run)."""
    b = CellBuilder("two_softsigns", inputs=("x",), states=("a",), output="a")
    g1 = b.stage("g1", softsign(b.linear("s1", ["x"], weight="W1", bias="b1")))
    g2 = b.stage("g2", softsign(b.linear("s2", ["x"], weight="W2", bias="b2")))
    b.stage("a", sp.tanh(g1 + g2 + b.prev("a")))
    cell = b.build()
    generate([cell], tmp_path)
    report = check_module(load("two_softsigns", tmp_path), cell=cell)
    assert report.ok, str(report)


def test_a_check_of_nothing_is_no_success(k):
    report = check_module(k, problems=())
    assert not report.ok and report.verdict() == "FAILED: no gradient was compared"


# -- a module with wrong gradients is never written ------------------------------------------------------


def _broken(text: str, backend: object) -> str:
    """A generator bug injected: the forget gate's branch of δc<t-1> with its sign flipped (``backend``: the
    Backend object the command line hands render, or its name)."""
    if getattr(backend, "name", backend) == "numpy":
        old, new = "np.multiply(Gamma_f, delta_c, out=dc_next)", "np.multiply(Gamma_f, -delta_c, out=dc_next)"
    else:
        old, new = "dc_next = Gamma_f*delta_c", "dc_next = -Gamma_f*delta_c"
    assert old in text
    return text.replace(old, new, 1)


@pytest.mark.parametrize("backend", ["numpy", "array-api", "jax"])
def test_a_generator_bug_that_makes_wrong_gradients_is_refused_before_writing(backend, tmp_path, monkeypatch):
    """The refusal names the line where the error enters (the carry δc<t-1> at the last step, the first one the
    backward pass computes), not the statements downstream that read it or the gradients it reaches."""
    if backend == "jax":
        pytest.importorskip("jax")
    from symbolic_lstm.codegen import pipeline as smoke

    real = smoke.render
    monkeypatch.setattr(smoke, "render", lambda cell, b: _broken(real(cell, b), b))
    r = CliRunner().invoke(main, ["generate", "--cell", "lstm", "--out", str(tmp_path), "--backend", backend])
    assert r.exit_code == 2 and "computes wrong values" in r.output and "c0" in r.output, r.output
    flat = " ".join(r.output.split())
    assert "the first value that differs from the cell's own is δc<t-1> (through step t) at step 3 of 3" in flat, flat
    assert "-Gamma_f*delta_c" in flat or "-delta_c, out=dc_next" in flat, flat
    assert list(tmp_path.iterdir()) == []  # nothing written, not even a temporary file


@pytest.mark.parametrize("backend", ["numpy", "array-api"])
def test_a_cell_is_right_or_refused_never_written_wrong(backend, tmp_path):
    """The SRU's output is not a state, which the kernels did not handle (they returned the state and trained
    on it): generate must refuse it — or, once the generator handles it, write a module that passes check."""
    r = CliRunner().invoke(main, ["generate", "--cell", spec("sru"), "--out", str(tmp_path), "--backend", backend])
    if r.exit_code == 2:
        assert "computes wrong values" in r.output or "cannot" in r.output, r.output
        assert list(tmp_path.iterdir()) == []
    else:
        assert r.exit_code == 0, r.output
        name = "sru" if backend == "numpy" else "sru_array_api"
        assert check_module(load(name, tmp_path), cell=get_cell(spec("sru"))).ok


def test_a_point_on_a_pole_is_skipped_not_failed():
    """softplus's derivative e^s/(1 + e^s) where the indeterminate e^s drew −1: that point is skipped."""
    w = sp.Symbol("w", real=True)
    E = sp.log(1 + sp.exp(w))
    dE = sp.exp(w) / (1 + sp.exp(w))
    pole = proof.Point({sp.exp(w): sp.Integer(-1), sp.log(1 + sp.exp(w)): sp.Integer(2), w: sp.Integer(1)}, {})
    fine = proof.Point({sp.exp(w): sp.Rational(3, 7), sp.log(1 + sp.exp(w)): sp.Integer(2), w: sp.Integer(1)}, {})

    def verdict(points, engine=dE):
        job = proof._Job(
            [E], {"many-to-many": frozenset({1})}, {"many-to-many": {"w": sp.Matrix([engine])}}, points, False
        )
        return proof._check(("w", 0, w), job)[1]["many-to-many"]

    assert verdict([pole, fine]) and not verdict([pole])  # nothing compared is no proof
    assert not verdict([pole, fine], engine=2 * dE)


def test_a_function_numpy_cannot_print_is_named_with_what_to_do(tmp_path):
    file = tmp_path / "erf_cell.py"
    file.write_text(
        "import sympy as sp\nfrom symbolic_lstm import CellBuilder\n\n\ndef build():\n"
        '    b = CellBuilder("erf_cell", inputs=("x",), states=("a",), output="a")\n'
        '    s = b.linear("s", [b.prev("a"), b.input("x")], weight="W", bias="b")\n'
        '    b.stage("a", sp.erf(s))\n    return b.build()\n',
        encoding="utf-8",
    )
    r = CliRunner().invoke(main, ["generate", "--cell", f"{file}:build", "--out", str(tmp_path / "out")])
    assert r.exit_code == 2 and "erf has no NumPy ufunc" in r.output and "_numpycode" in r.output, r.output
