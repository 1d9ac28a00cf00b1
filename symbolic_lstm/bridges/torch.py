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

import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..codegen.backends import BACKENDS, DEFAULT, Backend
from ..codegen.loader import module_for
from ..engine.cell import Cell
from ..engine.cells import as_cell, get_cell
from ..engine.stages import Linear
from .exchange import EXCHANGES, Exchange

__all__ = [
    "RecurrentLayer",
    "from_torch",
    "from_torch_gru",
    "from_torch_lstm",
    "to_torch",
    "to_torch_gru",
    "to_torch_lstm",
]

_DTYPES = (torch.float32, torch.float64)

State = torch.Tensor | tuple[torch.Tensor, ...]


def _trainable() -> tuple[str, ...]:
    """The backends a layer may be given: those whose modules train (the array-API module runs a NumPy layer's
    tensors on other devices)."""
    return tuple(name for name, b in BACKENDS.items() if b.trains)


def without_biases(cell: Cell) -> Cell:
    """``cell`` with every linear stage's bias dropped (``W [a, x]`` instead of ``W [a, x] + b``): what
    ``bias=False`` runs.  Unit parameters (peephole weights, LayerNorm's γ and β) stay; the name and origin stay,
    and the kernels are generated on first use like any variant of a cell (keyed by their source hash)."""
    stages = tuple(replace(st, bias=None) if isinstance(st, Linear) else st for st in cell.stages)
    return replace(cell, stages=stages)


def suffix(layer: int, reverse: bool) -> str:
    """The suffix of layer ``layer``'s parameters in one direction: ``""`` for layer 0 forward (the cell's own
    names), ``"_l1"``, ``"_reverse"``, ``"_l1_reverse"`` … for the others (``nn.LSTM``'s ``_l{k}`` and
    ``_reverse``, without ``_l0``)."""
    return ("" if layer == 0 else f"_l{layer}") + ("_reverse" if reverse else "")


@dataclass(frozen=True)
class Run:
    """What one kernel call runs: the cell over inputs of ``input_size`` units with ``hidden_size`` units, the
    parameters under the module's own names (``param_names``, the generated ``PARAMS``)."""

    cell: Cell
    input_size: int
    hidden_size: int
    param_names: tuple[str, ...]

    @property
    def states(self) -> tuple[str, ...]:
        return self.cell.states


class _Kernels(torch.autograd.Function):
    """One node of torch's graph for one layer and direction over the whole sequence: forward and backward are
    the generated kernels.

    Inputs: (the :class:`Run`, its runner for x's device — :meth:`RecurrentLayer.runner` —, the lengths (a CPU
    int64 tensor (B,), or None for all T), x (T, B, n_x), *initial states (B, n_a), *parameters (the module's
    order)); outputs: the sequences the kernels' forward returns (T, B, n_a each): the output, then the states
    that are not the output (``Cell.returns``).  The kernels' backward consumes the forward cache (it stores the
    gate gradients in place, and the next forward reuses the buffers); a graph backpropagated again
    (``retain_graph=True``, ``gradcheck``) reruns the forward from the saved inputs first.  How the tensors reach
    the module is the backend's (:mod:`.exchange`).
    """

    @staticmethod
    def forward(  # type: ignore[override]
        ctx,
        run: Run,
        runner: tuple[Exchange, ModuleType],
        lengths: torch.Tensor | None,
        x: torch.Tensor,
        *rest: torch.Tensor,
    ) -> tuple[torch.Tensor, ...]:
        exchange, module = runner
        n = len(run.states)
        out = exchange.forward(module, run, x, rest[:n], rest[n:], lengths)
        seqs = tuple(out[:-1])
        ctx.run, ctx.runner, ctx.lengths, ctx.cache, ctx.n_inputs = run, runner, lengths, out[-1], 1 + len(rest)
        # references, no copies: the inputs for a second backward over this graph, and the outputs, which are
        # views of the buffers backward reads, so that torch refuses a backward after they were edited in place
        ctx.save_for_backward(x, *rest, *seqs)
        return seqs

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, *grads: torch.Tensor | None) -> tuple[torch.Tensor | None, ...]:  # type: ignore[override]
        run, (exchange, module) = ctx.run, ctx.runner
        x, *rest = ctx.saved_tensors[: ctx.n_inputs]
        n = len(run.states)
        if ctx.cache is None:
            cache = exchange.forward(module, run, x, rest[:n], rest[n:], ctx.lengths)[-1]
        else:
            cache = ctx.cache
        ctx.cache = None  # consumed by the kernels' backward below
        names, out = run.cell.returns, run.cell.output
        seeds = dict(zip(names, grads, strict=True))
        if seeds[out] is None:  # only another state's last value is used: no gradient from the outputs
            seeds[out] = torch.zeros((x.shape[0], x.shape[1], run.hidden_size), dtype=x.dtype, device=x.device)
        g = exchange.backward(module, run, seeds, cache)
        inp = run.cell.inputs[0]
        return (None, None, None, g[inp], *(g[f"{s}0"] for s in run.states), *(g[p] for p in run.param_names))


def _reverse(seq: torch.Tensor, lengths: torch.Tensor | None) -> torch.Tensor:
    """Each sequence of ``seq`` (T, B, ·) reversed within its own length: step t ↦ L_b − 1 − t for t < L_b, the
    padding after it left in place (its own inverse).  All of them over T when ``lengths`` is None."""
    if lengths is None:
        return seq.flip(0)
    T = seq.shape[0]
    t = torch.arange(T, device=seq.device)[:, None]
    L = lengths.to(seq.device)[None, :]
    index = torch.where(t < L, L - 1 - t, t)  # (T, B)
    return seq.gather(0, index[:, :, None].expand(seq.shape))


def _last(seq: torch.Tensor, lengths: torch.Tensor | None, initial: torch.Tensor) -> torch.Tensor:
    """The value at each sequence's last step (B, n_a): step L_b − 1 of column b (T − 1 for every column when
    ``lengths`` is None; the initial value for an empty sequence)."""
    if seq.shape[0] == 0:
        return initial
    if lengths is None:
        return seq[-1]
    columns = torch.arange(seq.shape[1], device=seq.device)
    return seq[lengths.to(seq.device) - 1, columns]


class RecurrentLayer(nn.Module):
    """A derived cell run over a sequence, for PyTorch: a drop-in for ``nn.LSTM`` / ``nn.GRU``.

    Args:
        cell: a built-in cell name (``"lstm"``), ``"path/file.py:NAME"``, or a :class:`~symbolic_lstm.Cell`.
        input_size: n_x, the features of the input.
        hidden_size: n_a, the units of every state.
        num_layers: layers stacked; layer k > 0 reads the previous layer's output (D·hidden_size features,
            D = 2 when bidirectional).
        bias: False runs the cell without its linear stages' biases (no ``b_*`` parameters; unit parameters
            stay), as ``nn.LSTM(bias=False)``.
        batch_first: inputs and outputs (B, T, ·) instead of (T, B, ·) (the states stay (D·num_layers, B, ·)).
        dropout: the probability of dropout on each layer's output but the last's, in training mode.
        bidirectional: run each layer forward and backward in time, their outputs side by side (forward first).
        backend: what runs CPU tensors: ``"numpy"`` (the NumPy module, default) or ``"jax"`` (the JAX
            module through DLPack; faster at batch 1; the ``[jax]`` extra).
        dtype: torch.float32 or torch.float64 (default: torch's default dtype).
        device: where the parameters live; CUDA runs the array-API module.
        seed: seed of the initial parameters (the generated module's ``init_params``; layer 0 forward's are
            those of a one-layer layer of the same seed).

    Parameters are ``nn.Parameter`` s named as the cell's (``W_f`` (n_a, n_a + n_x), ``b_f`` (n_a,) …) for
    layer 0 forward, with :func:`suffix` ``_l{k}`` and ``_reverse`` for the others, in ``nn.LSTM``'s order
    (layer by layer, forward then reverse).
    """

    def __init__(
        self,
        cell: str | Cell,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        *,
        backend: str | Backend = DEFAULT,
        dtype: torch.dtype | None = None,
        device: torch.device | str | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__()
        backend = backend.name if isinstance(backend, Backend) else backend
        if backend not in _trainable():
            raise ValueError(f"backend must be one of {', '.join(map(repr, _trainable()))}, got {backend!r}")
        if (missing := BACKENDS[backend].missing()) is not None:
            raise ImportError(f"backend={backend!r} needs {missing}")
        cell = as_cell(cell)
        for name, v in (("input_size", input_size), ("hidden_size", hidden_size), ("num_layers", num_layers)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")
        for name, v in (("bias", bias), ("batch_first", batch_first), ("bidirectional", bidirectional)):
            if not isinstance(v, (bool, np.bool_)) and v not in (0, 1):
                raise TypeError(f"{name} must be a bool, got {v!r}")
        if isinstance(dropout, bool) or not isinstance(dropout, numbers.Real) or not 0 <= dropout <= 1:
            raise ValueError(f"dropout must be a number in [0, 1] (a probability), got {dropout!r}")
        if dropout > 0 and num_layers == 1:
            warnings.warn(
                "dropout applies to each layer's output but the last's: with num_layers=1 it does nothing "
                f"(dropout={dropout}, num_layers=1)",
                UserWarning,
                stacklevel=2,
            )
        dtype = torch.get_default_dtype() if dtype is None else dtype
        if dtype not in _DTYPES:
            raise TypeError(f"dtype must be torch.float32 or torch.float64, got {dtype}")
        self.cell = cell if bias else without_biases(cell)
        self.input_size, self.hidden_size, self.num_layers = input_size, hidden_size, num_layers
        self.bias, self.batch_first, self.dropout = bool(bias), bool(batch_first), float(dropout)
        self.bidirectional = bool(bidirectional)
        self.backend = backend
        if cell.square and any(self.layer_input_size(k) != hidden_size for k in range(num_layers)):
            sizes = ", ".join(f"layer {k}: {self.layer_input_size(k)}" for k in range(num_layers))
            raise ValueError(
                f"cell {cell.name!r} reads n_x and n_a units side by side, so every layer needs n_x = "
                f"hidden_size = {hidden_size}; the layers read n_x = {sizes}"
            )
        self._load_modules()
        own = tuple(self.kernels.PARAMS)
        names = [n + suffix(k, bool(d)) for k in range(num_layers) for d in range(self.directions) for n in own]
        if len(set(names)) != len(names):
            clash = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(
                f"the cell's parameters {list(own)} take the same names in two layers or directions ({clash}): "
                "rename the cell's parameters so that none ends in _l<k> or _reverse"
            )
        np_dtype = np.dtype(str(dtype).split(".")[-1])
        for k in range(num_layers):
            for d in range(self.directions):
                j = k * self.directions + d
                s = seed if j == 0 else int(np.random.SeedSequence([seed, k, d]).generate_state(1)[0])
                init = self.kernels.init_params(self.layer_input_size(k), hidden_size, seed=s, dtype=np_dtype)
                for name in own:
                    value = torch.as_tensor(init[name], device=device)
                    self.register_parameter(name + suffix(k, bool(d)), nn.Parameter(value))

    # -- pickling: deepcopy, torch.save of the whole module ----------------------------------------------
    def __getstate__(self) -> dict:
        """Everything but the imported kernel modules (a module does not pickle): the cell (its definition,
        which pickles by value) is kept, and the modules are found again — or regenerated — on unpickling."""
        state = dict(super().__getstate__() if hasattr(nn.Module, "__getstate__") else self.__dict__)
        state.update(kernels=None, _kernel_modules=None)
        return state

    def __setstate__(self, state: dict) -> None:
        # a layer pickled before the drop-in (one layer, one direction) has none of its settings
        for key, value in (("num_layers", 1), ("bias", True), ("dropout", 0.0), ("bidirectional", False)):
            state.setdefault(key, value)
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
    def directions(self) -> int:
        """D: 2 when bidirectional, else 1."""
        return 2 if self.bidirectional else 1

    def layer_input_size(self, layer: int) -> int:
        """The features layer ``layer`` reads: input_size for layer 0, D·hidden_size above it."""
        return self.input_size if layer == 0 else self.directions * self.hidden_size

    def names_of(self, layer: int, reverse: bool = False) -> tuple[str, ...]:
        """The parameters of one layer and direction, in the module's order (``W_f_l1``, ``b_f_l1`` …)."""
        return tuple(n + suffix(layer, reverse) for n in self.kernels.PARAMS)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter's name, layer by layer, forward then reverse (for one layer forward: the cell's)."""
        return tuple(n for k in range(self.num_layers) for d in range(self.directions) for n in self.names_of(k, d))

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
        settings = [
            f"num_layers={self.num_layers}" if self.num_layers != 1 else "",
            "bias=False" if not self.bias else "",
            "batch_first=True" if self.batch_first else "",
            f"dropout={self.dropout}" if self.dropout else "",
            "bidirectional=True" if self.bidirectional else "",
            f"backend={self.backend!r}" if BACKENDS[self.backend].suffix else "",  # not the plain <cell> module
        ]
        head = f"{self.cell.spec}, {self.input_size}, {self.hidden_size}, states={self.states}"
        return ", ".join([head, *(s for s in settings if s)])

    # -- running ------------------------------------------------------------------------------------
    def forward(
        self,
        input: torch.Tensor | PackedSequence,
        hx: State | None = None,
        *,
        lengths: Sequence[int] | torch.Tensor | np.ndarray | None = None,
    ) -> tuple[torch.Tensor | PackedSequence, State]:
        """Run the layers over ``input`` as ``nn.LSTM`` does.

        Args:
            input: (T, B, input_size) — (B, T, input_size) with ``batch_first`` —, (T, input_size) for one
                unbatched sequence, or a ``PackedSequence`` (its batch order is the one of the sequences packed).
            hx: the initial value of each of the cell's states, each (D·num_layers, B, hidden_size)
                ((D·num_layers, hidden_size) unbatched), ordered layer by layer, forward then reverse: a tensor
                for a cell of one state (``rnn``, ``gru``, ``gru_torch``), a tuple in ``self.states`` order for
                more (the LSTM's ``(h_0, c_0)``); None for zeros.
            lengths: for a padded tensor, each sequence's length (B,), 1 ≤ L_b ≤ T (None: all T); a
                ``PackedSequence`` carries its own.

        Returns:
            (output, h_n): the output state at every step of the last layer, both directions side by side,
            (T, B, D·hidden_size) (batch-first: (B, T, ·); zero after each sequence's length; a
            ``PackedSequence`` with the input's batch sizes and indices for a packed input), and every state's
            value at each sequence's last step, shaped and ordered as ``hx``.
        """
        packed = isinstance(input, PackedSequence)
        if packed:
            if lengths is not None:
                raise ValueError("lengths= is for a padded tensor; a PackedSequence carries its own lengths")
            x, lens = self._unpack(input)
            unbatched = False
        else:
            x, unbatched = self._padded(input)
            lens = None if lengths is None else self._lengths(lengths, x.shape[0], x.shape[1], unbatched)
        self._check_parameters()
        if x.dtype != self.dtype:
            raise TypeError(f"input has dtype {x.dtype} but the layer's parameters are {self.dtype}")
        if x.device != self.device:
            raise ValueError(f"input is on {x.device} but the layer's parameters are on {self.device}")
        runner = self.runner(x.device)  # refuses a device the backend's modules cannot reach, before any work
        T, B = x.shape[0], x.shape[1]
        # every sequence as long as the batch: the kernels' plain path, which is the same computation
        ragged = None if lens is None or bool((lens == T).all()) else lens
        initial = self._initial(hx, B, unbatched)
        output, finals = self._layers(x, initial, ragged, runner)
        h_n = tuple(torch.stack(f) for f in finals)
        if unbatched:
            output, h_n = output[:, 0], tuple(h[:, 0] for h in h_n)
        if packed:
            order = input.sorted_indices
            in_order = output if order is None else output.index_select(1, order)
            data = pack_padded_sequence(in_order, lens if order is None else lens[order.cpu()]).data
            output = PackedSequence(data, input.batch_sizes, input.sorted_indices, input.unsorted_indices)
        elif self.batch_first and not unbatched:
            output = output.transpose(0, 1)
        return output, (h_n[0] if len(h_n) == 1 else h_n)

    def _layers(
        self,
        x: torch.Tensor,
        initial: list[torch.Tensor],
        lengths: torch.Tensor | None,
        runner: tuple[Exchange, ModuleType],
    ) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """Every layer and direction over ``x`` (T, B, n_x): the last layer's output (T, B, D·n_a) and, per state,
        its last value (B, n_a) of every layer and direction in ``hx``'s order."""
        returns, states, D = self.cell.returns, self.states, self.directions
        finals: list[list[torch.Tensor]] = [[] for _ in states]
        seq = x
        for k in range(self.num_layers):
            run = Run(self.cell, self.layer_input_size(k), self.hidden_size, tuple(self.kernels.PARAMS))
            outs = []
            for d in range(D):
                j = k * D + d
                inp = seq if d == 0 else _reverse(seq, lengths)
                inp = inp if inp.is_contiguous() else inp.contiguous()
                init = [h[j] for h in initial]
                params = [getattr(self, n) for n in self.names_of(k, bool(d))]
                seqs = dict(zip(returns, _Kernels.apply(run, runner, lengths, inp, *init, *params), strict=True))
                out = seqs[self.cell.output]
                outs.append(out if d == 0 else _reverse(out, lengths))
                for f, s, h0 in zip(finals, states, init, strict=True):
                    f.append(_last(seqs[s], lengths, h0))
            seq = outs[0] if D == 1 else torch.cat(outs, dim=2)
            if k < self.num_layers - 1 and self.dropout > 0 and self.training:
                seq = nn.functional.dropout(seq, self.dropout, training=True)
        return seq, finals

    # -- what forward is given ------------------------------------------------------------------------
    def _padded(self, x: object) -> tuple[torch.Tensor, bool]:
        """The input as (T, B, n_x), and whether it was one unbatched sequence (T, n_x)."""
        if not isinstance(x, torch.Tensor):
            raise TypeError(f"input must be a torch.Tensor or a PackedSequence, got {type(x).__name__}")
        order = "(B, T, input_size)" if self.batch_first else "(T, B, input_size)"
        if x.dim() not in (2, 3) or x.shape[-1] != self.input_size:
            raise ValueError(
                f"input must have shape {order} (or (T, input_size) unbatched) with input_size = "
                f"{self.input_size}, got {tuple(x.shape)}"
            )
        if x.dim() == 2:
            return x[:, None], True
        return (x.transpose(0, 1) if self.batch_first else x), False

    def _unpack(self, packed: PackedSequence) -> tuple[torch.Tensor, torch.Tensor]:
        """A packed input as the padded (T, B, n_x) in the sequences' own order, and their lengths (B,)."""
        data = packed.data
        if data.dim() != 2 or data.shape[-1] != self.input_size:
            raise ValueError(
                f"a packed input's data must have shape (Σ lengths, input_size) with input_size = "
                f"{self.input_size}, got {tuple(data.shape)}"
            )
        x, lens = pad_packed_sequence(packed)  # (T, B, n_x), in the order the sequences were packed
        return x, lens

    def _lengths(self, lengths: object, T: int, B: int, unbatched: bool) -> torch.Tensor:
        """``lengths`` as a CPU int64 tensor (B,), each 1 ≤ L_b ≤ T (ValueError / TypeError naming what is not)."""
        if unbatched:
            raise ValueError("lengths= is for a batch; an unbatched input (T, input_size) is one sequence of T steps")
        if isinstance(lengths, torch.Tensor):
            t = lengths.detach().cpu()
        else:
            try:
                t = torch.as_tensor(np.asarray(lengths))
            except (TypeError, ValueError, RuntimeError):
                raise TypeError(f"lengths must be (B,) integers, got {type(lengths).__name__}") from None
        if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
            raise TypeError(f"lengths must be integers, got dtype {t.dtype}")
        if tuple(t.shape) != (B,):
            raise ValueError(f"lengths must have shape (B,) = ({B},), one length per sequence, got {tuple(t.shape)}")
        t = t.to(torch.int64)
        if B and (int(t.min()) < 1 or int(t.max()) > T):
            raise ValueError(f"lengths must lie in [1, T] = [1, {T}], got {t.tolist()}")
        return t

    def _check_parameters(self) -> None:
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

    def _initial(self, hx: State | None, B: int, unbatched: bool) -> list[torch.Tensor]:
        """Each state's initial values (D·num_layers, B, n_a), zeros for None."""
        LD, H = self.num_layers * self.directions, self.hidden_size
        if hx is None:
            return [torch.zeros(LD, B, H, dtype=self.dtype, device=self.device) for _ in self.states]
        n = len(self.states)
        names = ", ".join(self.states)
        if isinstance(hx, torch.Tensor):
            if n != 1:
                raise TypeError(f"hx must be a tuple of {n} tensors ({names}) for cell {self.cell.name!r}, got one")
            hx = (hx,)
        if not isinstance(hx, (tuple, list)) or not all(isinstance(t, torch.Tensor) for t in hx):
            raise TypeError(f"hx must be a tensor or a tuple of tensors ({names}), got {type(hx).__name__}")
        if len(hx) != n:
            raise ValueError(f"hx must hold {n} tensor{'s' * (n > 1)} ({names}), got {len(hx)}")
        want = (LD, H) if unbatched else (LD, B, H)
        shape = "(D·num_layers, hidden_size)" if unbatched else "(D·num_layers, B, hidden_size)"
        out = []
        for s, t in zip(self.states, hx, strict=True):
            if tuple(t.shape) != want:
                raise ValueError(f"hx's {s} must have shape {shape} = {want}, got {tuple(t.shape)}")
            if t.dtype != self.dtype or t.device != self.device:
                raise TypeError(f"hx's {s} must be {self.dtype} on {self.device}, got {t.dtype} on {t.device}")
            out.append(t[:, None] if unbatched else t)
        return out

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
        """Copy parameters in our layout (``W_f``, ``W_f_l1`` …: :attr:`param_names`) into the layer (ValueError
        naming a missing or misshapen one)."""
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


#: What each torch module converts through: its class, our cell, and one layer-direction's converters.
_KINDS = {
    "lstm": (nn.LSTM, "lstm", _lstm_from, _lstm_to),
    "gru": (nn.GRU, "gru_torch", _gru_from, _gru_to),
}


def _torch_suffix(layer: int, reverse: bool) -> str:
    """torch's suffix of a layer and direction's parameters: ``_l0``, ``_l0_reverse``, ``_l1`` …"""
    return f"_l{layer}" + ("_reverse" if reverse else "")


def from_torch(module: nn.LSTM | nn.GRU, **kwargs: object) -> RecurrentLayer:
    """A :class:`RecurrentLayer` computing what ``module`` computes: an ``nn.LSTM`` as the ``lstm`` cell, an
    ``nn.GRU`` as ``gru_torch``, with its num_layers, bias, batch_first, dropout, bidirectional, dtype, device,
    training mode and weights (each bias pair b_ih + b_hh added into one b, but GRU's b_in and b_hn apart).

    ``kwargs`` go to :class:`RecurrentLayer` (``backend=``, ``seed=`` …).

    Raises:
        TypeError: ``module`` is not an ``nn.LSTM`` or ``nn.GRU``, or its dtype is not float32/float64.
        ValueError: an ``nn.LSTM`` with ``proj_size`` (its output is projected: no cell of ours computes that).
    """
    kind = next((k for k, (cls, *_) in _KINDS.items() if isinstance(module, cls)), None)
    if kind is None:
        raise TypeError(f"from_torch takes an nn.LSTM or an nn.GRU, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError(
            f"from_torch: nn.LSTM with proj_size={module.proj_size} projects its hidden state; the lstm cell has "
            "none (proj_size=0 converts)"
        )
    _, cell, convert, _ = _KINDS[kind]
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
            ours = convert(sd, _torch_suffix(k, bool(d)), module.bias)
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

    kind = next((k for k, (_, cell, *_) in _KINDS.items() if runs(cell)), None)
    if kind is None:
        raise ValueError(
            f"to_torch converts layers of the lstm cell (to nn.LSTM) and of gru_torch (to nn.GRU); this layer runs "
            f"{layer.cell.spec!r}"
        )
    cls, _, _, convert = _KINDS[kind]
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
            sd.update(convert(params, _torch_suffix(k, bool(d))))
    module.load_state_dict(sd)
    module.train(layer.training)
    return module
