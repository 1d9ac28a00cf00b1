"""``RecurrentLayer``: a derived cell run over sequences as ``nn.LSTM`` / ``nn.GRU`` run theirs — stacked layers,
both directions, dropout between layers, packed sequences — each layer and direction one call of the generated
kernels (:mod:`.autograd`).  :mod:`symbolic_lstm.torch` is its public face (with the converters).
"""

from __future__ import annotations

import numbers
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from types import ModuleType

import numpy as np
import torch
from torch import nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence

from ..codegen.backends import BACKENDS, DEFAULT, Backend
from ..codegen.loader import module_for
from ..engine.cell import Cell
from ..engine.cells import as_cell
from ..engine.reserved import input_width
from .autograd import Run, run_kernels
from .exchange import EXCHANGES, Exchange
from .sequences import (
    State,
    as_padded,
    checked_lengths,
    further_inputs,
    initial_states,
    last_steps,
    reverse_within,
    unpack,
)

__all__ = ["RecurrentLayer", "suffix", "without_biases"]

_DTYPES = (torch.float32, torch.float64)


def _trainable() -> tuple[str, ...]:
    """The backends a layer may be given: those whose modules train (the array-API module runs a NumPy layer's
    tensors on other devices)."""
    return tuple(name for name, b in BACKENDS.items() if b.trains)


def without_biases(cell: Cell) -> Cell:
    """``cell`` with every linear stage's bias dropped (``W [a, x]`` instead of ``W [a, x] + b``): what
    ``bias=False`` runs.  Unit parameters (peephole weights, LayerNorm's γ and β) stay; the name and origin stay,
    and the kernels are generated on first use like any variant of a cell (keyed by their source hash)."""
    linear = cell.linear_stages  # the typed view of the products: the stages with a bias to drop
    stages = tuple(replace(st, bias=None) if st in linear else st for st in cell.stages)
    return replace(cell, stages=stages)


def _input_sizes(cell: Cell, given: Mapping[str, int] | None) -> dict[str, int]:
    """The widths of the cell's per-step inputs after the first, checked: one positive int for each, in the cell's
    order (ValueError naming a missing or unknown one)."""
    given = dict(given or {})
    names = cell.inputs[1:]
    missing, extra = [n for n in names if n not in given], [n for n in given if n not in names]
    if missing or extra:
        want = "{" + ", ".join(f"{n!r}: width" for n in names) + "}" if names else "none (it reads one input)"
        raise ValueError(
            f"input_sizes must give the width of each further input of cell {cell.name!r}: {want}; "
            f"missing {missing}, unexpected {extra}"
        )
    for n, v in given.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"input_sizes[{n!r}] must be a positive integer, got {v!r}")
    return {n: given[n] for n in names}


def suffix(layer: int, reverse: bool) -> str:
    """The suffix of layer ``layer``'s parameters in one direction: ``""`` for layer 0 forward (the cell's own
    names), ``"_l1"``, ``"_reverse"``, ``"_l1_reverse"`` … for the others (``nn.LSTM``'s ``_l{k}`` and
    ``_reverse``, without ``_l0``)."""
    return ("" if layer == 0 else f"_l{layer}") + ("_reverse" if reverse else "")


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
        input_sizes: the width of each of the cell's per-step inputs after the first (``{"z": 16}`` for a decoder
            cell reading x<t> and a context z<t>); every layer and direction reads them beside its own input, and
            ``forward`` takes them by keyword (``layer(x, z=z)``).

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
        input_sizes: Mapping[str, int] | None = None,
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
        self.input_sizes = _input_sizes(cell, input_sizes)
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
                widths = {input_width(cell.inputs, i): n for i, n in self.input_sizes.items()}
                init = self.kernels.init_params(self.layer_input_size(k), hidden_size, seed=s, dtype=np_dtype, **widths)
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
        for key, value in (
            ("num_layers", 1), ("bias", True), ("dropout", 0.0), ("bidirectional", False), ("input_sizes", {})
        ):  # fmt: skip
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
        **other_inputs: torch.Tensor | PackedSequence,
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
            other_inputs: the cell's per-step inputs after the first, by name (``z=z``), each given as ``input``
                is — (T, B, width) or batch-first, (T, width) unbatched, or a ``PackedSequence`` of the same
                lengths and order — with the width ``input_sizes`` says.

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
            x, lens = unpack(input, self.input_size)
            unbatched = False
        else:
            x, unbatched = as_padded(input, self.input_size, self.batch_first)
            lens = None if lengths is None else checked_lengths(lengths, x.shape[0], x.shape[1], unbatched)
        self._check_parameters()
        if x.dtype != self.dtype:
            raise TypeError(f"input has dtype {x.dtype} but the layer's parameters are {self.dtype}")
        if x.device != self.device:
            raise ValueError(f"input is on {x.device} but the layer's parameters are on {self.device}")
        others = further_inputs(
            other_inputs, self.input_sizes, x, input if packed else None, self.batch_first, unbatched
        )
        runner = self.runner(x.device)  # refuses a device the backend's modules cannot reach, before any work
        T, B = x.shape[0], x.shape[1]
        # every sequence as long as the batch: the kernels' plain path, which is the same computation
        ragged = None if lens is None or bool((lens == T).all()) else lens
        shape = (self.num_layers * self.directions, B, self.hidden_size)
        initial = initial_states(hx, self.states, self.cell.name, shape, self.dtype, self.device, unbatched)
        output, finals = self._layers(x, initial, ragged, runner, others)
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
        others: list[torch.Tensor],
    ) -> tuple[torch.Tensor, list[list[torch.Tensor]]]:
        """Every layer and direction over ``x`` (T, B, n_x) and the further inputs ``others`` (each layer reads
        them): the last layer's output (T, B, D·n_a) and, per state, its last value (B, n_a) of every layer and
        direction in ``hx``'s order."""
        states, D = self.states, self.directions
        finals: list[list[torch.Tensor]] = [[] for _ in states]
        seq = x
        # every layer reads the same further inputs: the reverse direction's, reversed within each length, once
        backwards = [reverse_within(o, lengths).contiguous() for o in others] if D == 2 else []
        for k in range(self.num_layers):
            run = Run(self.cell, self.layer_input_size(k), self.hidden_size, tuple(self.kernels.PARAMS))
            outs = []
            for d in range(D):
                j = k * D + d
                inp = seq if d == 0 else reverse_within(seq, lengths)
                inp = inp if inp.is_contiguous() else inp.contiguous()
                init = [h[j] for h in initial]
                params = [getattr(self, n) for n in self.names_of(k, bool(d))]
                seqs = run_kernels(run, runner, lengths, inp, init, params, others if d == 0 else backwards)
                out = seqs[self.cell.output]
                outs.append(out if d == 0 else reverse_within(out, lengths))
                for f, s, h0 in zip(finals, states, init, strict=True):
                    f.append(last_steps(seqs[s], lengths, h0))
            seq = outs[0] if D == 1 else torch.cat(outs, dim=2)
            if k < self.num_layers - 1 and self.dropout > 0 and self.training:
                seq = nn.functional.dropout(seq, self.dropout, training=True)
        return seq, finals

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
