"""The softmax cross-entropy head: derived by SymPy, gradient-checked through the cell, stable, cross-checked."""

from __future__ import annotations

import shutil
import subprocess
import warnings

import numpy as np
import pytest
import sympy as sp
from click.testing import CliRunner

from symbolic_lstm import load
from symbolic_lstm.check.gradcheck import numeric_gradient, relative_error
from symbolic_lstm.cli import main
from symbolic_lstm.engine.heads import latex, softmax_ce

MODES = ("many-to-many", "many-to-one")


def test_derivative_comes_from_sympy_and_reduces_to_softmax_minus_target():
    h = softmax_ce()
    assert h.raw.has(sp.KroneckerDelta)  # SymPy differentiated the sums, nothing was typed in
    assert sp.expand(h.dz - (sp.Symbol("p") - sp.Symbol("y"))) == 0
    assert str(h.rules.weight["a"]) == "D.T*Z_a" and str(h.rules.operand["a"]) == "D*W_a"


def _problem(k, mode, seed=0, n_y=6, scale=2.0):
    rng = np.random.default_rng(seed)
    T, B, n_x, n_a = 4, 3, 2, 5
    p = {n: scale * v for n, v in k.init_params(n_x, n_a, seed=seed).items()}
    head = {n: scale * v for n, v in k.init_head(n_a, n_y, seed=seed + 1).items()}
    x = rng.normal(size=(T, B, n_x))
    init = {f"{s}0": 0.5 * rng.normal(size=(B, n_a)) for s in k.STATES}
    labels = rng.integers(0, n_y, size=(T, B) if mode == "many-to-many" else (B,))
    return p, head, x, init, labels


@pytest.mark.parametrize("name", ["lstm", "gru"])
@pytest.mark.parametrize("mode", MODES)
def test_gradients_through_the_cell_match_central_differences(name, mode):
    k = load(name)
    p, head, x, init, labels = _problem(k, mode)

    def loss() -> float:
        out = k.forward(x, p, **init)
        return k.softmax_ce_loss(out[0], labels, head, mode)[0]

    out = k.forward(x, p, **init)
    _E, da, gh = k.softmax_ce_loss(out[0], labels, head, mode)
    g = k.backward(da, out[-1])
    checks = {**{n: (head[n], gh[n]) for n in head}, **{n: (p[n], g[n]) for n in p}, "x": (x, g["x"])}
    checks.update({n: (init[n], g[n]) for n in init})
    for n, (arr, analytic) in checks.items():
        assert relative_error(analytic, numeric_gradient(loss, arr)) < 1e-7, n


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_huge_logits_are_stable(k, dtype):
    rng = np.random.default_rng(1)
    a = rng.choice([-1.0, 1.0], size=(3, 2, 4)).astype(dtype)
    head = {"W_y": (1e4 * rng.choice([-1.0, 1.0], size=(5, 4))).astype(dtype), "b_y": np.zeros(5, dtype)}
    labels = rng.integers(0, 5, size=(3, 2))
    with warnings.catch_warnings(), np.errstate(over="raise", invalid="raise", divide="raise"):
        warnings.simplefilter("error")
        E, da, g = k.softmax_ce_loss(a, labels, head)
        P = k.predict_proba(a, head)
    z = a.astype(np.float64) @ head["W_y"].T.astype(np.float64)
    zmax = z.max(axis=-1, keepdims=True)
    ref = np.sum(np.log(np.exp(z - zmax).sum(-1)) + zmax[..., 0] - np.take_along_axis(z, labels[..., None], -1)[..., 0])
    assert E == pytest.approx(ref, rel=1e-6)
    assert np.isfinite(da).all() and all(np.isfinite(v).all() for v in g.values())
    assert np.allclose(P.sum(-1), 1) and P.dtype == dtype and da.dtype == dtype


def test_agrees_with_torch_cross_entropy(k):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    a = rng.normal(size=(4, 3, 5))
    head = k.init_head(5, 7, seed=3)
    labels = rng.integers(0, 7, size=(4, 3))
    E, da, g = k.softmax_ce_loss(a, labels, head)
    at = torch.from_numpy(a).requires_grad_()
    W = torch.from_numpy(head["W_y"]).requires_grad_()
    b = torch.from_numpy(head["b_y"]).requires_grad_()
    loss = torch.nn.functional.cross_entropy(
        (at @ W.T + b).reshape(-1, 7), torch.from_numpy(labels).reshape(-1), reduction="sum"
    )
    loss.backward()
    assert E == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(da, at.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g["W_y"], W.grad.numpy(), rtol=1e-10, atol=1e-14)
    np.testing.assert_allclose(g["b_y"], b.grad.numpy(), rtol=1e-10, atol=1e-14)


def test_many_to_one_scores_only_the_last_step(k):
    a = np.random.default_rng(3).normal(size=(4, 2, 5))
    head = k.init_head(5, 3)
    E, da, _ = k.softmax_ce_loss(a, np.array([0, 2]), head, "many-to-one")
    assert not da[:-1].any() and da[-1].any()
    assert E == pytest.approx(k.softmax_ce_loss(a[-1:], np.array([[0, 2]]), head)[0])


@pytest.mark.parametrize(
    ("mutate", "exc", "message"),
    [
        (lambda a, lab, h: (a, lab + 10, h), ValueError, r"labels must lie in \[0, n_y\) = \[0, 6\)"),
        (lambda a, lab, h: (a, -lab - 1, h), ValueError, "labels must lie in"),
        (lambda a, lab, h: (a, lab.astype(float), h), TypeError, "labels must be integer class indices"),
        (lambda a, lab, h: (a, lab[0], h), ValueError, r"labels must have shape \(4, 3\)"),
        (lambda a, lab, h: (a, lab, {"W_y": h["W_y"]}), TypeError, "head must be a dict"),
        (
            lambda a, lab, h: (a, lab, {**h, "W_y": h["W_y"].T}),
            ValueError,
            r"head\['W_y'\] must have shape \(n_y, n_a\)",
        ),
        (lambda a, lab, h: (a, lab, {**h, "b_y": h["b_y"][:2]}), ValueError, r"head\['b_y'\] must have shape \(n_y,\)"),
        (lambda a, lab, h: (a, lab, {**h, "b_y": h["b_y"].astype(np.float32)}), TypeError, "expected float64"),
        (lambda a, lab, h: (a * np.nan, lab, h), ValueError, "non-finite"),
    ],
)
def test_bad_head_inputs(k, mutate, exc, message):
    _p, head, _x, _init, labels = _problem(k, "many-to-many")
    a = np.random.default_rng(0).normal(size=(4, 3, 5))
    with pytest.raises(exc, match=message):
        k.softmax_ce_loss(*mutate(a, labels, head))
    with pytest.raises(ValueError, match="mode must be"):
        k.softmax_ce_loss(a, labels, head, "sideways")


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed")
def test_derive_head_compiles(tmp_path):
    out = tmp_path / "head.tex"
    r = CliRunner().invoke(main, ["derive", "b_f", "--head", "softmax-ce", "--standalone", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "Softmax cross-entropy head" in out.read_text() and latex().splitlines()[1] in out.read_text()
    done = subprocess.run(
        ["pdflatex", "-interaction=nonstopmode", "-halt-on-error", out.name], cwd=tmp_path, capture_output=True
    )
    assert done.returncode == 0, done.stdout[-2000:]
