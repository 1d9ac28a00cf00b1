"""A cell with several per-step inputs inside PyTorch: ``RecurrentLayer(cell, …, input_sizes={"z": n_z})`` and
``layer(x, z=z)``, stacked, bidirectional and packed — the layer's output is the NumPy module's, and its gradients
(x, z, hx, every parameter) pass ``torch.autograd.gradcheck``."""

from __future__ import annotations

import numpy as np
import pytest
import several_input_cells as cells

torch = pytest.importorskip("torch")

from symbolic_lstm.torch import RecurrentLayer  # noqa: E402
from torch.func import functional_call  # noqa: E402
from torch.nn.utils.rnn import pack_padded_sequence  # noqa: E402

N_X, N_Z, H = 3, 2, 4


def _inputs(T=4, B=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(T, B, N_X, generator=g, dtype=torch.float64)
    z = torch.randn(T, B, N_Z, generator=g, dtype=torch.float64)
    return x, z


@pytest.mark.parametrize("build", [cells.decoder_gru, cells.decoder_lstm], ids=["decoder_gru", "decoder_lstm"])
def test_one_layer_is_the_numpy_module(build):
    layer = RecurrentLayer(build(), N_X, H, input_sizes={"z": N_Z}, dtype=torch.float64)
    x, z = _inputs()
    out, _ = layer(x, z=z)
    p = {n: getattr(layer, n).detach().numpy() for n in layer.param_names}
    expected = layer.kernels.forward(x.numpy(), p, z=z.numpy())[0]
    np.testing.assert_allclose(out.detach().numpy(), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("backend", ["numpy", "jax"])
def test_stacked_bidirectional_packed_passes_gradcheck(backend, tmp_path, monkeypatch):
    """x, z, hx and every parameter of a 2-layer bidirectional decoder GRU over a packed batch."""
    if backend == "jax":
        pytest.importorskip("jax")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    layer = RecurrentLayer(
        cells.decoder_gru(), N_X, H, num_layers=2, bidirectional=True, input_sizes={"z": N_Z},
        dtype=torch.float64, backend=backend,
    )  # fmt: skip
    x, z = (t.requires_grad_() for t in _inputs(T=3, B=3))
    h0 = (0.5 * torch.randn(4, 3, H, dtype=torch.float64)).requires_grad_()
    names = layer.param_names
    params = tuple(
        (getattr(layer, n).detach() + 0.1 * torch.randn_like(getattr(layer, n))).requires_grad_() for n in names
    )
    lengths = torch.tensor([2, 3, 1])

    def f(x, z, h0, *ps):
        pack = lambda t: pack_padded_sequence(t, lengths, enforce_sorted=False)  # noqa: E731
        out, h_n = functional_call(layer, dict(zip(names, ps, strict=True)), (pack(x), h0), {"z": pack(z)})
        return out.data, h_n

    assert torch.autograd.gradcheck(f, (x, z, h0, *params), eps=1e-6, atol=1e-8, rtol=1e-6)


def test_the_further_inputs_are_named_where_wrong():
    with pytest.raises(ValueError, match=r"input_sizes must give the width of each further input.*missing \['z'\]"):
        RecurrentLayer(cells.decoder_gru(), N_X, H, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"input_sizes\['z'\] must be a positive integer"):
        RecurrentLayer(cells.decoder_gru(), N_X, H, input_sizes={"z": 0}, dtype=torch.float64)
    with pytest.raises(ValueError, match=r"unexpected \['z'\]"):
        RecurrentLayer("gru", N_X, H, input_sizes={"z": 2}, dtype=torch.float64)
    layer = RecurrentLayer(cells.decoder_gru(), N_X, H, input_sizes={"z": N_Z}, dtype=torch.float64)
    x, z = _inputs()
    with pytest.raises(TypeError, match=r"further per-step inputs are z= \(…, 2\); missing \['z'\]"):
        layer(x)
    with pytest.raises(ValueError, match=r"z must have shape \(T, B, width\) = \(4, 3, 2\)"):
        layer(x, z=z[:2])
    with pytest.raises(TypeError, match="z must be a PackedSequence like the input"):
        layer(pack_padded_sequence(x, torch.tensor([4, 2, 3]), enforce_sorted=False), z=z)


def test_the_reverse_direction_reads_z_reversed_too():
    layer = RecurrentLayer(cells.decoder_gru(), N_X, H, bidirectional=True, input_sizes={"z": N_Z}, dtype=torch.float64)
    x, z = _inputs(T=5, B=2)
    out, _ = layer(x, z=z)
    p = {n: getattr(layer, n + "_reverse").detach().numpy() for n in layer.kernels.PARAMS}
    backward_in_time = layer.kernels.forward(x.flip(0).numpy(), p, z=z.flip(0).numpy())[0][::-1]
    np.testing.assert_allclose(out[..., H:].detach().numpy(), backward_in_time, rtol=1e-12, atol=1e-14)
