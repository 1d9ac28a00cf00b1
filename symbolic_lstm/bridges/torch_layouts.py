"""torch's parameter layouts ↔ ours, state dict by state dict: one layer and direction of ``nn.LSTM`` (gate rows
i, f, g, o; two biases that add) as the ``lstm`` cell's parameters and back, of ``nn.GRU`` (r, z, n; n's two
biases apart, b_hn inside r·(W_hn h + b_hn)) as ``gru_torch``'s.  ``torch_suffix`` names torch's layer and
direction (``_l0``, ``_l1_reverse`` …); :mod:`.torch` puts whole modules together from these.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Union

import numpy as np
import torch
from torch import nn

__all__ = ["LAYOUTS", "from_torch_gru", "from_torch_lstm", "to_torch_gru", "to_torch_lstm", "torch_suffix"]

#: torch.nn.LSTM's gate rows (i, f, g, o) under the article's names.
_LSTM_GATES = {"u": 0, "f": 1, "c": 2, "o": 3}
#: torch.nn.GRU's gate rows (r, z, n).
_GRU_GATES = {"r": 0, "z": 1, "n": 2}


def _rows(w: torch.Tensor | np.ndarray, k: int, n_a: int) -> np.ndarray:
    return np.asarray(w.detach().cpu().numpy() if torch.is_tensor(w) else w)[k * n_a : (k + 1) * n_a]


def _numpy(params: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, np.ndarray]:
    return {k: np.asarray(v.detach().cpu().numpy() if torch.is_tensor(v) else v) for k, v in params.items()}


def _lstm_from(sd: Mapping[str, torch.Tensor | np.ndarray], sfx: str, bias: bool) -> dict[str, np.ndarray]:
    """One layer and direction of an ``nn.LSTM`` state dict (torch's suffix ``sfx``: ``_l0``, ``_l1_reverse`` …)
    as the ``lstm`` cell's parameters; ``bias``: with b_g = b_ig + b_hg (zeros where torch has no bias)."""
    w_ih, w_hh = sd[f"weight_ih{sfx}"], sd[f"weight_hh{sfx}"]
    n_a = w_hh.shape[1]
    out = {}
    for g in "fuco":
        k = _LSTM_GATES[g]
        out[f"W_{g}"] = np.concatenate([_rows(w_hh, k, n_a), _rows(w_ih, k, n_a)], axis=1)
        if bias:
            zero = np.zeros(4 * n_a, dtype=out[f"W_{g}"].dtype)
            b_ih, b_hh = sd.get(f"bias_ih{sfx}", zero), sd.get(f"bias_hh{sfx}", zero)
            out[f"b_{g}"] = _rows(b_ih, k, n_a) + _rows(b_hh, k, n_a)
    return out


def _lstm_to(params: Mapping[str, np.ndarray | torch.Tensor], sfx: str) -> dict[str, torch.Tensor]:
    """The ``lstm`` cell's parameters as one layer and direction of an ``nn.LSTM`` state dict: b_g all in
    ``bias_ih`` (``bias_hh`` zero: the biases add); no biases when the parameters have none."""
    p = _numpy(params)
    n_a = p["W_f"].shape[0]
    order = sorted("fuco", key=_LSTM_GATES.__getitem__)
    out = {
        f"weight_ih{sfx}": torch.from_numpy(np.concatenate([p[f"W_{g}"][:, n_a:] for g in order])),
        f"weight_hh{sfx}": torch.from_numpy(np.concatenate([p[f"W_{g}"][:, :n_a] for g in order])),
    }
    if "b_f" in p:
        out[f"bias_ih{sfx}"] = torch.from_numpy(np.concatenate([p[f"b_{g}"] for g in order]))
        out[f"bias_hh{sfx}"] = torch.from_numpy(np.zeros(4 * n_a, dtype=p["b_f"].dtype))
    return out


def _gru_from(sd: Mapping[str, torch.Tensor | np.ndarray], sfx: str, bias: bool) -> dict[str, np.ndarray]:
    """One layer and direction of an ``nn.GRU`` state dict as the ``gru_torch`` cell's parameters (b_r and b_z
    the sums of torch's two, b_in and b_hn apart)."""
    w_ih, w_hh = sd[f"weight_ih{sfx}"], sd[f"weight_hh{sfx}"]
    n_a = w_hh.shape[1]
    r, z, n = (_GRU_GATES[g] for g in "rzn")
    out = {
        "W_r": np.concatenate([_rows(w_hh, r, n_a), _rows(w_ih, r, n_a)], axis=1),
        "W_z": np.concatenate([_rows(w_hh, z, n_a), _rows(w_ih, z, n_a)], axis=1),
        "W_in": _rows(w_ih, n, n_a),
        "W_hn": _rows(w_hh, n, n_a),
    }
    if bias:
        zero = np.zeros(3 * n_a, dtype=out["W_r"].dtype)
        b_ih, b_hh = sd.get(f"bias_ih{sfx}", zero), sd.get(f"bias_hh{sfx}", zero)
        out.update(
            b_r=_rows(b_ih, r, n_a) + _rows(b_hh, r, n_a),
            b_z=_rows(b_ih, z, n_a) + _rows(b_hh, z, n_a),
            b_in=_rows(b_ih, n, n_a),
            b_hn=_rows(b_hh, n, n_a),
        )
    return {k: out[k] for k in ("W_r", "b_r", "W_z", "b_z", "W_in", "b_in", "W_hn", "b_hn") if k in out}


def _gru_to(params: Mapping[str, np.ndarray | torch.Tensor], sfx: str) -> dict[str, torch.Tensor]:
    """The ``gru_torch`` cell's parameters as one layer and direction of an ``nn.GRU`` state dict (r's and z's
    bias all in ``bias_ih``); no biases when the parameters have none."""
    p = _numpy(params)
    n_a = p["W_r"].shape[0]
    out = {
        f"weight_ih{sfx}": torch.from_numpy(np.concatenate([p["W_r"][:, n_a:], p["W_z"][:, n_a:], p["W_in"]])),
        f"weight_hh{sfx}": torch.from_numpy(np.concatenate([p["W_r"][:, :n_a], p["W_z"][:, :n_a], p["W_hn"]])),
    }
    if "b_r" in p:
        zero = np.zeros(n_a, dtype=p["b_r"].dtype)
        out[f"bias_ih{sfx}"] = torch.from_numpy(np.concatenate([p["b_r"], p["b_z"], p["b_in"]]))
        out[f"bias_hh{sfx}"] = torch.from_numpy(np.concatenate([zero, zero, p["b_hn"]]))
    return out


def _state_dict(module_or_state: nn.Module | Mapping[str, torch.Tensor]) -> Mapping[str, torch.Tensor]:
    return module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state


def from_torch_lstm(module_or_state: nn.LSTM | Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``nn.LSTM``'s layer-0 weights as the ``lstm`` cell's: W_g = [W_hg | W_ig] over [a<t-1>, x<t>],
    b_g = b_ig + b_hg (zeros for a module without biases), torch's gates i, f, g, o as the article's u, f, c, o."""
    return _lstm_from(_state_dict(module_or_state), "_l0", bias=True)


def to_torch_lstm(params: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``lstm`` cell's parameters as an ``nn.LSTM`` state dict (``bias_hh_l0`` zero: the biases add)."""
    return _lstm_to(params, "_l0")


def from_torch_gru(module_or_state: nn.GRU | Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``nn.GRU``'s layer-0 weights as the ``gru_torch`` cell's (the README's recipe)."""
    return _gru_from(_state_dict(module_or_state), "_l0", bias=True)


def to_torch_gru(params: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``gru_torch`` cell's parameters as an ``nn.GRU`` state dict (r's and z's bias all in ``bias_ih_l0``)."""
    return _gru_to(params, "_l0")


# typing's Union, not `|`: the docs build imports this module with torch mocked, where `|` on torch.Tensor fails
Params = Mapping[str, Union[torch.Tensor, np.ndarray]]  # noqa: UP007
From = Callable[[Params, str, bool], dict[str, np.ndarray]]
To = Callable[[Params, str], dict[str, torch.Tensor]]

#: What each torch module converts through: its class, our cell, and one layer-direction's converters.
LAYOUTS: dict[str, tuple[type[nn.Module], str, From, To]] = {
    "lstm": (nn.LSTM, "lstm", _lstm_from, _lstm_to),
    "gru": (nn.GRU, "gru_torch", _gru_from, _gru_to),
}


def torch_suffix(layer: int, reverse: bool) -> str:
    """torch's suffix of a layer and direction's parameters: ``_l0``, ``_l0_reverse``, ``_l1`` …"""
    return f"_l{layer}" + ("_reverse" if reverse else "")
