"""A derived cell inside PyTorch: an ``nn.Module`` whose backward is the derived one (the ``[torch]`` extra).

``RecurrentLayer(cell, input_size, hidden_size, num_layers=1, bias=True, batch_first=False, dropout=0.0,
bidirectional=False)`` runs any built-in or user cell as a drop-in for ``nn.LSTM`` / ``nn.GRU`` —
``forward(input, hx=None) -> (output, h_n)`` with their shapes, stacked layers, both directions, dropout between
layers and ``PackedSequence`` inputs — with one ``nn.Parameter`` per parameter of the cell, per layer and
direction, named as ours (``W_f``, ``b_f`` … for layer 0; ``W_f_l1``, ``W_f_reverse``, ``W_f_l1_reverse`` …
for the others).  Each layer and direction is one call of a ``torch.autograd.Function`` that runs the generated
kernels: torch's autograd records one node per layer and direction and never sees the per-step operations, so
what trains is the derivation, proved and gradient-checked.

* CPU tensors run the fast NumPy module without copying: ``tensor.numpy()`` and ``torch.from_numpy`` share
  memory both ways (the outputs are views of the kernels' buffers).
* ``backend="jax"`` runs CPU tensors on the cell's JAX module instead (its ``lax.scan`` forward and derived
  backward, compiled by XLA once per shape), handing tensors across through DLPack without copies: 1.4–3.4×
  the NumPy module's speed at batch 1 (long sequences, serving), about level at small batches, slower where
  large products dominate (OpenBLAS's GEMM leads there; ``python bench/peers.py --impls bridge bridge-jax``).
  Needs the ``[jax]`` extra.
* Tensors on other devices (CUDA) run the array-API module on the tensors themselves.
* Gradients flow into the input, the initial states and every parameter.

:func:`from_torch` turns an ``nn.LSTM`` (the ``lstm`` cell; gate order i, f, g, o; two biases that add) or an
``nn.GRU`` (``gru_torch``; r, z, n) of any configuration into a layer with the same weights, :func:`to_torch`
turns one back; ``from_torch_lstm`` … convert layer 0's state dict, and :meth:`RecurrentLayer.from_checkpoint`
loads a ``train --checkpoint`` file.
"""

from __future__ import annotations

from torch import nn

from ..engine.cells import get_cell
from .layer import RecurrentLayer, suffix, without_biases
from .torch_layouts import LAYOUTS, from_torch_gru, from_torch_lstm, to_torch_gru, to_torch_lstm, torch_suffix

__all__ = [
    "RecurrentLayer",
    "from_torch",
    "from_torch_gru",
    "from_torch_lstm",
    "suffix",
    "to_torch",
    "to_torch_gru",
    "to_torch_lstm",
    "without_biases",
]


def from_torch(module: nn.LSTM | nn.GRU, **kwargs: object) -> RecurrentLayer:
    """A :class:`RecurrentLayer` computing what ``module`` computes: an ``nn.LSTM`` as the ``lstm`` cell, an
    ``nn.GRU`` as ``gru_torch``, with its num_layers, bias, batch_first, dropout, bidirectional, dtype, device,
    training mode and weights (each bias pair b_ih + b_hh added into one b, but GRU's b_in and b_hn apart).

    ``kwargs`` go to :class:`RecurrentLayer` (``backend=``, ``seed=`` …).

    Raises:
        TypeError: ``module`` is not an ``nn.LSTM`` or ``nn.GRU``, or its dtype is not float32/float64.
        ValueError: an ``nn.LSTM`` with ``proj_size`` (its output is projected: no cell of ours computes that).
    """
    kind = next((k for k, (cls, *_) in LAYOUTS.items() if isinstance(module, cls)), None)
    if kind is None:
        raise TypeError(f"from_torch takes an nn.LSTM or an nn.GRU, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"from_torch: nn.LSTM with proj_size={module.proj_size} projects its hidden state; the lstm cell has "
            "none (proj_size=0 converts)"
        )
    _, cell, convert, _ = LAYOUTS[kind]
    weight = module.weight_ih_l0
    layer = RecurrentLayer(
        cell,
        module.input_size,
        module.hidden_size,
        module.num_layers,
        module.bias,
        module.batch_first,
        float(module.dropout),
        module.bidirectional,
        dtype=weight.dtype,
        device=weight.device,
        **kwargs,  # type: ignore[arg-type]
    )
    sd, params = module.state_dict(), {}
    for k in range(layer.num_layers):
        for d in range(layer.directions):
            ours = convert(sd, torch_suffix(k, bool(d)), module.bias)
            params.update({n + suffix(k, bool(d)): v for n, v in ours.items()})
    layer.load_params(params)
    layer.train(module.training)
    return layer


def to_torch(layer: RecurrentLayer) -> nn.LSTM | nn.GRU:
    """The ``nn.LSTM`` (for a layer of the ``lstm`` cell) or ``nn.GRU`` (``gru_torch``) that computes what
    ``layer`` computes: its settings, dtype, device, training mode and weights (each b in ``bias_ih``,
    ``bias_hh`` zero — GRU's b_hn in ``bias_hh`` —, so the sums are the layer's).

    Raises:
        ValueError: the layer's cell is neither (torch has no module for it).
    """
    if not isinstance(layer, RecurrentLayer):
        raise TypeError(f"to_torch takes a RecurrentLayer, got {type(layer).__name__}")

    def runs(cell: str) -> bool:
        own = get_cell(cell)
        return layer.cell.digest == (own if layer.bias else without_biases(own)).digest

    kind = next((k for k, (_, cell, *_) in LAYOUTS.items() if runs(cell)), None)
    if kind is None:
        raise ValueError(
            f"to_torch converts layers of the lstm cell (to nn.LSTM) and of gru_torch (to nn.GRU); this layer runs "
            f"{layer.cell.spec!r}"
        )
    cls, _, _, convert = LAYOUTS[kind]
    module = cls(
        layer.input_size,
        layer.hidden_size,
        num_layers=layer.num_layers,
        bias=layer.bias,
        batch_first=layer.batch_first,
        dropout=layer.dropout,
        bidirectional=layer.bidirectional,
        dtype=layer.dtype,
        device=layer.device,
    )
    sd = {}
    for k in range(layer.num_layers):
        for d in range(layer.directions):
            names = layer.names_of(k, bool(d))
            params = {n: getattr(layer, s) for n, s in zip(layer.kernels.PARAMS, names, strict=True)}
            sd.update(convert(params, torch_suffix(k, bool(d))))
    module.load_state_dict(sd)
    module.train(layer.training)
    return module
