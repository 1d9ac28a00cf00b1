"""Numeric check of generated kernels: every gradient against an independent reference, in float64.

The loss exercises every output at once: Error = mse_loss(a, y, mode) + Σ v·c (random v, passed to
``backward`` as ``dc``; every other problem passes ``dc=None`` to check that path too).  Problems vary T
(1 included), B (1 included), sizes and both loss modes, with non-zero initial states and weights large
enough that gates are not all near ½.

The reference is the complex-step derivative of the cell's own stages, run by an interpreter that walks their
SymPy expression trees and knows no derivative (:mod:`.complex_step`, :mod:`.reference`):
∂E/∂θ = Im E(θ + ih)/h with h = 1e-20, exact to float64 round-off for any smooth cell however sharp, since nothing
is subtracted.  (Central differences, which ``check`` used before, trade truncation against round-off and reach
only ~1e-9 on smooth cells — a multiplicative-integration RNN's products of sums reached 2e-7 and failed a
correct kernel.)

**The judge shares nothing with what it judges but SymPy and the cell definition.**  It prints no code: no
printer, template or derivative of this package is on its path (a test walks its imports, another runs it with
every SymPy printer and the package's print hooks poisoned).  So a printer that drops a parenthesis makes the
kernels wrong and leaves the judge right — the verdict is ✗, not a shared ✓.

What is left between a right kernel and the reference is the round-off of two float64 computations of the same
sums: measured up to ~2e-13 of the problem's largest derivative (over every built-in and paper cell).  The
relative error of an entry is (|g − n| − allowance)⁺ / max(|g| + |n|, floor) with floor = 1e-6 · (largest |n|
of that gradient in that problem) and allowance = ROUNDOFF · (largest |n| of any gradient in that problem),
ROUNDOFF = 1e-12: entries that are (near) zero are compared on the gradient's own scale instead of dividing 0 by
0, and a difference below float64's resolution of the problem's own derivatives is round-off, whichever
gradient it lands in.  With tol = 1e-7 any entry larger than 1e-7 of its gradient's largest that is off by a
relative 1e-6 fails, where that change exceeds the round-off allowance; smaller changes are below what float64
resolves in the sums that make the gradient.

The module's forward pass is compared with the interpreter's too (outputs and every state, relative 1e-10):
a kernel that computes the wrong function fails even where its backward pass matches its own forward.

A module whose ``forward`` takes ``lengths`` is judged on a padded batch too (:func:`padded_batch`): sequences of
4, 1 and 3 steps in one batch against the reference run on each sequence alone — outputs 0 after a sequence's
end, states carried, gradients the per-sequence ones.

Cells with kinks (``NONSMOOTH``: relu, |x|, clipping, a Piecewise) are differentiable everywhere but on a
set of measure zero, and the kernels take PyTorch's derivative there (relu′(0) = 0).  The complex step
takes the branch the point lies on and never crosses a kink; a problem whose point lies within round-off
of a kink (a kink argument within 1e-9 of 0, relative) is not compared, and the table counts its entries.

Cells that normalise over units (``REDUCES_OVER_UNITS``, the layer-normalised LSTM) are checked with
n_a ≥ 4: with two units (v − μ)/σ is ±|d|/√(d² + ε), flat almost everywhere, so its gradients are
round-off-sized and no relative comparison means anything.

Saturated gates (``SATURATED``: weights 20× PyTorch's initial scale, about half the gate units within 1e-3
of 0 or 1) make many gradient entries vanish while the products that make them are large: an entry
passes when |g − n| ≤ atol·max(1, |E|) + tol·(|g| + |n|) with atol = 1e-10 and tol = 1e-7 (where that exceeds
the round-off allowance above) — the stated
allowance for float64 round-off there (measured up to 4e-11·max(1, |E|), layer normalisation's, over ten
seeds of every built-in).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from ..runtime.threads import blas_threads
from .finite import fitting_scale, module_forward, scaled
from .verdict import (
    FLOOR,
    FORWARD_ROUNDOFF,
    FORWARD_TOL,
    NORMAL,
    ROUNDOFF,
    SATURATED,
    CheckReport,
    CheckRow,
    Regime,
    format_table,
    relative_error,
    shape_name,
)

if TYPE_CHECKING:
    from ..engine.cell import Cell
    from .complex_step import ComplexStep

__all__ = [  # with the verdict's names (:mod:`.verdict`), importable from here as they always were
    "DEFAULT_PROBLEMS", "FLOOR", "FORWARD_ROUNDOFF", "FORWARD_TOL", "NORMAL", "PADDED_LENGTHS", "ROUNDOFF",
    "SATURATED", "SMOKE_PROBLEMS", "CheckReport", "CheckRow", "Comparison", "Problem", "Regime", "check_module",
    "comparisons", "draw_inputs", "format_table", "further_widths", "numeric_gradient", "padded_batch",
    "relative_error", "shape_name",
]  # fmt: skip

#: (T, B, n_x, n_a, loss mode, pass dc); an input after the first is :func:`further_widths` wide.
Problem = tuple[int, int, int, int, str, bool]

DEFAULT_PROBLEMS: tuple[Problem, ...] = (
    (1, 1, 2, 3, "many-to-many", True),
    (1, 3, 3, 2, "many-to-one", False),
    (4, 1, 2, 3, "many-to-one", True),
    (3, 2, 3, 4, "many-to-many", False),
    (5, 3, 2, 2, "many-to-many", True),
    (6, 2, 4, 3, "many-to-one", False),
)

#: The padded batch every check adds where the module takes ``lengths``: three sequences of 4, 1 and 3 steps, judged
#: against the reference run on each sequence alone (many-to-many, a seed on every state).
PADDED_LENGTHS = (4, 1, 3)

H = 1e-3
#: The problems a generated module must pass before it is written (see :mod:`symbolic_lstm.codegen.smoke`).
SMOKE_PROBLEMS: tuple[Problem, ...] = ((3, 2, 3, 4, "many-to-many", True), (2, 1, 2, 3, "many-to-one", False))


def further_widths(cell: Cell, n_x: int, n_a: int) -> dict[str, int]:
    """The widths of a problem's inputs after the first (``{"n_z": 4}``): the k-th is 1 + (n_x + k) mod 4 — 1 in
    some problems, never n_x in the problem where it is 1 — so a kernel that mixes the inputs' widths or columns
    fails; n_a for a square cell (its inputs are read unit by unit beside n_a units)."""
    return {w: n_a if cell.square else 1 + (n_x + k) % 4 for k, w in enumerate(cell.extra_widths, start=1)}


def draw_inputs(cell: Cell, T: int, B: int, n_x: int, n_a: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Every input of a problem, N(0, 1), by name: the first (T, B, n_x), the others (T, B, their width)."""
    sizes = {"n_x": n_x, **further_widths(cell, n_x, n_a)}
    return {i: rng.normal(size=(T, B, sizes[w])) for i, w in cell.input_widths.items()}


def numeric_gradient(
    f: Callable[[], float], arr: np.ndarray, h: float = H, kinks: Callable[[], np.ndarray] | None = None
) -> np.ndarray:
    """dF/darr by the fourth-order central stencil, perturbing ``arr`` in place (restored after).

    ``kinks``: where given, the signs of the function's kink arguments at the current point; an entry whose
    stencil changes any of them is taken again with h/10, h/100, h/1000, and is nan if every stencil does.
    """
    out = np.zeros_like(arr)
    flat, grad = arr.reshape(-1), out.reshape(-1)
    base = None if kinks is None else kinks()
    for i in range(flat.size):
        x0 = flat[i]
        grad[i] = np.nan
        for hh in (h, h / 10, h / 100, h / 1000) if kinks is not None else (h,):
            vals, crossed = [], False
            for step in (-2 * hh, -hh, hh, 2 * hh):
                flat[i] = x0 + step
                vals.append(f())
                crossed = crossed or (base is not None and not np.array_equal(kinks(), base))  # type: ignore[misc]
            flat[i] = x0
            if not crossed:
                grad[i] = (vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / (12 * hh)
                break
    return out


@dataclass
class Comparison:
    """One problem of a check: the module's gradients beside the reference's.

    ``reference`` is None where the problem's point lies within round-off of a kink (not judged).
    ``allowance``: the absolute round-off allowance for this problem: the larger of the regime's atol·max(1, |E|)
    and ROUNDOFF · (the largest reference entry of any gradient).
    ``forward``: the largest relative difference of the module's outputs and states from the interpreter's.
    ``scale``: what the parameters, input and initial states were multiplied by (1 unless the cell overflows at
    the check's own scale, :func:`fitting_scale`).
    """

    problem: Problem
    grads: dict[str, np.ndarray]
    reference: dict[str, np.ndarray] | None
    allowance: float
    forward: float
    scale: float = 1.0


def comparisons(
    k: ModuleType,
    seed: int = 0,
    problems: Sequence[Problem] = DEFAULT_PROBLEMS,
    regime: Regime = NORMAL,
    cell: Cell | None = None,
    padded: bool = True,
) -> Iterator[Comparison]:
    """Run every problem through the module and through the complex-step reference (see :func:`check_module`);
    with ``padded`` (and a module whose ``forward`` takes ``lengths``) one more: :func:`padded_batch`."""
    from .complex_step import ComplexStep

    if cell is None:  # the cell the header names: a cell file only as check --stale runs one (read once, checked)
        from ..engine.cells.named import NotRunError, named_cell

        try:
            cell = named_cell(k.CELL_SPEC)
        except NotRunError as e:
            raise ValueError(
                f"the reference needs the module's cell; its CELL_SPEC names a cell file that is not run ({e}); "
                "pass cell= the Cell it was generated from"
            ) from None
        except ValueError as e:
            raise ValueError(
                f"the reference needs the module's cell, and its CELL_SPEC {k.CELL_SPEC!r} names none ({e}); "
                "pass cell= the Cell it was generated from"
            ) from None
    ref = ComplexStep(cell)
    if cell.scalars:  # a mean over units (REDUCES_OVER_UNITS)
        problems = [(T, B, n_x, max(n_a, 4), mode, dc) for T, B, n_x, n_a, mode, dc in problems]
    if cell.square:  # the input is read unit by unit beside n_a units: n_x = n_a
        problems = [(T, B, n_a, n_a, mode, dc) for T, B, _, n_a, mode, dc in problems]
    rng = np.random.default_rng(seed)
    for problem in problems:
        T, B, n_x, n_a, mode, with_dc = problem
        p = _draw_params(k, cell, n_x, n_a, rng, regime)
        xs = draw_inputs(cell, T, B, n_x, n_a, rng)
        x = xs if len(xs) > 1 else xs[cell.inputs[0]]  # one input: its array, as the check has always drawn it
        init = {f"{s}0": 0.5 * rng.normal(size=(B, n_a)) for s in k.STATES}
        y = rng.normal(size=(T, B, n_a) if mode == "many-to-many" else (B, n_a))
        others = cell.returns[1:]  # the states that are not the output: their seeds are optional
        extra = {f"d{s}": rng.normal(size=(T, B, n_a)) for s in others} if with_dc else {}

        scale = fitting_scale(cell, x, p, init, ref.reference)  # CellNotFiniteError: the cell's math, said as such
        x, p, init = scaled(scale, x, p, init)
        arrays = {**p, **(x if isinstance(x, dict) else {cell.inputs[0]: x}), **init}
        expected, sensitivity = ref.outputs(x, p, init, others), ref.sensitivity(x, p, init, others)
        out = module_forward(k, x, p, init)
        E, forward, grads = _module_side(k, out, expected, sensitivity, y, mode, extra, arrays)
        at_kink = ref.at_kink(x, p, init)  # which side the kernels land on is round-off: not judged
        numeric = None if at_kink else ref.gradients(arrays, y, mode, {s[1:]: v for s, v in extra.items()})
        yield Comparison(problem, grads, numeric, _allowance(regime, E, numeric), forward, scale)
    if padded and problems and "lengths" in inspect.signature(k.forward).parameters:
        _, _, n_x, n_a, _, _ = problems[-1]
        yield padded_batch(k, cell, ref, rng, regime, n_x, n_a)


def padded_batch(
    k: ModuleType, cell: Cell, ref: ComplexStep, rng: np.random.Generator, regime: Regime, n_x: int, n_a: int
) -> Comparison:
    """The module on a batch of sequences of different lengths (:data:`PADDED_LENGTHS`, padded to the longest)
    beside the reference run on each sequence alone: its outputs, 0 after a sequence's end, and every state,
    carried from there; its gradients, the per-sequence ones (parameters summed over the batch, 0 for the padding
    of the input), with a state's seeds after the end reaching the state at the end."""
    L = np.array(PADDED_LENGTHS)
    T, B = int(L.max()), len(L)
    others = cell.returns[1:]
    p = _draw_params(k, cell, n_x, n_a, rng, regime)
    xs = draw_inputs(cell, T, B, n_x, n_a, rng)
    init = {f"{s}0": 0.5 * rng.normal(size=(B, n_a)) for s in k.STATES}
    y = rng.normal(size=(T, B, n_a))
    seeds = {s: rng.normal(size=(T, B, n_a)) for s in others}
    scale = fitting_scale(cell, xs, p, init, ref.reference)
    xs, p, init = scaled(scale, xs, p, init)
    arrays = {**p, **xs, **init}
    expected = [np.zeros((T, B, n_a)) for _ in (cell.output, *others)]
    sensitivity = [np.zeros((T, B, n_a)) for _ in (cell.output, *others)]
    numeric: dict[str, np.ndarray] | None = {key: np.zeros(v.shape) for key, v in arrays.items()}
    for b, n in enumerate(L):
        xb, ib = {i: v[:n, b : b + 1] for i, v in xs.items()}, {key: v[b : b + 1] for key, v in init.items()}
        for i, (o, d) in enumerate(
            zip(ref.outputs(xb, p, ib, others), ref.sensitivity(xb, p, ib, others), strict=True)
        ):
            expected[i][:n, b], sensitivity[i][:n, b] = o[:, 0], d[:, 0]
            if i:  # a state other than the output keeps its value after the end
                expected[i][n:, b], sensitivity[i][n:, b] = o[-1, 0], d[-1, 0]
        if numeric is None or ref.at_kink(xb, p, ib):
            numeric = None
            continue
        alone = {s: d[:n, b : b + 1].copy() for s, d in seeds.items()}
        for s, d in alone.items():
            d[-1] += seeds[s][n:, b].sum(axis=0)  # seeds on the carried state reach it at the end
        g = ref.gradients({**p, **xb, **ib}, y[:n, b : b + 1], "many-to-many", alone)
        for name in p:
            numeric[name] += g[name]
        for i in xs:
            numeric[i][:n, b] = g[i][:, 0]
        for key in init:
            numeric[key][b] = g[key][0]
    out = module_forward(k, xs if len(xs) > 1 else xs[cell.inputs[0]], p, init, lengths=L)
    extra = {f"d{s}": d for s, d in seeds.items()}
    E, forward, grads = _module_side(k, out, expected, sensitivity, y, "many-to-many", extra, arrays)
    problem = (T, B, n_x, n_a, "many-to-many", bool(others))
    return Comparison(problem, grads, numeric, _allowance(regime, E, numeric), forward, scale)


def _draw_params(
    k: ModuleType, cell: Cell, n_x: int, n_a: int, rng: np.random.Generator, regime: Regime
) -> dict[str, np.ndarray]:
    """A problem's parameters: the module's initial draw at the regime's scale, unit parameters made distinct per
    unit (even where init_params starts them equal)."""
    drawn = _init_params(k, cell, n_x, n_a, seed=int(rng.integers(1 << 30)))
    p = {name: regime.weight_scale * v for name, v in drawn.items()}
    for name in cell.vectors:
        p[name] = p[name] + rng.uniform(-0.5, 0.5, size=n_a)
    return p


def _module_side(
    k: ModuleType,
    out: tuple,
    expected: Sequence[np.ndarray],
    sensitivity: Sequence[np.ndarray],
    y: np.ndarray,
    mode: str,
    extra: dict[str, np.ndarray],
    arrays: dict[str, np.ndarray],
) -> tuple[float, float, dict[str, np.ndarray]]:
    """The module's side of a comparison, from its forward's ``out``: its loss E, its forward pass's largest
    difference from the reference's outputs, and its gradients (nan where its forward pass is not finite) — keyed
    and shaped as ``arrays``, as NumPy arrays (so the comparison is NumPy's float64 arithmetic whatever the module's
    library: a JAX array's subtraction would run in float32 without x64)."""
    finite = all(np.isfinite(np.asarray(o)).all() for o in out[:-1])
    forward = max(
        relative_error(np.asarray(o), e, FORWARD_ROUNDOFF * d)
        for o, e, d in zip(out[:-1], expected, sensitivity, strict=True)
    )
    if finite:
        E, da = k.mse_loss(out[0], y, mode)
        grads = k.backward(da, out[-1], **extra)
    else:  # the module's forward pass is not finite where the cell's is: wrong, and nothing to differentiate
        E, forward, grads = 0.0, np.inf, {key: np.full(arr.shape, np.nan) for key, arr in arrays.items()}
    if set(grads) != set(arrays):
        raise AssertionError(f"backward returned keys {sorted(grads)}, expected {sorted(arrays)}")
    for key, arr in arrays.items():
        if grads[key].shape != arr.shape:
            raise AssertionError(f"gradient {key} has shape {grads[key].shape}, expected {arr.shape}")
    return E, forward, {key: np.asarray(grads[key]) for key in arrays}


def _allowance(regime: Regime, E: float, numeric: dict[str, np.ndarray] | None) -> float:
    """The absolute round-off allowance of a comparison: the regime's atol·max(1, |E|), and ROUNDOFF times the
    reference's largest derivative of any gradient."""
    allowance = regime.atol * max(1.0, abs(E))
    if numeric is not None:
        allowance = max(allowance, ROUNDOFF * max(float(np.max(np.abs(v), initial=0.0)) for v in numeric.values()))
    return allowance


def _init_params(k: ModuleType, cell: Cell, n_x: int, n_a: int, seed: int) -> dict[str, np.ndarray]:
    """The module's ``init_params`` (the NumPy module's), or the same U(−1/√n_a, 1/√n_a) draw from the cell
    for a module without one (the array-API module); unit parameters start at their stated value.  The inputs
    after the first are :func:`further_widths` wide."""
    widths = further_widths(cell, n_x, n_a)
    if hasattr(k, "init_params"):
        return k.init_params(n_x, n_a, seed=seed, **widths)
    rng = np.random.default_rng(seed)
    bound = 1.0 / np.sqrt(n_a)
    return {
        name: np.full(shape, cell.vector_init[name]) if name in cell.vector_init else rng.uniform(-bound, bound, shape)
        for name, shape in cell.param_shapes(n_x, n_a, widths).items()
    }


def check_module(
    k: ModuleType,
    seed: int = 0,
    tol: float | None = None,
    problems: Sequence[Problem] = DEFAULT_PROBLEMS,
    regime: Regime = NORMAL,
    cell: Cell | None = None,
    padded: bool = True,
) -> CheckReport:
    """Check every gradient ``k.backward`` returns against the complex-step derivative of the cell's stages,
    and ``k.forward`` against the same interpreter.

    ``tol`` overrides the regime's relative tolerance.  ``cell``: the module's cell (default: the cell its
    ``CELL_SPEC`` names).  Returns one row per gradient key; the report's ``forward`` is the forward pass's
    largest relative difference.

    Raises:
        ValueError: no ``cell`` was given and the module's ``CELL_SPEC`` names no cell.
    """
    tol = regime.tol if tol is None else tol
    worst: dict[str, float] = {}
    judged: dict[str, float] = {}
    shapes: dict[str, set[str]] = {}
    skipped: dict[str, int] = {}
    forward, compared, scale = 0.0, 0, 1.0
    B, n_x, n_a = (max((pr[i] for pr in problems), default=1) for i in (1, 2, 3))
    with blas_threads(B, n_x, n_a):  # small problems: one BLAS thread
        found = list(comparisons(k, seed, problems, regime, cell, padded))
    for c in found:
        forward = max(forward, c.forward)
        scale = min(scale, c.scale)
        compared += c.reference is not None
        for key, g in c.grads.items():
            shapes.setdefault(key, set()).add(shape_name(key, k))
            worst.setdefault(key, 0.0)
            judged.setdefault(key, 0.0)
            skipped[key] = skipped.get(key, 0) + (g.size if c.reference is None else 0)
            if c.reference is not None:
                worst[key] = max(worst[key], relative_error(g, c.reference[key]))
                judged[key] = max(judged[key], relative_error(g, c.reference[key], c.allowance))
    report = CheckReport(
        CheckRow(key, " | ".join(sorted(shapes[key])), worst[key], tol, judged[key], n) for key, n in skipped.items()
    )
    report.forward, report.compared, report.scale = forward, compared, scale
    return report
