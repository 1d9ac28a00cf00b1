"""Every built-in cell: derivation, proof, committed kernels checked against the complex-step reference, and
one forward step compared with an independent NumPy formula (or torch, where it has the cell)."""

from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest
import sympy as sp

from symbolic_lstm import load
from symbolic_lstm.check.gradcheck import check_module
from symbolic_lstm.document.emit_latex import DerivationDocument, default_targets
from symbolic_lstm.engine.cells import BUILTIN, get_cell
from symbolic_lstm.proof import obligations as proof

CELLS = sorted(BUILTIN)


def sigmoid(z):
    return 1 / (1 + np.exp(-z))


def _step_lstm(p, a, c, x):
    z = np.concatenate([a, x], axis=1)
    f, u, o = (sigmoid(z @ p[f"W_{g}"].T + p[f"b_{g}"]) for g in "fuo")
    c = f * c + u * np.tanh(z @ p["W_c"].T + p["b_c"])
    return o * np.tanh(c), c


def _step_cifg(p, a, c, x):
    z = np.concatenate([a, x], axis=1)
    f, o = (sigmoid(z @ p[f"W_{g}"].T + p[f"b_{g}"]) for g in "fo")
    c = f * c + (1 - f) * np.tanh(z @ p["W_c"].T + p["b_c"])
    return o * np.tanh(c), c


def _step_peephole(p, a, c, x):
    z = np.concatenate([a, x], axis=1)
    s = {g: z @ p[f"W_{g}"].T + p[f"b_{g}"] for g in "fuco"}
    f = sigmoid(s["f"] + p["p_f"] * c)
    u = sigmoid(s["u"] + p["p_u"] * c)
    c = f * c + u * np.tanh(s["c"])
    o = sigmoid(s["o"] + p["p_o"] * c)
    return o * np.tanh(c), c


def _step_gru(p, a, x):
    z, r = (sigmoid(np.concatenate([a, x], axis=1) @ p[f"W_{g}"].T + p[f"b_{g}"]) for g in "zr")
    h = np.tanh(np.concatenate([r * a, x], axis=1) @ p["W_h"].T + p["b_h"])  # reset before the product
    return (z * a + (1 - z) * h,)


def _step_gru_torch(p, a, x):
    z_ax = np.concatenate([a, x], axis=1)
    r, z = (sigmoid(z_ax @ p[f"W_{g}"].T + p[f"b_{g}"]) for g in "rz")
    n = np.tanh(x @ p["W_in"].T + p["b_in"] + r * (a @ p["W_hn"].T + p["b_hn"]))  # reset after the product
    return ((1 - z) * n + z * a,)


def _layer_norm(v, gain, bias, eps=1e-5):
    mu = v.mean(axis=-1, keepdims=True)
    var = ((v - mu) ** 2).mean(axis=-1, keepdims=True)
    return gain * (v - mu) / np.sqrt(var + eps) + bias


def _step_layernorm(p, a, c, x):
    z = np.concatenate([a, x], axis=1)
    n = {g: _layer_norm(z @ p[f"W_{g}"].T, p[f"gamma_{g}"], p[f"beta_{g}"]) for g in "fuco"}
    f, u, o = sigmoid(n["f"]), sigmoid(n["u"]), sigmoid(n["o"])
    c = f * c + u * np.tanh(n["c"])
    return o * np.tanh(_layer_norm(c, p["gamma_s"], p["beta_s"])), c


def _step_rnn(p, a, x):
    return (np.tanh(np.concatenate([a, x], axis=1) @ p["W_a"].T + p["b_a"]),)


REFERENCE = {
    "lstm": _step_lstm,
    "cifg": _step_cifg,
    "gru": _step_gru,
    "gru_torch": _step_gru_torch,
    "layernorm": _step_layernorm,
    "peephole": _step_peephole,
    "rnn": _step_rnn,
}


def test_every_builtin_has_a_reference_step():
    assert set(REFERENCE) == set(CELLS)


@pytest.mark.parametrize("name", CELLS)
def test_committed_kernels_match_central_differences(name):
    k = load(name)
    rows = check_module(k, seed=1)
    assert {r.key for r in rows} == {*k.PARAMS, "x", *(f"{s}0" for s in k.STATES)}
    assert all(r.ok for r in rows), [(r.key, r.max_rel_error) for r in rows if not r.ok]


@pytest.mark.parametrize("name", CELLS)
def test_forward_matches_an_independent_formula(name):
    k, step = load(name), REFERENCE[name]
    rng = np.random.default_rng(0)
    T, B, n_x, n_a = 4, 3, 2, 5
    p = k.init_params(n_x, n_a, seed=2)
    p = {name: v + rng.uniform(-0.5, 0.5, size=v.shape) for name, v in p.items()}  # LayerNorm starts γ = 1, β = 0
    x = rng.normal(size=(T, B, n_x))
    init = [rng.normal(size=(B, n_a)) for _ in k.STATES]
    out = k.forward(x, p, *init)
    states = init
    for t in range(T):
        states = list(step(p, *states, x[t]))
        for j in range(len(k.STATES)):
            np.testing.assert_allclose(out[j][t], states[j], rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", CELLS)
def test_module_contract(name):
    cell, k = get_cell(name), load(name)
    assert k.CELL == name and k.STATES == cell.states and k.PARAMS == cell.params
    p = k.init_params(3, 4)
    out = k.forward(np.zeros((2, 5, 3)), p)
    assert len(out) == len(cell.states) + 1
    g = k.backward(k.mse_loss(out[0], np.ones((2, 5, 4)))[1], out[-1])
    assert set(g) == {*cell.params, "x", *(f"{s}0" for s in cell.states)}
    assert all(g[n].shape == p[n].shape for n in cell.params)


@pytest.mark.parametrize("name", [c for c in CELLS if c not in ("lstm", "layernorm")])
def test_proof_small(name):
    lines = proof.prove(get_cell(name), n_a=1, n_x=1, T=2, modes=("many-to-one",), workers=2)
    assert lines and all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


@pytest.mark.slow  # ~15 s
def test_proof_layernorm():
    """n_a = 2 (with one unit a layer norm is identically β); T = 1 keeps the unrolled Error small (~40 s)."""
    lines = proof.prove(get_cell("layernorm"), n_a=2, n_x=1, T=1, modes=("many-to-many",), points=1, workers=2)
    assert lines and all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]


@pytest.mark.parametrize("name", [c if c != "layernorm" else pytest.param(c, marks=pytest.mark.slow) for c in CELLS])
def test_derivation_of_every_default_target(name):
    cell = get_cell(name)
    doc = DerivationDocument(cell, unroll=2)
    targets = default_targets(cell)
    assert {*cell.params} <= set(targets)
    body = doc.body(targets)
    assert body.count(r"\subsection*") == len(targets)


@pytest.mark.parametrize("name", CELLS)
def test_saturated_gates(name):
    from symbolic_lstm.check.gradcheck import SATURATED

    rows = check_module(load(name), seed=2, regime=SATURATED)
    assert all(r.ok for r in rows), [(r.key, r.judged) for r in rows if not r.ok]


def test_rnn_agrees_with_torch():
    torch = pytest.importorskip("torch")
    k = load("rnn")
    rng = np.random.default_rng(3)
    T, B, n_x, n_a = 5, 2, 3, 4
    p = k.init_params(n_x, n_a, seed=4)
    x, a0, y = rng.normal(size=(T, B, n_x)), rng.normal(size=(B, n_a)), rng.normal(size=(T, B, n_a))
    a, cache = k.forward(x, p, a0)
    g = k.backward(k.mse_loss(a, y)[1], cache)
    rnn = torch.nn.RNN(n_x, n_a, nonlinearity="tanh", dtype=torch.float64)
    with torch.no_grad():
        rnn.weight_hh_l0.copy_(torch.from_numpy(p["W_a"][:, :n_a]))
        rnn.weight_ih_l0.copy_(torch.from_numpy(p["W_a"][:, n_a:]))
        rnn.bias_ih_l0.copy_(torch.from_numpy(p["b_a"]))
        rnn.bias_hh_l0.zero_()
    xt = torch.from_numpy(x).requires_grad_()
    h0 = torch.from_numpy(a0[None]).requires_grad_()
    out, _ = rnn(xt, h0)
    (0.5 * ((out - torch.from_numpy(y)) ** 2).sum()).backward()
    np.testing.assert_allclose(a, out.detach().numpy(), rtol=1e-12)
    dW = np.concatenate([rnn.weight_hh_l0.grad.numpy(), rnn.weight_ih_l0.grad.numpy()], axis=1)
    np.testing.assert_allclose(g["W_a"], dW, rtol=1e-10)
    np.testing.assert_allclose(g["b_a"], rnn.bias_ih_l0.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(g["x"], xt.grad.numpy(), rtol=1e-10)
    np.testing.assert_allclose(g["a0"], h0.grad.numpy()[0], rtol=1e-10)


def test_layernorm_agrees_with_torch_autograd():
    """The same cell written with torch.nn.functional.layer_norm; gradients by torch's autograd."""
    torch = pytest.importorskip("torch")
    F = torch.nn.functional
    k = load("layernorm")
    rng = np.random.default_rng(5)
    T, B, n_x, n_a = 4, 3, 2, 5
    p = {n: v + rng.uniform(-0.5, 0.5, size=v.shape) for n, v in k.init_params(n_x, n_a, seed=6).items()}
    x, a0, c0, y = (rng.normal(size=s) for s in ((T, B, n_x), (B, n_a), (B, n_a), (T, B, n_a)))
    a, _c, cache = k.forward(x, p, a0, c0)
    g = k.backward(k.mse_loss(a, y)[1], cache)
    tp = {n: torch.tensor(v, requires_grad=True) for n, v in p.items()}
    tx, ta, tc = (torch.tensor(v, requires_grad=True) for v in (x, a0, c0))

    def ln(v, tag):
        return F.layer_norm(v, (n_a,), tp[f"gamma_{tag}"], tp[f"beta_{tag}"], eps=1e-5)

    h, s, outs = ta, tc, []
    for t in range(T):
        z = torch.cat([h, tx[t]], dim=1)
        n = {gate: ln(z @ tp[f"W_{gate}"].T, gate) for gate in "fuco"}
        s = torch.sigmoid(n["f"]) * s + torch.sigmoid(n["u"]) * torch.tanh(n["c"])
        h = torch.sigmoid(n["o"]) * torch.tanh(ln(s, "s"))
        outs.append(h)
    out = torch.stack(outs)
    (0.5 * ((out - torch.tensor(y)) ** 2).sum()).backward()
    np.testing.assert_allclose(a, out.detach().numpy(), rtol=1e-10, atol=1e-12)
    for name in p:
        np.testing.assert_allclose(g[name], tp[name].grad.numpy(), rtol=1e-8, atol=1e-11, err_msg=name)
    np.testing.assert_allclose(g["x"], tx.grad.numpy(), rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(g["a0"], ta.grad.numpy(), rtol=1e-8, atol=1e-11)
    np.testing.assert_allclose(g["c0"], tc.grad.numpy(), rtol=1e-8, atol=1e-11)


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
@pytest.mark.parametrize("name", [c if c != "layernorm" else pytest.param(c, marks=pytest.mark.slow) for c in CELLS])
def test_every_cells_derivation_compiles(name, tmp_path):
    tex = tmp_path / f"{name}.tex"
    tex.write_text(DerivationDocument(get_cell(name), unroll=2).standalone(default_targets(get_cell(name))))
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", tex.name], cwd=tmp_path, capture_output=True
    )
    assert done.returncode == 0, done.stdout[-3000:]


def test_a_cell_defined_only_in_this_file(tmp_path):
    """A minimal gated unit with a peephole-style unit parameter and a layer-normalised candidate."""
    from symbolic_lstm import CellBuilder, sigmoid
    from symbolic_lstm.codegen.pipeline import generate
    from symbolic_lstm.engine.functions import rsqrt

    b = CellBuilder("tiny_mgu", inputs=("x",), states=("a",), output="a", description="test-only cell")
    a_prev, x = b.prev("a"), b.input("x")
    s_f = b.linear("sum_f", [a_prev, x], weight="W_f", bias="b_f")
    s_h = b.linear("sum_h", [a_prev, x], weight="W_h", bias=None)
    w = b.vector("w_f")
    f = b.stage("Gamma_f", sigmoid(s_f + w * a_prev))
    mu = b.mean("mu", s_h)
    var = b.mean("var", (s_h - mu) ** 2)
    h = b.stage("h_tilde", sp.tanh((s_h - mu) * rsqrt(var + sp.Rational(1, 1000))))
    b.stage("a", (1 - f) * a_prev + f * h)
    cell = b.build()
    assert cell.params == ("W_f", "b_f", "W_h", "w_f") and cell.scalars == ("mu", "var")
    generate([cell], tmp_path)
    k = load("tiny_mgu", tmp_path)
    rows = check_module(k, seed=3, cell=cell)
    assert all(r.ok for r in rows), [(r.key, r.max_rel_error) for r in rows if not r.ok]
    lines = proof.prove(cell, n_a=2, n_x=1, T=1, modes=("many-to-many",), points=1, workers=2)
    assert all(ln.ok for ln in lines), [str(ln) for ln in lines if not ln.ok]
