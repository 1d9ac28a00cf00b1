"""The gradient check's reference: ∂Error/∂(every entry) by the complex-step derivative of the reference interpreter.

For f analytic near the real axis, f(x + ih) = f(x) + ih·f′(x) − h²f″(x)/2 − ih³f‴(x)/6 + …, so

    f′(x) = Im f(x + ih) / h + O(h²)

with no difference of nearby values: nothing cancels, so h can be tiny (1e-20 here) and the truncation error
(h² ≈ 1e-40, relative) vanishes below round-off.  The result is as accurate as the float64 evaluation of f
itself, for any smooth cell however sharp — where central differences trade truncation against round-off and
reach only ~1e-9 (a multiplicative cell's products of sums reached 2e-7).  The interpreter
(:mod:`symbolic_lstm.check.reference`) runs the cell's own stage expressions and knows no derivative, so the
reference shares nothing with the derivation engine or the generated kernels but the cell definition.

Functions with kinks are evaluated as the analytic branch the real part of their argument selects (see
:mod:`symbolic_lstm.check.reference`): the step never crosses a kink, and each entry's derivative is that of the side
the point lies on.  A point *at* a kink (an argument within round-off of it) is not judged: which side the
kernels' float64 arithmetic lands on there is round-off, and the one-sided derivatives differ.

Every entry is a separate derivative, all computed in one run of the interpreter along a leading axis of
perturbed copies (in chunks), so a check costs a few forward passes rather than one per entry.  The same
machinery gives ∂Error/∂(every node at every step) — δv<t> for every stage, previous state and input, by
perturbing the node's value where the step computes it — which is how a refused module's first wrong
statement is found (:mod:`symbolic_lstm.codegen.attribution`).
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping, Sequence

import numpy as np

from ..engine.cell import Cell
from ..engine.functions import NONSMOOTH
from .reference import Inputs, Reference

#: The imaginary step: far below round-off of any value it is added to, far above underflow of its products.
H = 1e-20
#: Perturbed copies run at once (bounds the memory of one run to CHUNK problems).
CHUNK = 512
#: A kink argument within this of its kink, measured along the inputs — |value| ≤ KINK_BAND · |its change when every
#: input moves by (|input| + 1) along a random direction| — puts the point at the kink: there the side a
#: computation lands on is round-off.  In the inputs' terms, not the argument's: a product of small factors
#: (g**16 = 1e-16 of a gate g = 0.1) is tiny and far from its kink (a relative change of g of order 1 moves it by
#: its own size), while a difference that cancels to round-off (s − μ ≈ 1e-16 of terms of order 1) moves by order 1.
KINK_BAND = 1e-9
#: Random directions along which :meth:`ComplexStep.sensitivity` moves every input at once.
DIRECTIONS = 3


def _moved(
    x: Inputs,
    p: Mapping[str, np.ndarray],
    init: Mapping[str, np.ndarray],
    seed: int,
    relative: bool,
    copies: int | None = None,
) -> tuple[Inputs, dict[str, np.ndarray], dict[str, np.ndarray]]:
    """x, p and init each stepped by iH along one random direction of all of them at once (weights in ±[0.5, 1.5],
    times |a| where ``relative``, times |a| + 1 otherwise); ``copies`` such directions along a new leading axis."""
    rng = np.random.default_rng(seed)

    def moved(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float64)
        shape = a.shape if copies is None else (copies, *a.shape)
        size = np.abs(a) if relative else np.abs(a) + 1
        return a + 1j * H * size * rng.uniform(0.5, 1.5, shape) * rng.choice((-1, 1), shape)

    xs = {k: moved(v) for k, v in x.items()} if isinstance(x, Mapping) else moved(x)
    return xs, {k: moved(v) for k, v in p.items()}, {k: moved(v) for k, v in init.items()}


class ComplexStep:
    """The loss of a gradient-check problem and its gradient with respect to every array, by complex step.

    The loss is what ``check`` differentiates: ½ Σ (ŷ − a)² over the scored steps (every step for
    "many-to-many", the last for "many-to-one", y then (B, n_a)), plus Σ v·s<t> for every extra state ``s``
    given a weight array ``v`` (T, B, n_a).
    """

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.reference = Reference(cell)

    @property
    def has_kinks(self) -> bool:
        return any(e.has(*NONSMOOTH) for st in self.cell.stages for e in st.expressions)

    def outputs(
        self, x: Inputs, p: Mapping[str, np.ndarray], init: Mapping[str, np.ndarray], states: Sequence[str]
    ) -> list[np.ndarray]:
        """The output a<1..T> and then each of ``states`` over the steps, (T, B, n_a) each, in float64."""
        steps, _ = self.reference.run(x, p, init)
        return [np.stack([env[n] for env in steps]) for n in (self.cell.output, *states)]

    def sensitivity(
        self, x: Inputs, p: Mapping[str, np.ndarray], init: Mapping[str, np.ndarray], states: Sequence[str]
    ) -> list[np.ndarray]:
        """How much the output and each of ``states`` move, (T, B, n_a) each, when every input, parameter and
        initial state moves by a relative amount of order 1 (random weights in ±[0.5, 1.5]): the largest |dv/dε|
        over DIRECTIONS random directions (one could nearly cancel), by complex steps run side by side.  Round-off
        of inputs and intermediates at relative eps moves a value by about eps times this — the scale on which two
        right computations of an ill-conditioned value (near a pole of the cell) differ."""
        with np.errstate(all="ignore"):
            steps, _ = self.reference.run(*_moved(x, p, init, seed=1, relative=True, copies=DIRECTIONS))
        # each node (DIRECTIONS, B, n_a) per step: stacked to (T, DIRECTIONS, B, n_a), the largest over directions
        return [np.abs(np.stack([env[n] for env in steps]).imag).max(axis=1) / H for n in (self.cell.output, *states)]

    def at_kink(self, x: Inputs, p: Mapping[str, np.ndarray], init: Mapping[str, np.ndarray]) -> bool:
        """Does some kink argument lie within round-off of its kink at this point — and move there?

        An argument that ties (a Max over two nodes one of which clamps to the other's value, |u| of a u that is
        0 whatever the inputs) but does not move when the inputs do is no kink: nearby, one formula holds on
        both sides, and the derivatives of the two branches agree.  Whether it moves is its derivative along
        one random direction of all the inputs, by one complex step.
        """
        if not self.has_kinks:
            return False
        _, args = self.reference.run(*_moved(x, p, init, seed=0, relative=False), kinks=True)
        if args.size == 0:
            return False
        value, slope = np.real(args), np.imag(args) / H  # slope: its change along the direction
        return bool(np.any((np.abs(value) <= KINK_BAND * np.abs(slope)) & (slope != 0)))

    def loss(
        self,
        x: Inputs,
        p: Mapping[str, np.ndarray],
        init: Mapping[str, np.ndarray],
        y: np.ndarray,
        mode: str,
        extra: Mapping[str, np.ndarray],
        perturb: Mapping[tuple[int, str], np.ndarray] | None = None,
    ) -> np.ndarray:
        """The loss of every problem along the leading axes (complex where the inputs are); ``perturb`` as
        :meth:`Reference.run <symbolic_lstm.check.reference.Reference.run>` takes it."""
        steps, _ = self.reference.run(x, p, init, perturb=perturb)
        out = self.cell.output
        if mode == "many-to-many":
            E = sum(0.5 * np.sum((y[t] - env[out]) ** 2, axis=(-2, -1)) for t, env in enumerate(steps))
        else:
            E = 0.5 * np.sum((y - steps[-1][out]) ** 2, axis=(-2, -1))
        for s, v in extra.items():
            E = E + sum(np.sum(v[t] * env[s], axis=(-2, -1)) for t, env in enumerate(steps))
        return np.asarray(E)

    def gradients(
        self,
        arrays: Mapping[str, np.ndarray],
        y: np.ndarray,
        mode: str,
        extra: Mapping[str, np.ndarray],
    ) -> dict[str, np.ndarray]:
        """∂loss/∂arrays[key] for every key, each entry by one complex step.

        ``arrays``: the parameters, every input (T, B, its width) under its name and ``{state}0`` (B, n_a), float64.
        """
        inputs = self.cell.inputs

        def loss(step: Mapping[str, np.ndarray]) -> np.ndarray:
            moved = {k: arrays[k] + step[k] if k in step else arrays[k] for k in arrays}
            p = {k: v for k, v in moved.items() if k not in inputs and not _is_initial(k, self.cell)}
            init = {k: v for k, v in moved.items() if _is_initial(k, self.cell)}
            return self.loss({i: moved[i] for i in inputs}, p, init, y, mode, extra)

        return complex_gradient({k: v.shape for k, v in arrays.items()}, loss)

    def node_gradients(
        self,
        arrays: Mapping[str, np.ndarray],
        y: np.ndarray,
        mode: str,
        extra: Mapping[str, np.ndarray],
    ) -> list[dict[str, np.ndarray]]:
        """δv<t> = ∂loss/∂v<t> for every node v of every step t (a list over the steps of ``{node: array}``,
        each the node's shape (B, units)): the loss's sensitivity to the node's value where step t computes it
        (to a previous state or an input as step t reads it), all later branches included."""
        inputs = {i: arrays[i] for i in self.cell.inputs}
        p = {k: v for k, v in arrays.items() if k not in inputs and not _is_initial(k, self.cell)}
        init = {k: v for k, v in arrays.items() if _is_initial(k, self.cell)}
        steps, _ = self.reference.run(inputs, p, init)
        shapes = {(t, n): np.shape(v) for t, env in enumerate(steps) for n, v in env.items() if n in self._nodes}
        grads = complex_gradient(shapes, lambda step: self.loss(inputs, p, init, y, mode, extra, perturb=step))
        return [{n: grads[(t, n)] for n in self._nodes} for t in range(len(steps))]

    @property
    def _nodes(self) -> tuple[str, ...]:
        return self.reference.nodes


def complex_gradient(
    shapes: Mapping[Hashable, tuple[int, ...]], loss: Callable[[dict[Hashable, np.ndarray]], np.ndarray]
) -> dict[Hashable, np.ndarray]:
    """∂loss/∂(every entry of every slot), by complex steps: ``loss`` takes ``{slot: step}`` with each step an array
    (copies, *shape) that is i·H at one entry for one copy and 0 elsewhere (every copy moves exactly one entry of
    one slot), and returns the loss of every copy, (copies,).  Runs CHUNK copies at a time."""
    keys = list(shapes)
    sizes = [int(np.prod(shapes[k], dtype=np.int64)) for k in keys]
    offsets = np.cumsum([0, *sizes])
    flat = np.zeros(int(offsets[-1]))
    for start in range(0, flat.size, CHUNK):
        idx = np.arange(start, min(start + CHUNK, flat.size))
        step = {}
        for k, lo, n in zip(keys, offsets[:-1], sizes, strict=True):
            mine = (idx >= lo) & (idx < lo + n)  # the copies that perturb an entry of this slot
            if not mine.any():
                continue
            d = np.zeros((idx.size, n), dtype=np.complex128)
            d[np.nonzero(mine)[0], idx[mine] - lo] = 1j * H
            step[k] = d.reshape(idx.size, *shapes[k])
        flat[idx] = np.broadcast_to(loss(step), idx.shape).imag / H
    return {k: flat[lo : lo + n].reshape(shapes[k]) for k, lo, n in zip(keys, offsets[:-1], sizes, strict=True)}


def _is_initial(key: str, cell: Cell) -> bool:
    return key.endswith("0") and key[:-1] in cell.states
