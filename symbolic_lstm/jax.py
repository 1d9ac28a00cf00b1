"""A derived cell inside JAX: a ``jax.custom_vjp`` function whose backward is the derived one (the ``[jax]`` extra).

``recurrent(cell)`` returns ``run(params, x, *initial_states) -> outputs``: ``params`` a dict with our names
(``W_f``, ``b_f`` …), ``x`` (T, B, n_x), initial states optional (zeros by default, in the cell's state order),
outputs (T, B, n_a).  Forward and backward are the cell's generated array-API module, which traces natively
on ``jax.numpy`` arrays (no callbacks), so ``run`` works under ``jax.jit`` (for a fixed T: the time loop is
unrolled while tracing) and ``jax.grad`` of a loss through it differentiates with the derived backward, not
JAX's own.  Enable float64 with ``jax.config.update("jax_enable_x64", True)`` to compare to round-off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax

from .cell import Cell
from .cells import as_cell
from .loader import module_for

__all__ = ["recurrent"]


def recurrent(cell: str | Cell) -> Callable[..., jax.Array]:
    """``run(params, x, *initial_states) -> outputs (T, B, n_a)`` for ``cell`` (a name, ``path.py:NAME`` or a
    :class:`~symbolic_lstm.Cell`), differentiated by the generated backward (see the module docstring)."""
    cell = as_cell(cell)
    m = module_for(cell, backend="array-api").module
    states, inp = cell.states, cell.inputs[0]

    def forward(params: Mapping[str, jax.Array], x: jax.Array, initial: tuple[jax.Array, ...]) -> tuple:
        if len(initial) > len(states):
            raise ValueError(f"cell {cell.name} has {len(states)} states ({', '.join(states)}), got {len(initial)}")
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a dict of the cell's parameters {m.PARAMS}, got {type(params).__name__}")
        results = m.forward(x, dict(params), **{f"{s}0": v for s, v in zip(states, initial, strict=False)})
        return results[0], results[-1]  # the output comes first (Cell.returns)

    @jax.custom_vjp
    def run(params: Mapping[str, jax.Array], x: jax.Array, *initial: jax.Array) -> jax.Array:
        return forward(params, x, initial)[0]

    def run_fwd(params: Mapping[str, jax.Array], x: jax.Array, *initial: jax.Array) -> tuple[jax.Array, Any]:
        y, cache = forward(params, x, initial)
        return y, (cache, len(initial))

    def run_bwd(residuals: Any, dy: jax.Array) -> tuple:
        cache, given = residuals
        g = m.backward(dy, cache)
        return ({name: g[name] for name in cache["p"]}, g[inp], *(g[f"{s}0"] for s in states[:given]))

    run.defvjp(run_fwd, run_bwd)
    run.__doc__ = f"The {cell.name} cell over a sequence; backward: the generated one. {recurrent.__doc__}"
    return run
