"""Kernels for every cell the engine can derive: cells written from papers as user files (PyTorch's GRU,
multiplicative integration, IndRNN, leaky and hard activations) prove, generate in both backends, pass the
gradient check, agree with the array-API module and with torch autograd; a module that cannot run is
never written; user cells reach ``train``, ``graph``, ``derive`` and ``check`` through the user cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

from symbolic_lstm import CellBuilder, CellError, load, sigmoid
from symbolic_lstm.check.gradcheck import check_module, numeric_gradient
from symbolic_lstm.cli import main
from symbolic_lstm.codegen import CodegenError
from symbolic_lstm.codegen.pipeline import write_checked
from symbolic_lstm.codegen.printer_numpy import KernelPrinter
from symbolic_lstm.codegen.schedule import Schedule
from symbolic_lstm.codegen.smoke import smoke_run
from symbolic_lstm.engine.cells import get_cell
from symbolic_lstm.proof import obligations as proof

PAPERS = Path(__file__).parent / "cells" / "papers.py"
USER_CELLS = ["gru_torch", "mi_rnn", "indrnn", "leaky", "hard"]


def spec(name: str) -> str:
    return f"{PAPERS}:{name}"


@pytest.fixture(scope="module")
def kernels(tmp_path_factory):
    """Both backends of every user cell, generated once through the CLI."""
    out = tmp_path_factory.mktemp("kernels")
    runner = CliRunner()
    for name in USER_CELLS:
        for backend in ("numpy", "array-api"):
            r = runner.invoke(main, ["generate", "--cell", spec(name), "--out", str(out), "--backend", backend])
            assert r.exit_code == 0, r.output
    return out


def _problem(k, T=4, B=3, n_x=3, n_a=5, seed=0):
    rng = np.random.default_rng(seed)
    p = {n: v + 0.3 * rng.normal(size=v.shape) for n, v in k.init_params(n_x, n_a, seed=seed).items()}
    x = rng.normal(size=(T, B, n_x))
    init = {f"{s}0": 0.5 * rng.normal(size=(B, n_a)) for s in k.STATES}
    y = rng.normal(size=(T, B, n_a))
    return p, x, init, y


def _numpy_grads(k, p, x, init, y):
    out = k.forward(x, p, **init)
    g = k.backward(k.mse_loss(out[0], y)[1], out[-1])
    return out[0], g


@pytest.mark.parametrize("name", USER_CELLS)
def test_user_cell_passes_check(name, kernels):
    r = CliRunner().invoke(main, ["check", "--cell", spec(name), "--dir", str(kernels)])
    assert r.exit_code == 0, r.output
    assert "gradients within" in r.output


@pytest.mark.parametrize("name", USER_CELLS)
def test_array_api_module_equals_numpy_module(name, kernels):
    pytest.importorskip("array_api_compat")
    cell = get_cell(spec(name))
    k, m = load(cell.name, kernels), load(f"{cell.name}_array_api", kernels)
    p, x, init, y = _problem(k)
    a, g = _numpy_grads(k, p, x, init, y)
    out = m.forward(x, p, **init)
    gm = m.backward(m.mse_loss(out[0], y)[1], out[-1])
    np.testing.assert_allclose(out[0], a, rtol=1e-12, atol=1e-14)
    for key in g:
        np.testing.assert_allclose(gm[key], g[key], rtol=1e-10, atol=1e-13, err_msg=key)


@pytest.mark.parametrize("name", USER_CELLS)
def test_user_cell_proves(name):
    lines = proof.prove(get_cell(spec(name)), n_a=2, n_x=1, T=2, points=2, workers=1)
    assert all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


# -- torch autograd on the same weights ---------------------------------------------------------------


def _torch_check(k, p, x, init, y, step):
    """Run ``step`` (torch ops, one time step) under autograd and compare outputs and every gradient."""
    torch = pytest.importorskip("torch")
    a, g = _numpy_grads(k, p, x, init, y)
    tp = {n: torch.tensor(v, requires_grad=True) for n, v in p.items()}
    tx = torch.tensor(x, requires_grad=True)
    ta = torch.tensor(init["a0"], requires_grad=True)
    h, outs = ta, []
    for t in range(x.shape[0]):
        h = step(torch, tp, h, tx[t])
        outs.append(h)
    out = torch.stack(outs)
    (0.5 * ((out - torch.tensor(y)) ** 2).sum()).backward()
    np.testing.assert_allclose(a, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name in p:
        np.testing.assert_allclose(g[name], tp[name].grad.numpy(), rtol=1e-10, atol=1e-12, err_msg=name)
    np.testing.assert_allclose(g["x"], tx.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["a0"], ta.grad.numpy(), rtol=1e-10, atol=1e-12)


def test_mi_rnn_agrees_with_torch_autograd(kernels):
    k = load("mi_rnn", kernels)

    def step(torch, q, a, x):
        wx, ua = x @ q["W"].T, a @ q["U"].T
        return torch.tanh(q["alpha"] * wx * ua + q["beta1"] * ua + q["beta2"] * wx + q["b"])

    _torch_check(k, *_problem(k, seed=1), step)


def test_indrnn_agrees_with_torch_autograd(kernels):
    k = load("indrnn", kernels)
    _torch_check(k, *_problem(k, seed=2), lambda torch, q, a, x: torch.relu(x @ q["W"].T + q["b"] + q["u"] * a))


def test_leaky_and_hard_agree_with_torch_autograd(kernels):
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    k = load("leaky", kernels)
    _torch_check(
        k, *_problem(k, seed=3), lambda torch, q, a, x: F.leaky_relu(torch.cat([a, x], 1) @ q["W_a"].T + q["b_a"], 0.1)
    )
    k = load("hard", kernels)

    def hard(torch, q, a, x):
        sx = x @ q["W_x"].T + q["b"]
        return F.hardtanh(sx + a @ q["W_h"].T) + torch.abs(sx) / 4

    _torch_check(k, *_problem(k, seed=4), hard)


def test_relu_at_its_kink_takes_pytorchs_derivative():
    """relu′(0) = 0, as torch.relu: a unit sitting exactly on the kink passes no gradient."""
    k = load("indrnn", _generate_user("indrnn"))
    p = {"W": np.zeros((1, 1)), "b": np.zeros(1), "u": np.ones(1)}
    a, cache = k.forward(np.ones((1, 1, 1)), p, np.zeros((1, 1)))
    g = k.backward(np.ones((1, 1, 1)), cache)
    assert a[0, 0, 0] == 0 and g["b"][0] == 0 and g["W"][0, 0] == 0


def _generate_user(name: str) -> Path:
    import tempfile

    out = Path(tempfile.mkdtemp(prefix="symbolic-lstm-test-"))
    write_checked(get_cell(spec(name)), "numpy", out)
    return out


# -- PyTorch's GRU, built in ------------------------------------------------------------------------


def from_torch_gru(gru, n_a):
    """The README's recipe: torch.nn.GRU's weights (gate rows r, z, n) in gru_torch's layout."""
    w_ih, w_hh = gru.weight_ih_l0.detach().numpy(), gru.weight_hh_l0.detach().numpy()
    b_ih, b_hh = gru.bias_ih_l0.detach().numpy(), gru.bias_hh_l0.detach().numpy()
    r, z, n = (slice(i * n_a, (i + 1) * n_a) for i in range(3))
    return {
        "W_r": np.concatenate([w_hh[r], w_ih[r]], axis=1), "b_r": b_ih[r] + b_hh[r],
        "W_z": np.concatenate([w_hh[z], w_ih[z]], axis=1), "b_z": b_ih[z] + b_hh[z],
        "W_in": w_ih[n], "b_in": b_ih[n], "W_hn": w_hh[n], "b_hn": b_hh[n],
    }  # fmt: skip


def test_gru_torch_matches_torch_nn_gru():
    torch = pytest.importorskip("torch")
    T, B, n_x, n_a = 6, 3, 4, 5
    torch.manual_seed(0)
    gru = torch.nn.GRU(n_x, n_a, dtype=torch.float64)
    k = load("gru_torch")
    p = from_torch_gru(gru, n_a)
    rng = np.random.default_rng(7)
    x, a0, y = rng.normal(size=(T, B, n_x)), rng.normal(size=(B, n_a)), rng.normal(size=(T, B, n_a))
    a, cache = k.forward(x, p, a0)
    g = k.backward(k.mse_loss(a, y)[1], cache)
    tx, th = torch.tensor(x, requires_grad=True), torch.tensor(a0[None], requires_grad=True)
    out, _ = gru(tx, th)
    (0.5 * ((out - torch.tensor(y)) ** 2).sum()).backward()
    np.testing.assert_allclose(a, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    tg = {
        "weight_ih_l0": gru.weight_ih_l0.grad.numpy(), "weight_hh_l0": gru.weight_hh_l0.grad.numpy(),
        "bias_ih_l0": gru.bias_ih_l0.grad.numpy(), "bias_hh_l0": gru.bias_hh_l0.grad.numpy(),
    }  # fmt: skip
    r, z, n = (slice(i * n_a, (i + 1) * n_a) for i in range(3))
    want = {
        "W_r": np.concatenate([tg["weight_hh_l0"][r], tg["weight_ih_l0"][r]], axis=1),
        "W_z": np.concatenate([tg["weight_hh_l0"][z], tg["weight_ih_l0"][z]], axis=1),
        "W_in": tg["weight_ih_l0"][n], "W_hn": tg["weight_hh_l0"][n],
        "b_r": tg["bias_ih_l0"][r], "b_z": tg["bias_ih_l0"][z],  # a summed bias gets each part's gradient
        "b_in": tg["bias_ih_l0"][n], "b_hn": tg["bias_hh_l0"][n],
        "x": tx.grad.numpy(), "a0": th.grad.numpy()[0],
    }  # fmt: skip
    np.testing.assert_allclose(tg["bias_hh_l0"][r], tg["bias_ih_l0"][r], rtol=1e-12)
    for key, v in want.items():
        np.testing.assert_allclose(g[key], v, rtol=1e-10, atol=1e-12, err_msg=key)


def test_gru_torch_schedule_shares_products_like_cudnn():
    """One hoisted product over x for r, z and W_in x; one per-step product over a<t-1> for r, z, W_hn a."""
    s = Schedule(get_cell("gru_torch"))
    products = {pr.operand: [s.gates[i].stage.name for i in pr.gates] for pr in s.products}
    assert sorted(products["x"]) == ["sum_in", "sum_r", "sum_z"]
    assert sorted(products["a_prev"]) == ["sum_hn", "sum_r", "sum_z"]
    assert all(pr.contiguous for pr in s.products)  # the gate order makes both one slice


# -- structures the old plan refused ------------------------------------------------------------------


def _cell_with_crossed_operands():
    """Three gates over three operand pairs ([a, x], [c, x], [a, c]): no order makes every product one slice."""
    b = CellBuilder("crossed", inputs=("x",), states=("a", "c"), output="a")
    a_prev, c_prev, x = b.prev("a"), b.prev("c"), b.input("x")
    s1 = b.linear("s1", [a_prev, x], weight="W_1", bias="b_1")
    s2 = b.linear("s2", [x, c_prev], weight="W_2", bias=None)
    s3 = b.linear("s3", [c_prev, a_prev], weight="W_3", bias="b_3")
    g1 = b.stage("g1", sigmoid(s1))
    g3 = b.stage("g3", sigmoid(s3))
    c = b.stage("c", g1 * c_prev + (1 - g1) * sp.tanh(s2))
    b.stage("a", g3 * sp.tanh(c))
    return b.build()


def test_products_whose_gates_cannot_be_adjacent(tmp_path):
    cell = _cell_with_crossed_operands()
    s = Schedule(cell)
    assert sum(not pr.contiguous for pr in s.products) == 1
    write_checked(cell, "numpy", tmp_path)
    rows = check_module(load("crossed", tmp_path), cell=cell)
    assert all(r.ok for r in rows), [(r.key, r.max_rel_error) for r in rows if not r.ok]


def test_late_gate_with_a_stored_pre_activation(tmp_path):
    """A gate over an inner node whose activation's derivative reads the pre-activation (softsign)."""
    from symbolic_lstm import softsign

    b = CellBuilder("late_softsign", inputs=("x",), states=("a",), output="a")
    a_prev, x = b.prev("a"), b.input("x")
    r = b.stage("r", sigmoid(b.linear("sum_r", [a_prev, x], weight="W_r", bias="b_r")))
    ra = b.stage("ra", r * a_prev)
    h = b.stage("h", softsign(b.linear("sum_h", [ra, x], weight="W_h", bias="b_h")))
    b.stage("a", (a_prev + h) / 2)
    cell = b.build()
    write_checked(cell, "numpy", tmp_path)
    rows = check_module(load("late_softsign", tmp_path), cell=cell)
    assert all(r.ok for r in rows), [(r.key, r.max_rel_error) for r in rows if not r.ok]


def test_builtin_gate_order_and_products_unchanged():
    """The built-ins keep one hoisted input product and one recurrent product over all their gates."""
    for name, order in {"lstm": "fuoc", "cifg": "foc", "peephole": "cfuo", "layernorm": "fuco"}.items():
        s = Schedule(get_cell(name))
        assert "".join(g.short for g in s.gates) == order
        assert [(pr.operand, pr.all_gates) for pr in s.products] == [("x", True), ("a_prev", True)]


# -- printing of functions with kinks ------------------------------------------------------------------


def test_kinks_print_as_plain_numpy():
    x = sp.Symbol("x")
    p = KernelPrinter()
    assert p.doprint(sp.Max(0, x)) == "np.maximum(x, 0)"
    assert p.doprint(sp.Min(1, sp.Max(-1, x))) == "np.minimum(np.maximum(x, -1), 1)"
    assert p.doprint(sp.Heaviside(x)) == "np.heaviside(x, 0)"  # H(0) = 0: relu′(0) = 0 as PyTorch
    assert p.doprint(sp.sign(x)) == "np.sign(x)"
    text = p.doprint(sp.Piecewise((1, x > 0), (sp.Rational(1, 3), True)))
    assert text == "np.where(np.greater(x, 0), np.full_like(x, 1), np.full_like(x, 1/3))"
    for e in (sp.Max(0, x, x**2), sp.Piecewise((x, x > 0), (0, True))):
        assert "functools" not in p.doprint(e) and "select" not in p.doprint(e)


def test_float32_stays_float32_through_piecewise_constants(kernels):
    k = load("leaky", kernels)
    p, x, init, y = _problem(k)
    p32 = {n: v.astype(np.float32) for n, v in p.items()}
    out = k.forward(x.astype(np.float32), p32, a0=init["a0"].astype(np.float32))
    g = k.backward(k.mse_loss(out[0], y)[1], out[-1])
    assert out[0].dtype == np.float32 and all(v.dtype == np.float32 for v in g.values())


def test_central_differences_never_straddle_a_kink():
    """A relu whose input is 5e-4 from 0: the h = 1e-3 stencil crosses it and measures neither side; with the
    kink signs the check takes a smaller step and gets the one-sided derivative the kernel computes."""
    cell = get_cell(spec("indrnn"))
    from symbolic_lstm.check.reference import Reference

    ref = Reference(cell)
    x = np.ones((1, 1, 1))
    p = {"W": np.array([[1.0]]), "b": np.array([-1.0 + 5e-4]), "u": np.array([0.5])}
    init = {"a0": np.zeros((1, 1))}

    def f():
        return 0.5 * float(np.sum(ref.run(x, p, init)[0][-1]["a"] ** 2))

    signs = lambda: np.sign(ref.run(x, p, init, kinks=True)[1])  # noqa: E731
    exact = 5e-4  # dE/db = a·relu′ = 5e-4 · 1 on the positive side
    blind = numeric_gradient(f, p["b"])[0]
    seen = numeric_gradient(f, p["b"], kinks=signs)[0]
    assert abs(blind - exact) > 1e-5  # the straddling stencil is wrong …
    assert abs(seen - exact) < 1e-12  # … the kink-aware one is right


# -- a module that cannot run is never written ---------------------------------------------------------


class spiky(sp.Function):  # noqa: N801 - SymPy's convention; a printer hook with a typo in it
    nargs = 1

    def fdiff(self, argindex=1):
        return 1 - spiky(self.args[0]) ** 2

    def _numpycode(self, printer):
        return f"np.tanhh({printer._print(self.args[0])})"  # prints, but NumPy has no tanhh


class unknown(sp.Function):  # noqa: N801 - no printer knows it
    nargs = 1

    def fdiff(self, argindex=1):
        return unknown(self.args[0])


def _one_stage_cell(name, f):
    b = CellBuilder(name, inputs=("x",), states=("a",), output="a")
    s = b.linear("sum_a", [b.prev("a"), b.input("x")], weight="W_a", bias="b_a")
    h = b.stage("h", f(s))
    b.stage("a", (h + b.prev("a")) / 2)
    return b.build()


@pytest.mark.parametrize("backend", ["numpy", "array-api"])
def test_module_that_fails_its_smoke_run_is_never_written(tmp_path, backend):
    with pytest.raises(CodegenError, match=r"stage 'h'.*tanhh.*(AttributeError|NameError).*nothing was written"):
        write_checked(_one_stage_cell("spiky_rnn", spiky), backend, tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_function_no_printer_knows_names_its_stage(tmp_path):
    with pytest.raises(CodegenError, match=r"stage 'h' uses unknown.*_numpycode"):
        write_checked(_one_stage_cell("unknown_rnn", unknown), "numpy", tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_cli_generate_reports_the_failing_stage(tmp_path):
    cell_file = tmp_path / "spiky_cell.py"
    cell_file.write_text(
        "import sympy as sp\nfrom symbolic_lstm import CellBuilder\n\n"
        "class spiky(sp.Function):\n    nargs = 1\n\n    def fdiff(self, argindex=1):\n"
        "        return 1 - spiky(self.args[0]) ** 2\n\n"
        "    def _numpycode(self, printer):\n        return f'np.tanhh({printer._print(self.args[0])})'\n\n\n"
        "def build():\n"
        "    b = CellBuilder('spiky_rnn', inputs=('x',), states=('a',), output='a')\n"
        "    s = b.linear('sum_a', [b.prev('a'), b.input('x')], weight='W_a', bias='b_a')\n"
        "    b.stage('a', spiky(s))\n    return b.build()\n"
    )
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["generate", "--cell", f"{cell_file}:build", "--out", str(out)])
    assert r.exit_code == 2
    assert "stage 'a'" in r.output and "nothing was written" in r.output and "Traceback" not in r.output
    assert not any(out.iterdir())


def test_smoke_run_accepts_every_builtin():
    from symbolic_lstm.codegen.pipeline import render
    from symbolic_lstm.engine.cells import BUILTIN

    for name in BUILTIN:
        smoke_run(get_cell(name), "numpy", render(get_cell(name), "numpy"))


# -- what the kernels cannot take: a usage error naming it ----------------------------------------------


def test_two_inputs_generate_from_the_command_line(tmp_path):
    """Formerly refused ("the kernels take exactly one per-step input"); now q<t> is an input of its own width."""
    f = tmp_path / "two.py"
    f.write_text(
        "from symbolic_lstm import CellBuilder\nimport sympy as sp\n\ndef build():\n"
        "    b = CellBuilder('two', inputs=('x', 'q'), states=('a',), output='a')\n"
        "    s = b.linear('s', [b.prev('a'), b.input('x'), b.input('q')], weight='W', bias='b')\n"
        "    b.stage('a', sp.tanh(s))\n    return b.build()\n"
    )
    r = CliRunner().invoke(main, ["generate", "--cell", f"{f}:build", "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    k = load("two", tmp_path / "o")
    assert k.INPUTS == ("x", "q") and k.init_params(2, 3, n_q=4)["W"].shape == (3, 3 + 2 + 4)


def test_parameter_named_like_a_kernel_variable_is_refused_when_the_cell_is_built():
    b = CellBuilder("clash", inputs=("x",), states=("a",), output="a")
    b.linear("sum_a", [b.prev("a"), b.input("x")], weight="W_a", bias="b_a")
    with pytest.raises(CellError, match="unit parameter name 'delta_a' begins with delta_"):
        b.vector("delta_a")


# -- user cells all the way through -----------------------------------------------------------------------


def test_train_a_user_cell_through_the_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    args = ["train", "--cell", spec("mi_rnn"), "--data", "sunspots", "--epochs", "3", "-q"]
    r = CliRunner().invoke(main, args)  # .output holds standard error too
    assert r.exit_code == 0, r.output
    made = list((tmp_path / "cache" / "symbolic-lstm").glob("*/mi_rnn.py"))
    assert len(made) == 1
    assert f"generated the kernels of {spec('mi_rnn')} into {made[0]}" in r.output
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 0 and "generated the kernels" not in again.output  # the cache is used
    assert "held-out RMSE" in again.output


def test_check_graph_derive_take_a_user_cell(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    runner = CliRunner()
    r = runner.invoke(main, ["check", "--cell", spec("indrnn")])
    assert r.exit_code == 0, r.output
    r = runner.invoke(main, ["graph", "--cell", spec("gru_torch")])
    assert r.exit_code == 0 and "sum_hn" in r.output
    r = runner.invoke(main, ["derive", "W_in", "--cell", spec("gru_torch")])
    assert r.exit_code == 0 and "W_{in}" in r.output.replace("W_{\\mathrm{in}}", "W_{in}")


def test_check_stale_reads_user_cell_modules(tmp_path):
    runner = CliRunner()
    r = runner.invoke(main, ["generate", "--cell", spec("leaky"), "--out", str(tmp_path)])
    assert r.exit_code == 0
    r = runner.invoke(main, ["check", "--stale", "--dir", str(tmp_path)])
    assert r.exit_code == 0 and "up to date" in r.output


def test_a_variant_of_a_builtin_gets_its_own_kernels(tmp_path, monkeypatch):
    """lstm.build(candidate=softsign) is still named 'lstm': it must not get the shipped lstm module."""
    from symbolic_lstm.codegen.loader import module_for
    from symbolic_lstm.engine.cells import lstm
    from symbolic_lstm.engine.functions import softsign

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    variant = module_for(lstm.build(candidate=softsign))
    assert variant.generated and tmp_path in variant.path.parents
    assert module_for(get_cell("lstm")).path.parent != variant.path.parent  # the built-in: the shipped module
    rows = check_module(variant.module, cell=lstm.build(candidate=softsign))
    assert all(r.ok for r in rows)
