"""How torch tensors reach a generated module and come back: one way per kind of hand-over, chosen by what the
backend says of its modules (:attr:`~symbolic_lstm.codegen.backend.Backend.tensors`), never by its name.

* ``"shared memory"`` — CPU tensors whose memory the module reads and writes in place (``tensor.numpy()`` and
  ``torch.from_numpy`` share it both ways: the outputs are views of the kernels' buffers); BLAS threads chosen
  for the layer's products (:mod:`symbolic_lstm.runtime.threads`).
* ``"dlpack"`` — CPU tensors handed over by DLPack (``jax.dlpack.from_dlpack``; JAX copies only a misaligned
  buffer) and the results back the same way (``torch.from_dlpack``); float64 tensors computed with JAX's x64 on
  for the call, as the JAX module does.  JAX is imported here, for this hand-over only.
* ``"themselves"`` — the module runs on the tensors, on whatever device they are (the array-API module).

Each is ``forward(module, run, x, initial, params, lengths)`` → the sequences ``Cell.returns`` as tensors, then
the cache; ``backward(module, run, seeds, cache)`` → the gradients by name (the input, ``{state}0``, parameters).
``run`` (:class:`~symbolic_lstm.bridges.autograd.Run`) says what one call runs: the cell, its sizes and the
module's parameter names.  ``lengths`` — each sequence's length, a CPU int64 tensor (B,) — reaches the module as
its ``lengths=`` only when given (None: every sequence runs all T steps, the modules' plain path); the module
keeps it in its cache for the backward.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping, Sequence
from types import ModuleType
from typing import TYPE_CHECKING, Optional, Protocol

import numpy as np
import torch

from ..runtime.threads import blas_threads

if TYPE_CHECKING:
    from .autograd import Run

Tensors = Sequence[torch.Tensor]
Lengths = Optional[torch.Tensor]  # noqa: UP045 (typing's form: `|` fails on the docs build's mocked torch)


class Exchange(Protocol):
    """One way tensors reach a module; ``cpu_only``: tensors elsewhere are another backend's (or refused)."""

    cpu_only: bool

    def forward(
        self,
        module: ModuleType,
        run: Run,
        x: torch.Tensor,
        initial: Tensors,
        params: Tensors,
        lengths: Lengths,
        others: Tensors = (),
    ) -> list: ...

    def backward(
        self, module: ModuleType, run: Run, seeds: Mapping[str, torch.Tensor | None], cache: object
    ) -> dict[str, torch.Tensor]: ...


def _np(t: torch.Tensor) -> np.ndarray:
    """A CPU tensor's memory as a NumPy array (no copy); ``detach`` only drops the autograd record."""
    return t.detach().numpy()


def _threads(run: Run, x: torch.Tensor) -> contextlib.AbstractContextManager:
    """BLAS threads for the layer's products at this batch."""
    return blas_threads(x.shape[1], run.input_size, run.hidden_size, len(run.cell.linear_stages))


class SharedMemory:
    """The NumPy module on CPU tensors' own memory."""

    cpu_only = True

    def forward(
        self,
        module: ModuleType,
        run: Run,
        x: torch.Tensor,
        initial: Tensors,
        params: Tensors,
        lengths: Lengths,
        others: Tensors = (),
    ) -> list:
        p = {name: _np(t) for name, t in zip(run.param_names, params, strict=True)}
        init = {f"{s}0": _np(t) for s, t in zip(run.states, initial, strict=True)}
        given = {} if lengths is None else {"lengths": lengths.numpy()}
        given.update({i: _np(t) for i, t in zip(run.cell.inputs[1:], others, strict=True)})
        with _threads(run, x):
            *seqs, cache = module.forward(_np(x), p, **init, **given, check_finite=False)
        return [*(torch.from_numpy(s) for s in seqs), cache]

    def backward(
        self, module: ModuleType, run: Run, seeds: Mapping[str, torch.Tensor | None], cache: object
    ) -> dict[str, torch.Tensor]:
        first, *rest = run.cell.returns
        extra = {f"d{s}": None if seeds[s] is None else _np(seeds[s]) for s in rest}
        with _threads(run, seeds[first]):
            g = module.backward(_np(seeds[first]), cache, **extra, check_finite=False)
        return {key: torch.from_numpy(v) for key, v in g.items()}


class Themselves:
    """The array-API module on the tensors, wherever they are."""

    cpu_only = False

    def forward(
        self,
        module: ModuleType,
        run: Run,
        x: torch.Tensor,
        initial: Tensors,
        params: Tensors,
        lengths: Lengths,
        others: Tensors = (),
    ) -> list:
        p = dict(zip(run.param_names, params, strict=True))
        init = {f"{s}0": t for s, t in zip(run.states, initial, strict=True)}
        given = {} if lengths is None else {"lengths": lengths.to(x.device)}
        given.update(zip(run.cell.inputs[1:], others, strict=True))
        return list(module.forward(x, p, **init, **given))

    def backward(
        self, module: ModuleType, run: Run, seeds: Mapping[str, torch.Tensor | None], cache: object
    ) -> dict[str, torch.Tensor]:
        first, *rest = run.cell.returns
        return module.backward(seeds[first], cache, **{f"d{s}": seeds[s] for s in rest})


class DLPack:
    """A compiled JAX module on CPU tensors handed over by DLPack."""

    cpu_only = True

    @staticmethod
    def _to(t: torch.Tensor) -> object:
        import jax

        return jax.dlpack.from_dlpack(t.detach().contiguous())

    @staticmethod
    def _x64(x: torch.Tensor) -> contextlib.AbstractContextManager:
        import jax

        return jax.enable_x64(True) if x.dtype == torch.float64 else contextlib.nullcontext()

    def forward(
        self,
        module: ModuleType,
        run: Run,
        x: torch.Tensor,
        initial: Tensors,
        params: Tensors,
        lengths: Lengths,
        others: Tensors = (),
    ) -> list:
        with self._x64(x):
            xs = self._to(x)
            p = {name: self._to(t) for name, t in zip(run.param_names, params, strict=True)}
            init = tuple(self._to(t) for t in initial)
            # int32: JAX without x64 (float32 runs) has no int64 arrays
            given = (None if lengths is None else self._to(lengths.to(torch.int32)), *map(self._to, others))
            seq = module._forward(xs, p, init, *given)  # lengths, then the further inputs in the cell's order
            return [*(torch.from_dlpack(seq[name]) for name in run.cell.returns), (xs, p, init, seq, given)]

    def backward(
        self, module: ModuleType, run: Run, seeds: Mapping[str, torch.Tensor | None], cache: object
    ) -> dict[str, torch.Tensor]:
        xs, p, init, seq, given = cache  # type: ignore[misc]
        out = run.cell.output
        with self._x64(seeds[out]):
            seeded = {s: self._to(g) for s, g in seeds.items() if g is not None and s != out}
            grads, dx, d0, *d_others = module._backward(self._to(seeds[out]), seeded, xs, p, init, seq, *given)
        g = {name: torch.from_dlpack(v) for name, v in grads.items()}
        g[run.cell.inputs[0]] = torch.from_dlpack(dx)
        g.update({i: torch.from_dlpack(v) for i, v in zip(run.cell.inputs[1:], d_others, strict=True)})
        g.update({f"{s}0": torch.from_dlpack(v) for s, v in zip(run.states, d0, strict=True)})
        return g


#: Each way of handing tensors over, by the name a backend gives it.
EXCHANGES: dict[str, Exchange] = {"shared memory": SharedMemory(), "dlpack": DLPack(), "themselves": Themselves()}
