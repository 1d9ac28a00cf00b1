"""What both NumPy layouts print alike: the loss and its derivative, the heads' backward statements, and the
context the shared part of their templates (``numpy/_api.py.j2``: losses, heads, input checks) reads.

Each layout's plan holds a :class:`LossCode` as ``plan.losses``; the templates call ``plan.losses.loss(…)``.
"""

from __future__ import annotations

from functools import cached_property
from typing import Protocol

import sympy as sp

from ....engine.cell import Cell
from ....engine.derivation import StepDerivation
from ....engine.notation import ERROR, Partial, node, target
from ....runtime.version import __version__
from ...head_rules import head_code, regression_dz
from ...lines import CommentPrinter
from ...printer_numpy import KernelPrinter


class LossCode:
    """The loss and its derivative, from the engine, printed for NumPy (both NumPy layouts print them).

    ``cell`` and ``d`` (its step derivation) say what the loss is; ``printer`` is the layout's kernel printer.
    """

    def __init__(self, cell: Cell, d: StepDerivation, printer: KernelPrinter) -> None:
        self.cell = cell
        self.d = d
        self.printer = printer

    @property
    def loss_is_half_square(self) -> bool:
        """Whether Error = ½ (∂Error/∂a)² holds identically (the article's ½(â − a)²): the kernel then takes E
        from the gradient it returns anyway, one pass instead of three."""
        e, de = self._loss_exprs
        return sp.simplify(e - de**2 / 2) == 0

    @cached_property
    def _loss_exprs(self) -> tuple[sp.Expr, sp.Expr]:
        """The Error of the output and its derivative, from the engine."""
        out = self.cell.output
        return self.d.loss(node(out), target(out)), self.d.partials[Partial(ERROR, node(out))]

    def loss(self, output: str, hat: str) -> tuple[str, str]:
        """The Error and its derivative (from the engine), printed with the given variable names."""
        out = self.cell.output
        e, de = self._loss_exprs
        names = {node(out): sp.Symbol(output), target(out): sp.Symbol(hat)}
        return self.printer.doprint(e.xreplace(names)), self.printer.doprint(de.xreplace(names))


class NumPyPlan(Protocol):
    """What the shared template part reads of either layout's plan: the cell, the layout's name (``"fused"`` or
    ``"stages"``) and the losses it holds."""

    cell: Cell
    layout: str
    losses: LossCode


def api_context(plan: NumPyPlan, source_hash: str) -> dict[str, object]:
    """What the shared part of both layouts (``numpy/_api.py.j2``: losses, heads, checks) reads."""
    losses = plan.losses
    return {
        "version": __version__,
        "cell": plan.cell,
        "source_hash": source_hash,
        "backend": "numpy",
        "plan": plan,
        "loss_text": CommentPrinter().doprint(losses.d.loss(sp.Symbol("a"), sp.Symbol("â"))),
        "head": head_code(losses.printer),
        "regression_dz": regression_dz(losses.printer),
    }
