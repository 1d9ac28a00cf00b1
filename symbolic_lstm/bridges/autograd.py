"""One layer and direction of a :class:`~symbolic_lstm.bridges.torch.RecurrentLayer` as one node of torch's graph:
a ``torch.autograd.Function`` whose forward and backward are the generated kernels, over the whole sequence.

torch's autograd never sees the per-step operations: what trains is the derivation, proved and gradient-checked.
How the tensors reach the module is the backend's (:mod:`.exchange`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import torch

from ..engine.cell import Cell

if TYPE_CHECKING:
    from .exchange import Exchange

__all__ = ["Run", "run_kernels"]


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

    @property
    def others(self) -> tuple[str, ...]:
        """The cell's per-step inputs after the first (a decoder's context z), each a tensor (T, B, its width)."""
        return self.cell.inputs[1:]


class _Kernels(torch.autograd.Function):
    """One node of torch's graph for one layer and direction over the whole sequence: forward and backward are
    the generated kernels.

    Inputs: (the :class:`Run`, its runner for x's device — :meth:`RecurrentLayer.runner` —, the lengths (a CPU
    int64 tensor (B,), or None for all T), x (T, B, n_x), *the further inputs (T, B, width each, ``Run.others``),
    *initial states (B, n_a), *parameters (the module's order)); outputs: the sequences the kernels' forward
    returns (T, B, n_a each): the output, then the states that are not the output (``Cell.returns``).  The
    kernels' backward consumes the forward cache (it stores the gate gradients in place, and the next forward
    reuses the buffers); a graph backpropagated again (``retain_graph=True``, ``gradcheck``) reruns the forward
    from the saved inputs first.  How the tensors reach the module is the backend's (:mod:`.exchange`).
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
        m, n = len(run.others), len(run.others) + len(run.states)
        out = exchange.forward(module, run, x, rest[m:n], rest[n:], lengths, rest[:m])
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
        m, n = len(run.others), len(run.others) + len(run.states)
        if ctx.cache is None:
            cache = exchange.forward(module, run, x, rest[m:n], rest[n:], ctx.lengths, rest[:m])[-1]
        else:
            cache = ctx.cache
        ctx.cache = None  # consumed by the kernels' backward below
        names, out = run.cell.returns, run.cell.output
        seeds = dict(zip(names, grads, strict=True))
        if seeds[out] is None:  # only another state's last value is used: no gradient from the outputs
            seeds[out] = torch.zeros((x.shape[0], x.shape[1], run.hidden_size), dtype=x.dtype, device=x.device)
        g = exchange.backward(module, run, seeds, cache)
        inputs = (g[i] for i in run.cell.inputs)
        return (None, None, None, *inputs, *(g[f"{s}0"] for s in run.states), *(g[p] for p in run.param_names))


def run_kernels(
    run: Run,
    runner: tuple[Exchange, ModuleType],
    lengths: torch.Tensor | None,
    x: torch.Tensor,
    initial: list[torch.Tensor],
    params: list[torch.Tensor],
    others: Sequence[torch.Tensor] = (),
) -> dict[str, torch.Tensor]:
    """The sequences the kernels return (each (T, B, n_a)) by name (``Cell.returns``): ``run`` over ``x``
    (T, B, n_x, contiguous) and ``others`` (the further inputs, ``Run.others``' order, (T, B, width) each,
    contiguous) from ``initial`` (B, n_a each, the cell's state order) with ``params`` (the module's order), each
    sequence ``lengths`` long (None: all T); one node of torch's graph."""
    seqs = _Kernels.apply(run, runner, lengths, x, *others, *initial, *params)
    return dict(zip(run.cell.returns, seqs, strict=True))
