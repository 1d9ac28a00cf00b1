"""A derived cell inside PyTorch: an ``nn.Module`` whose backward is the derived one (the ``[torch]`` extra).

``RecurrentLayer(cell, input_size, hidden_size)`` runs any built-in or user cell in ``nn.LSTM``'s spirit —
``forward(x, state=None) -> (output, state)`` — with one ``nn.Parameter`` per parameter of the cell, named as
ours (``W_f``, ``b_f`` …).  Its ``torch.autograd.Function`` calls the generated kernels: torch's autograd
records one node for the whole sequence and never sees the per-step operations, so what trains is the
derivation, proved and gradient-checked.

* CPU tensors run the fast NumPy module without copying: ``tensor.numpy()`` and ``torch.from_numpy`` share
  memory both ways (the outputs are views of the kernels' buffers).
* ``backend="jax"`` runs CPU tensors on the cell's JAX module instead (its ``lax.scan`` forward and derived
  backward, compiled by XLA once per shape), handing tensors across through DLPack without copies: 1.4–3.4×
  the NumPy module's speed at batch 1 (long sequences, serving), about level at small batches, slower where
  large products dominate (OpenBLAS's GEMM leads there; ``python bench/peers.py --impls bridge bridge-jax``).
  Needs the ``[jax]`` extra.
* Tensors on other devices (CUDA) run the array-API module on the tensors themselves.
* Gradients flow into ``x`` and the initial state, so layers stack and an initial state can be learned.

Converters map ``nn.LSTM`` (gate order i, f, g, o; two biases that add) and ``nn.GRU`` (r, z, n) state dicts
to ours and back, and :meth:`RecurrentLayer.from_checkpoint` loads a ``train --checkpoint`` file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn

from ..codegen.backends import BACKENDS, DEFAULT, Backend
from ..codegen.loader import module_for
from ..engine.cell import Cell
from ..engine.cells import as_cell
from .exchange import EXCHANGES, Exchange

__all__ = [
    "RecurrentLayer",
    "from_torch_gru",
    "from_torch_lstm",
    "to_torch_gru",
    "to_torch_lstm",
]

_DTYPES = (torch.float32, torch.float64)


def _trainable() -> tuple[str, ...]:
    """The backends a layer may be given: those whose modules train (the array-API module runs a NumPy layer's
    tensors on other devices)."""
    return tuple(name for name, b in BACKENDS.items() if b.trains)


class _Kernels(torch.autograd.Function):
    """One node of torch's graph for the whole sequence: forward and backward are the generated kernels.

    Inputs: (layer, its runner for x's device — :meth:`RecurrentLayer.runner` —, x, *initial states, *parameters);
    outputs: the sequences the kernels' forward returns
    (T, B, n_a each): the output, then the states that are not the output (``Cell.returns``).  The
    kernels' backward consumes the forward cache (it stores the gate gradients in place, and the next forward
    reuses the buffers); a graph backpropagated again (``retain_graph=True``, ``gradcheck``) reruns the forward
    from the saved inputs first.  How the tensors reach the module is the backend's (:mod:`.exchange`).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx, layer: RecurrentLayer, runner: tuple[Exchange, ModuleType], x: torch.Tensor, *rest: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        exchange, module = runner
        n = len(layer.states)
        out = exchange.forward(module, layer, x, rest[:n], rest[n:])
        seqs = tuple(out[:-1])
        ctx.layer, ctx.runner, ctx.cache, ctx.n_inputs = layer, runner, out[-1], 1 + len(rest)
        # references, no copies: the inputs for a second backward over this graph, and the outputs, which are
        # views of the buffers backward reads, so that torch refuses a backward after they were edited in place
        ctx.save_for_backward(x, *rest, *seqs)
        return seqs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        layer, (exchange, module) = ctx.layer, ctx.runner
        x, *rest = ctx.saved_tensors[: ctx.n_inputs]
        n = len(layer.states)
        cache = ctx.cache if ctx.cache is not None else exchange.forward(module, layer, x, rest[:n], rest[n:])[-1]
        ctx.cache = None  # consumed by the kernels' backward below
        names, out = layer.cell.returns, layer.cell.output
        seeds = dict(zip(names, grads, strict=True))
        if seeds[out] is None:  # only another state's last value is used: no gradient from the outputs
            seeds[out] = torch.zeros((x.shape[0], x.shape[1], layer.hidden_size), dtype=x.dtype, device=x.device)
        g = exchange.backward(module, layer, seeds, cache)
        inp = layer.cell.inputs[0]
        return (None, None, g[inp], *(g[f"{s}0"] for s in layer.states), *(g[name] for name in layer.param_names))


class RecurrentLayer(nn.Module):
    """A derived cell run over a sequence, for PyTorch.

    Args:
        cell: a built-in cell name (``"lstm"``), ``"path/file.py:NAME"``, or a :class:`~symbolic_lstm.Cell`.
        input_size: n_x.
        hidden_size: n_a.
        batch_first: inputs and outputs (B, T, ·) instead of (T, B, ·).
        dtype: torch.float32 or torch.float64 (default: torch's default dtype).
        device: where the parameters live; CUDA runs the array-API module.
        seed: seed of the initial parameters (the generated module's ``init_params``).
        backend: what runs CPU tensors: ``"numpy"`` (the NumPy module, default) or ``"jax"`` (the JAX
            module through DLPack; faster at batch 1; the ``[jax]`` extra).

    Parameters are ``nn.Parameter`` s named as the cell's (``W_f`` (n_a, n_a + n_x), ``b_f`` (n_a,) …).
    """

    def __init__(
        self,
        cell: str | Cell,
        input_size: int,
        hidden_size: int,
        batch_first: bool = False,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
        backend: str | Backend = DEFAULT,
    ) -> None:
        super().__init__()
        backend = backend.name if isinstance(backend, Backend) else backend
        if backend not in _trainable():
            raise ValueError(f"backend must be one of {', '.join(map(repr, _trainable()))}, got {backend!r}")
        if (missing := BACKENDS[backend].missing()) is not None:
            raise ImportError(f"backend={backend!r} needs {missing}")
        cell = as_cell(cell)
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in _DTYPES:
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.cell, self.input_size, self.hidden_size, self.batch_first = cell, input_size, hidden_size, batch_first
        self.backend = backend
        self._load_modules()
        init = self.kernels.init_params(input_size, hidden_size, seed=seed, dtype=np.dtype(str(dtype).split(".")[-1]))
        for name, value in init.items():
            self.register_parameter(name, nn.Parameter(torch.as_tensor(value, device=device)))

    # -- pickling: deepcopy, torch.save of the whole module ----------------------------------------------
    def __getstate__(self) -> dict:
        """Everything but the imported kernel modules (a module does not pickle): the cell (its definition,
        which pickles by value) is kept, and the modules are found again — or regenerated — on unpickling."""
        state = dict(super().__getstate__() if hasattr(nn.Module, "__getstate__") else self.__dict__)
        state.update(kernels=None, _kernel_modules=None)
        return state

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        self._load_modules()

    def _load_modules(self) -> None:
        """The NumPy module (the parameters' names and initial values) and the backend's, found or generated."""
        self.kernels: ModuleType = module_for(self.cell, backend=DEFAULT).module
        self._kernel_modules: dict[str, ModuleType] = {DEFAULT: self.kernels}
        self.module_on(BACKENDS[self.backend])

    # -- what the layer is ---------------------------------------------------------------------------
    @property
    def states(self) -> tuple[str, ...]:
        return self.cell.states

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(self.kernels.PARAMS)

    @property
    def dtype(self) -> torch.dtype:
        return next(self.parameters()).dtype

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def module_on(self, backend: Backend) -> ModuleType:
        """The cell's module of ``backend``, found or generated on first use."""
        if backend.name not in self._kernel_modules:
            self._kernel_modules[backend.name] = module_for(self.cell, backend=backend).module
        return self._kernel_modules[backend.name]

    def runner(self, device: torch.device) -> tuple[Exchange, ModuleType]:
        """How tensors on ``device`` reach which module: the layer's backend where its hand-over reaches that
        device, else the backend it names for elsewhere (NumPy → the array-API module on CUDA).

        Raises:
            ValueError: the backend's modules run CPU tensors only and name no other for ``device``.
        """
        backend = BACKENDS[self.backend]
        exchange = EXCHANGES[backend.tensors]
        if exchange.cpu_only and device.type != "cpu":
            if backend.elsewhere is None:
                raise ValueError(
                    f"backend={backend.name!r} runs CPU tensors, got x on {device}; use backend={DEFAULT!r} there"
                )
            backend = BACKENDS[backend.elsewhere]
            exchange = EXCHANGES[backend.tensors]
        return exchange, self.module_on(backend)

    def extra_repr(self) -> str:
        return (
            f"{self.cell.spec}, {self.input_size}, {self.hidden_size}, states={self.states}"
            + (", batch_first=True" if self.batch_first else "")
            + (f", backend={self.backend!r}" if BACKENDS[self.backend].suffix else "")  # not the plain <cell> module
        )

    # -- running ------------------------------------------------------------------------------------
    def forward(
        self, x: torch.Tensor, state: tuple[torch.Tensor, ...] | torch.Tensor | None = None
    ) -> tuple[torch.Tensor, tuple[torch.Tensor, ...]]:
        """Run the cell over ``x``: (T, B, n_x), or (B, T, n_x) with ``batch_first``.

        ``state``: the initial value of each of the cell's states (a tuple in ``self.states`` order, each
        (B, n_a)), or None for zeros.  Returns (output, state): the output at every step, (T, B, n_a)
        (batch-first: (B, T, n_a)), and every state's last value (a tuple, each (B, n_a)).
        """
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"x must be a torch.Tensor, got {type(x).__name__}")
        if x.dim() != 3 or x.shape[-1] != self.input_size:
            order = "(B, T, n_x)" if self.batch_first else "(T, B, n_x)"
            raise ValueError(f"x must have shape {order} with n_x = {self.input_size}, got {tuple(x.shape)}")
        for name in self.param_names:
            p = getattr(self, name)
            if p.dtype not in _DTYPES:
                raise TypeError(
                    f"the layer's parameter {name} is {p.dtype}; the generated kernels run torch.float32 and "
                    "torch.float64: use layer.float() or layer.double()"
                )
            if p.dtype != self.dtype:
                raise TypeError(
                    f"the layer's parameters mix dtypes: {name} is {p.dtype}, {self.param_names[0]} is {self.dtype}; "
                    "use layer.float() or layer.double()"
                )
        if x.dtype != self.dtype:
            raise TypeError(f"x has dtype {x.dtype} but the layer's parameters are {self.dtype}")
        if x.device != self.device:
            raise ValueError(f"x is on {x.device} but the layer's parameters are on {self.device}")
        runner = self.runner(x.device)  # refuses a device the backend's modules cannot reach, before any work
        seq = x.transpose(0, 1) if self.batch_first else x
        if not seq.is_contiguous():
            seq = seq.contiguous()
        B = seq.shape[1]
        initial = self._initial(state, B)
        params = [getattr(self, name) for name in self.param_names]
        seqs = dict(zip(self.cell.returns, _Kernels.apply(self, runner, seq, *initial, *params), strict=True))
        out = seqs[self.cell.output]
        last = tuple(seqs[s][-1] for s in self.states) if seq.shape[0] else tuple(initial)
        return (out.transpose(0, 1) if self.batch_first else out), last

    def _initial(self, state: tuple[torch.Tensor, ...] | torch.Tensor | None, B: int) -> list[torch.Tensor]:
        if state is None:
            return [torch.zeros(B, self.hidden_size, dtype=self.dtype, device=self.device) for _ in self.states]
        if isinstance(state, torch.Tensor):
            state = (state,)
        if len(state) != len(self.states):
            raise ValueError(f"state must hold {len(self.states)} tensors ({', '.join(self.states)}), got {len(state)}")
        for s, t in zip(self.states, state, strict=True):
            if tuple(t.shape) != (B, self.hidden_size):
                raise ValueError(f"state {s} must have shape (B, n_a) = {(B, self.hidden_size)}, got {tuple(t.shape)}")
            if t.dtype != self.dtype or t.device != self.device:
                raise TypeError(f"state {s} must be {self.dtype} on {self.device}, got {t.dtype} on {t.device}")
        return list(state)

    # -- from elsewhere -------------------------------------------------------------------------------
    @classmethod
    def from_checkpoint(
        cls, path: str | Path, cell: str | Cell | None = None, *, cell_changed: bool = False, **kwargs: object
    ) -> RecurrentLayer:
        """The cell a ``symbolic-lstm train --checkpoint`` file trained, with its parameters (float64 unless
        ``dtype`` is given).  The read-out head is in ``layer.head`` (a dict of tensors).

        A checkpoint never runs code by itself: a built-in cell is rebuilt by its name; a cell from a file must
        be passed as ``cell`` (a ``path.py:NAME`` — where the file is now — or a Cell), and is refused when its
        definition differs from the one trained (its digest) unless ``cell_changed``.

        Raises:
            ValueError: not a checkpoint, a damaged one, a cell file it names but that was not passed, a
                different cell, or parameters that do not fit the cell.
        """
        from ..train import check_start, load_checkpoint, trained_cell
        from ..train.data import TEXTS

        config, start = load_checkpoint(path)
        cell, _ = trained_cell(config, path, None if cell is None else as_cell(cell), cell_changed)
        params, head = start[1], start[2]
        n_y = head["W_y"].shape[0] if "W_y" in head else 1
        n_x = n_y if config.data in TEXTS else 1  # a text: one-hot characters in and out; a series: one number
        kwargs.setdefault("dtype", torch.float64)
        layer = cls(cell, n_x, config.hidden, **kwargs)  # type: ignore[arg-type]
        check_start(path, layer.kernels, config, n_x, n_y, start)
        layer.load_params(params)
        layer.head = {k: torch.as_tensor(v, dtype=layer.dtype) for k, v in head.items()}
        return layer

    def load_params(self, params: Mapping[str, np.ndarray | torch.Tensor]) -> None:
        """Copy parameters in our layout (``W_f`` …) into the layer (ValueError naming a missing or misshapen one)."""
        missing = [n for n in self.param_names if n not in params]
        if missing:
            raise ValueError(f"parameters {missing} are missing; expected {list(self.param_names)}")
        with torch.no_grad():
            for name in self.param_names:
                value = torch.as_tensor(np.asarray(params[name]) if not torch.is_tensor(params[name]) else params[name])
                target = getattr(self, name)
                if tuple(value.shape) != tuple(target.shape):
                    raise ValueError(f"{name} must have shape {tuple(target.shape)}, got {tuple(value.shape)}")
                target.copy_(value)


# -- converters: torch's layouts ↔ the article's -----------------------------------------------------------

#: torch.nn.LSTM's gate rows (i, f, g, o) under the article's names.
_LSTM_GATES = {"u": 0, "f": 1, "c": 2, "o": 3}
#: torch.nn.GRU's gate rows (r, z, n).
_GRU_GATES = {"r": 0, "z": 1, "n": 2}


def _rows(w: torch.Tensor | np.ndarray, k: int, n_a: int) -> np.ndarray:
    return np.asarray(w.detach().cpu().numpy() if torch.is_tensor(w) else w)[k * n_a : (k + 1) * n_a]


def from_torch_lstm(module_or_state: nn.LSTM | Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``nn.LSTM``'s layer-0 weights as the ``lstm`` cell's: W_g = [W_hg | W_ig] over [a<t-1>, x<t>],
    b_g = b_ig + b_hg, torch's gates i, f, g, o as the article's u, f, c, o."""
    sd = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    n_a = sd["weight_hh_l0"].shape[1]
    out = {}
    for g in "fuco":
        k = _LSTM_GATES[g]
        out[f"W_{g}"] = np.concatenate([_rows(sd["weight_hh_l0"], k, n_a), _rows(sd["weight_ih_l0"], k, n_a)], axis=1)
        out[f"b_{g}"] = _rows(sd.get("bias_ih_l0", np.zeros(4 * n_a)), k, n_a) + _rows(
            sd.get("bias_hh_l0", np.zeros(4 * n_a)), k, n_a
        )
    return out


def to_torch_lstm(params: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``lstm`` cell's parameters as an ``nn.LSTM`` state dict (``bias_hh_l0`` zero: the biases add)."""
    p = {k: np.asarray(v.detach().cpu().numpy() if torch.is_tensor(v) else v) for k, v in params.items()}
    n_a = p["W_f"].shape[0]
    order = sorted("fuco", key=_LSTM_GATES.__getitem__)
    return {
        "weight_ih_l0": torch.from_numpy(np.concatenate([p[f"W_{g}"][:, n_a:] for g in order])),
        "weight_hh_l0": torch.from_numpy(np.concatenate([p[f"W_{g}"][:, :n_a] for g in order])),
        "bias_ih_l0": torch.from_numpy(np.concatenate([p[f"b_{g}"] for g in order])),
        "bias_hh_l0": torch.from_numpy(np.zeros(4 * n_a, dtype=p["b_f"].dtype)),
    }


def from_torch_gru(module_or_state: nn.GRU | Mapping[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """``nn.GRU``'s layer-0 weights as the ``gru_torch`` cell's (the README's recipe)."""
    sd = module_or_state.state_dict() if isinstance(module_or_state, nn.Module) else module_or_state
    n_a = sd["weight_hh_l0"].shape[1]
    w_ih, w_hh = sd["weight_ih_l0"], sd["weight_hh_l0"]
    b_ih, b_hh = sd.get("bias_ih_l0", np.zeros(3 * n_a)), sd.get("bias_hh_l0", np.zeros(3 * n_a))
    r, z, n = (_GRU_GATES[g] for g in "rzn")
    return {
        "W_r": np.concatenate([_rows(w_hh, r, n_a), _rows(w_ih, r, n_a)], axis=1),
        "b_r": _rows(b_ih, r, n_a) + _rows(b_hh, r, n_a),
        "W_z": np.concatenate([_rows(w_hh, z, n_a), _rows(w_ih, z, n_a)], axis=1),
        "b_z": _rows(b_ih, z, n_a) + _rows(b_hh, z, n_a),
        "W_in": _rows(w_ih, n, n_a),
        "b_in": _rows(b_ih, n, n_a),
        "W_hn": _rows(w_hh, n, n_a),
        "b_hn": _rows(b_hh, n, n_a),
    }


def to_torch_gru(params: Mapping[str, np.ndarray | torch.Tensor]) -> dict[str, torch.Tensor]:
    """The ``gru_torch`` cell's parameters as an ``nn.GRU`` state dict (r's and z's bias all in ``bias_ih_l0``)."""
    p = {k: np.asarray(v.detach().cpu().numpy() if torch.is_tensor(v) else v) for k, v in params.items()}
    n_a = p["W_r"].shape[0]
    zero = np.zeros(n_a, dtype=p["b_r"].dtype)
    return {
        "weight_ih_l0": torch.from_numpy(np.concatenate([p["W_r"][:, n_a:], p["W_z"][:, n_a:], p["W_in"]])),
        "weight_hh_l0": torch.from_numpy(np.concatenate([p["W_r"][:, :n_a], p["W_z"][:, :n_a], p["W_hn"]])),
        "bias_ih_l0": torch.from_numpy(np.concatenate([p["b_r"], p["b_z"], p["b_in"]])),
        "bias_hh_l0": torch.from_numpy(np.concatenate([zero, zero, p["b_hn"]])),
    }
