"""Independent cross-check: the same weights in torch.nn.LSTM give the same outputs and gradients.

torch's gate order is i, f, g, o (= Γ_u, Γ_f, c~, Γ_o); weight_ih multiplies x<t>, weight_hh a<t-1>.
Skipped where torch is not installed (``pip install torch`` or the ``crosscheck`` extra).
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")


def _to_torch(p, n_a):
    order = ["u", "f", "c", "o"]
    W = np.concatenate([p[f"W_{g}"] for g in order])
    b = np.concatenate([p[f"b_{g}"] for g in order])
    lstm = torch.nn.LSTM(W.shape[1] - n_a, n_a, dtype=torch.float64)
    with torch.no_grad():
        lstm.weight_hh_l0.copy_(torch.from_numpy(W[:, :n_a]))
        lstm.weight_ih_l0.copy_(torch.from_numpy(W[:, n_a:]))
        lstm.bias_ih_l0.copy_(torch.from_numpy(b))
        lstm.bias_hh_l0.zero_()
    return lstm, order


@pytest.mark.parametrize("mode", ["many-to-many", "many-to-one"])
@pytest.mark.parametrize(("T", "B", "n_x", "n_a"), [(5, 3, 4, 6), (1, 1, 2, 3), (8, 2, 3, 2)])
def test_matches_torch(k, mode, T, B, n_x, n_a):
    rng = np.random.default_rng(T * 100 + B)
    p = {key: 1.5 * v for key, v in k.init_params(n_x, n_a, seed=3).items()}
    x, a0, c0 = rng.normal(size=(T, B, n_x)), rng.normal(size=(B, n_a)), rng.normal(size=(B, n_a))
    y = rng.normal(size=(T, B, n_a) if mode == "many-to-many" else (B, n_a))

    a, c, cache = k.forward(x, p, a0, c0)
    E, da = k.mse_loss(a, y, mode)
    g = k.backward(da, cache)

    lstm, order = _to_torch(p, n_a)
    xt = torch.tensor(x, requires_grad=True)
    h0 = torch.tensor(a0[None], requires_grad=True)
    s0 = torch.tensor(c0[None], requires_grad=True)
    out, (_hT, cT) = lstm(xt, (h0, s0))
    scored = out if mode == "many-to-many" else out[-1]
    Et = 0.5 * ((scored - torch.from_numpy(y)) ** 2).sum()
    Et.backward()

    np.testing.assert_allclose(a, out.detach().numpy(), rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(c[-1], cT[0].detach().numpy(), rtol=1e-12, atol=1e-13)
    assert E == pytest.approx(Et.item(), rel=1e-12)
    np.testing.assert_allclose(g["x"], xt.grad.numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["a0"], h0.grad[0].numpy(), rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(g["c0"], s0.grad[0].numpy(), rtol=1e-10, atol=1e-12)
    dW = np.concatenate([lstm.weight_hh_l0.grad.numpy(), lstm.weight_ih_l0.grad.numpy()], axis=1)
    db = lstm.bias_ih_l0.grad.numpy()
    for j, gate in enumerate(order):
        rows = slice(j * n_a, (j + 1) * n_a)
        np.testing.assert_allclose(g[f"W_{gate}"], dW[rows], rtol=1e-10, atol=1e-12, err_msg=gate)
        np.testing.assert_allclose(g[f"b_{gate}"], db[rows], rtol=1e-10, atol=1e-12, err_msg=gate)
