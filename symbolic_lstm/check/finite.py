"""Where the cell's own math is finite: the scale a check's random problem is run at, and what to say where there
is none.

A check draws random parameters, inputs and initial states.  Some cells are finite only for small ones — a<t> =
exp(W [a<t-1>, x<t>] + b) − 1 grows step by step and overflows by step 3 at the check's scale — and some are
undefined on part of their domain (a log of a negative number).  The judge's interpreter (not the kernels) says
which: :func:`fitting_scale` scales an overflowing problem down by powers of 2 until the cell's values are finite
and within float32's range, and raises :class:`CellNotFiniteError` — worded as an overflow or as a domain error —
where no scale helps.  The kernels are then judged at that scale.
"""

from __future__ import annotations

from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

from .reference import LIMIT, Inputs, NotFinite

if TYPE_CHECKING:
    from ..engine.cell import Cell
    from .reference import Reference


class CellNotFiniteError(ValueError):
    """The cell's own math gives NaN or infinite values on a random problem (not the kernels' fault): the
    message names the first stage that does, and whether it overflows or is undefined there."""


#: Scales tried, from the check's own down to 2^-SCALE_STEPS, where the cell overflows on a random problem.
SCALE_STEPS = 10


def fitting_scale(cell: Cell, x: Inputs, p: dict, init: dict, reference: Reference | None = None) -> float:
    """The largest of 1, ½, ¼, … 2^-SCALE_STEPS by which the parameters, the input and the initial states can be
    multiplied so that the cell's own math (the judge's interpreter, in float64) stays finite and within float32's
    range on this problem: a cell like a<t> = exp(W [a<t-1>, x<t>] + b) − 1 grows without bound at random scale
    and is checked where it does not.

    Raises:
        CellNotFiniteError: a stage is undefined there (a log of a negative number, a division by zero), which no
            scale mends, or it overflows even at the smallest scale.
    """
    from .reference import Reference

    reference = reference or Reference(cell)
    first = None
    for k in range(SCALE_STEPS + 1):
        scale = 2.0**-k
        found = reference.first_not_finite(*scaled(scale, x, p, init))
        if found is None:
            return scale
        first = first or found
        if not found.overflow:
            raise CellNotFiniteError(not_finite(cell, found, scale))
    raise CellNotFiniteError(not_finite(cell, first, 1.0))


def scaled(scale: float, x: Inputs, p: dict, init: dict) -> tuple[Inputs, dict, dict]:
    """The problem with the parameters, the inputs (one array, or every input by name) and the initial states
    multiplied by ``scale``."""
    if scale == 1.0:
        return x, p, init
    moved = {k: scale * v for k, v in x.items()} if isinstance(x, dict) else scale * x
    return moved, {k: scale * v for k, v in p.items()}, {k: scale * v for k, v in init.items()}


def not_finite(cell: Cell, found: NotFinite, scale: float) -> str:
    """What the judge found: the first stage of the cell's own math that is not finite, and why."""
    st = cell.stage(found.stage)
    formula = "" if not hasattr(st, "expr") else f" = {st.expr}"
    where = f"stage {st.name!r}{formula}"
    count = f"at step {found.step} for {found.count} of {found.size} values"
    head = f"cell {cell.name!r}: the cell's own math is not finite on a random problem"
    if found.overflow:
        return (
            f"{head}: {where} overflows (grows past {LIMIT:.0e}) {count}, even with the parameters, the input and "
            f"the initial states scaled down by 2^-{SCALE_STEPS} — an exponential of an unbounded sum, or a "
            "recurrence that grows step by step? The kernels cannot be checked where the cell's values are not "
            "finite: bound what grows (exp(tanh(s)), a gate that forgets …)"
        )
    scale_note = "" if scale == 1.0 else f" (with the parameters, input and initial states scaled by {scale:g})"
    return (
        f"{head}: {where} is undefined (NaN, or a division by zero) {count}{scale_note}, on inputs ~ N(0, 1) and "
        "small random parameters — a log or square root of a negative number, or a division by zero? The kernels "
        "cannot be checked where the cell is not defined: keep its arguments in the domain (log(1 + s**2), "
        "sqrt(1 + s**2), a denominator like 1 + s**2 …)"
    )


def module_forward(k: ModuleType, x: Inputs, p: dict, init: dict, **kw: object) -> tuple:
    """``k.forward(x, p, **init, **kw)`` without a warning from every ufunc on the way where its values are not
    finite (the comparison with the judge says so).  ``x``: the one input's array, or every input by name (the
    first passed first, the others by keyword: ``forward(x, p, a0=…, z=…)``)."""
    if isinstance(x, dict):
        first, *others = x
        with np.errstate(all="ignore"):
            return k.forward(x[first], p, **init, **{i: x[i] for i in others}, **kw)
    with np.errstate(all="ignore"):
        return k.forward(x, p, **init, **kw)
