"""Kernels written against the Python array API standard (``templates/array_api/``).

The same schedule as the NumPy backend (:mod:`symbolic_lstm.codegen.schedule`: its backward statements, the
same validation), as expressions (:mod:`symbolic_lstm.codegen.expressions`), printed without NumPy's in-place
``out=`` calls, item assignment or gate blocks — the standard has none of them for every library (JAX arrays are
immutable) — so the module runs on whatever arrays it is given: NumPy, PyTorch tensors, CuPy, JAX, through
``array_api_compat.array_namespace``.  One matrix product per gate and operand, each stage an expression,
per-step values kept in lists and stacked.  The NumPy backend stays the fast one; this one is portable.
"""

from __future__ import annotations

from ....engine.cell import Cell
from ...expressions import ExpressionPlan, Step

TEMPLATE = "array_api/cell_module.py.j2"
BACKEND = "array-api"


class ArrayAPIPlan(ExpressionPlan):
    """Forward and backward statements of one step, as expressions in ``xp``, for a Python loop over steps."""


def render(cell: Cell, source_hash: str) -> str:
    """The array-API module for ``cell``, as text (byte-stable)."""
    return ArrayAPIPlan(cell).render(TEMPLATE, BACKEND, source_hash)


def statements(cell: Cell) -> list[Step]:
    """Every statement the module prints from a stage, as ``target = code`` (for the smoke run's attribution)."""
    plan = ArrayAPIPlan(cell)
    return [*plan.forward(), *plan.backward()]
