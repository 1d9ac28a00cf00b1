"""A derived cell inside JAX: a ``jax.custom_vjp`` function whose backward is the derived one (the ``[jax]`` extra).

``recurrent(cell)`` returns ``run(params, x, *initial_states, lengths=None, **other_inputs) -> outputs``: ``params``
a dict with our names (``W_f``, ``b_f`` …), ``x`` (T, B, n_x), initial states optional (zeros by default, in the
cell's state order), every further per-step input of the cell by keyword, required (``run(params, x, z=z)``, z
(T, B, n_z); the gradient flows to it), outputs (T, B, n_a).  ``lengths`` (B,) ints in 1..T: a padded batch of
sequences of different lengths — each sequence's outputs are 0 after its end and its gradients are those of
running it alone.

Forward and backward are the cell's generated JAX module (``--backend jax``): each a
``lax.scan`` over the steps, so ``run`` works under ``jax.jit`` with a compile time that does not grow with T,
under ``jax.vmap``, and ``jax.grad`` of a loss through it differentiates with the derived backward, not JAX's
own.  Enable float64 with ``jax.config.update("jax_enable_x64", True)`` to compare to round-off.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import jax
import jax.numpy as jnp

from ..codegen.loader import module_for
from ..engine.cell import Cell
from ..engine.cells import as_cell

__all__ = ["recurrent"]


def recurrent(cell: str | Cell) -> Callable[..., jax.Array]:
    """``run(params, x, *initial_states, lengths=None, **other_inputs) -> outputs (T, B, n_a)`` for ``cell`` (a
    name, ``path.py:NAME`` or a :class:`~symbolic_lstm.Cell`), differentiated by the generated backward (see the
    module docstring).  ``other_inputs``: the cell's inputs after the first, by name (each (T, B, its width))."""
    cell = as_cell(cell)
    m = module_for(cell, backend="jax").module
    states = cell.states
    others = cell.inputs[1:]

    def start(params: Mapping[str, jax.Array], x: jax.Array, initial: tuple[jax.Array, ...]) -> tuple:
        """The parameters as a dict and every initial state (zeros for those not given)."""
        if len(initial) > len(states):
            raise ValueError(f"cell {cell.name} has {len(states)} states ({', '.join(states)}), got {len(initial)}")
        if not isinstance(params, Mapping):
            raise TypeError(f"params must be a dict of the cell's parameters {m.PARAMS}, got {type(params).__name__}")
        if set(params) != set(m.PARAMS):
            raise ValueError(f"params must have exactly the keys {m.PARAMS}, got {tuple(params)}")
        params = dict(params)
        n_a = params[m.N_A_FROM].shape[0]
        zeros = tuple(jnp.zeros((x.shape[1], n_a), x.dtype) for _ in states[len(initial) :])
        return params, (*initial, *zeros)

    def checked(lengths: Any, x: jax.Array) -> jax.Array | None:
        """``lengths`` as an int array (B,), or None; its values are the caller's to keep in 1..T (under jit they
        are not known here)."""
        if lengths is None:
            return None
        lengths = jnp.asarray(lengths)
        if lengths.shape != (x.shape[1],):
            raise ValueError(
                f"lengths must have shape (B,) = ({x.shape[1]},), one length per sequence, got {lengths.shape}"
            )
        if not jnp.issubdtype(lengths.dtype, jnp.integer):
            raise TypeError(f"lengths must be integers (numbers of steps), got dtype {lengths.dtype}")
        return lengths

    def further(x: jax.Array, given: Mapping[str, jax.Array]) -> tuple[jax.Array, ...]:
        """The further inputs in the cell's order, each checked against x's steps and batch."""
        missing, extra = [i for i in others if i not in given], [i for i in given if i not in others]
        if missing or extra:
            want = ", ".join(f"{i}= (T, B, {cell.width(i)})" for i in others) or "none"
            raise ValueError(
                f"cell {cell.name} takes its inputs after the first by keyword: {want}; missing {missing}, "
                f"unexpected {extra}"
            )
        for i in others:
            shape = jnp.shape(given[i])
            if len(shape) != 3 or tuple(shape[:2]) != tuple(x.shape[:2]):
                raise ValueError(
                    f"{i} must have shape (T, B, {cell.width(i)}) with the T and B of x {tuple(x.shape[:2])}, got "
                    f"{tuple(shape)}"
                )
        return tuple(given[i] for i in others)

    @jax.custom_vjp
    def scan(
        params: Mapping[str, jax.Array], x: jax.Array, lengths: jax.Array | None, more: tuple, *initial: jax.Array
    ) -> jax.Array:
        params, init = start(params, x, initial)
        return m.scan_forward(x, params, init, lengths, *more)[cell.output]

    def scan_fwd(
        params: Mapping[str, jax.Array], x: jax.Array, lengths: jax.Array | None, more: tuple, *initial: jax.Array
    ) -> tuple[jax.Array, Any]:
        params, init = start(params, x, initial)
        seq = m.scan_forward(x, params, init, lengths, *more)
        return seq[cell.output], (params, x, lengths, more, init, seq, len(initial))

    def scan_bwd(residuals: Any, dy: jax.Array) -> tuple:
        params, x, lengths, more, init, seq, given = residuals
        grads, dx, d0, *dmore = m.scan_backward(dy, {}, x, params, init, seq, lengths, *more)
        return ({name: grads[name] for name in params}, dx, None, tuple(dmore), *d0[:given])

    scan.defvjp(scan_fwd, scan_bwd)

    def run(
        params: Mapping[str, jax.Array], x: jax.Array, *initial: jax.Array, lengths: Any = None, **other_inputs: Any
    ) -> jax.Array:
        return scan(params, x, checked(lengths, x), further(x, other_inputs), *initial)

    run.__doc__ = f"The {cell.name} cell over a sequence; backward: the generated one. {recurrent.__doc__}"
    return run
