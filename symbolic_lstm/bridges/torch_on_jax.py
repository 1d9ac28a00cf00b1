"""``RecurrentLayer(..., backend="jax")``: CPU tensors run on the cell's JAX module, handed over through DLPack.

JAX arrays made from the tensors share their memory (``jax.dlpack.from_dlpack``; JAX copies only a misaligned
buffer), and the JAX module's results come back as tensors on its buffers (``torch.from_dlpack``), so nothing
is copied either way.  JAX is imported here, for this backend only; float64 tensors run with JAX's x64 on for
the call, as the JAX module does.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from .torch import RecurrentLayer


def _to_jax(t: torch.Tensor) -> object:
    """A CPU tensor as a JAX array (``jax.Array``) on the same memory (DLPack; JAX copies only a misaligned
    buffer).  JAX is imported here, for this backend only."""
    import jax

    return jax.dlpack.from_dlpack(t.detach().contiguous())


def _x64(x: torch.Tensor) -> contextlib.AbstractContextManager:
    """float64 tensors are computed in float64: JAX's x64 on for the call, as the JAX module does."""
    import jax

    return jax.enable_x64(True) if x.dtype == torch.float64 else contextlib.nullcontext()


def jax_forward(
    layer: RecurrentLayer, x: torch.Tensor, initial: Sequence[torch.Tensor], params: Sequence[torch.Tensor]
) -> list:
    """The JAX module's compiled forward: the returned sequences as tensors on its buffers, then the cache."""
    m = layer.jax_module
    with _x64(x):
        xs = _to_jax(x)
        p = {name: _to_jax(t) for name, t in zip(layer.param_names, params, strict=True)}
        init = tuple(_to_jax(t) for t in initial)
        seq = m._forward(xs, p, init)
        return [*(torch.from_dlpack(seq[name]) for name in layer.cell.returns), (xs, p, init, seq)]


def jax_backward(layer: RecurrentLayer, seeds: dict, cache: tuple) -> dict[str, torch.Tensor]:
    """The JAX module's compiled backward from the outputs' gradients (seeds by state, None: zero)."""
    xs, p, init, seq = cache
    out = layer.cell.output
    with _x64(seeds[out]):
        given = {s: _to_jax(g) for s, g in seeds.items() if g is not None and s != out}
        grads, dx, d0 = layer.jax_module._backward(_to_jax(seeds[out]), given, xs, p, init, seq)
    g = {name: torch.from_dlpack(v) for name, v in grads.items()}
    g[layer.cell.inputs[0]] = torch.from_dlpack(dx)
    g.update({f"{s}0": torch.from_dlpack(v) for s, v in zip(layer.states, d0, strict=True)})
    return g
