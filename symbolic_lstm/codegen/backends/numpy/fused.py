"""The fused NumPy layout: the schedule (:mod:`symbolic_lstm.codegen.schedule`) printed in place.

What comes from the engine, printed by :class:`~symbolic_lstm.codegen.printer_numpy.KernelPrinter`: every
forward stage, every δ of the backward pass (forks, seeds, the gradient from the next step), the
reverse rules of the linear stages (matrix calculus), the loss and its derivative.  What the schedule
decides (which products over which gates, which buffers) and this module spells in NumPy:

* one matrix product per operand over every gate that reads it: the input's hoisted out of the time loop
  (one product for all steps), each previous state's once per step (skipped at t = 1 when the initial
  state is zero), an inner node's once it is computed;
* each step's sums are regrouped gate by gate, so every activation is one ufunc call over one contiguous
  (B, n_a) block per gate, applied in place — pre-activations are kept only where backward reads them;
* weight gradients are one product per operand over all steps after the loop; so is ∂E/∂x;
* the forward cache holds exactly what backward reads (the engine says which), plus function values
  backward needs again, such as tanh(c<t>), computed once.
"""

from __future__ import annotations

import re

from ....engine.cell import Cell
from ...lines import (
    Line,
    template_env,
    uni,
    uni_time,
)
from ...printer_numpy import StageCode
from ...schedule import Schedule
from .api import api_context
from .backward import BackwardLines
from .inplace import SIGMOID_INNER
from .names import SCRATCH, OwnPrinter

__all__ = ["KernelPlan", "render", "statements"]

TEMPLATE = "numpy/cell_module.py.j2"


class KernelPlan(BackwardLines):
    """The schedule of ``cell``, spelled as NumPy for the template (slices, statements, buffer names)."""

    layout = "fused"

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.s = Schedule(cell)
        self.d = self.s.d
        self._register_names()
        self.printer = OwnPrinter(self.own)
        self.code = StageCode(self.printer)


def _scratch_in(code: list[str]) -> list[str]:
    """The scratch buffers (_tmp0, _tmp1 …) these statements name; they are taken in order, so a prefix."""
    used = [s for s in SCRATCH if any(re.search(rf"\b{s}\b", c) for c in code)]
    return SCRATCH[: len(used)]


def render(cell: Cell, source_hash: str) -> str:
    """The fused gate-buffer module for ``cell``, as text (byte-stable)."""
    plan = KernelPlan(cell)
    env = template_env()
    env.filters["add_prefix"] = lambda s, prefix: prefix + s
    env.filters["prime_of"] = plan.prime_of
    env.globals["own"] = plan.own
    forward_lines, backward_lines = plan.forward_lines(), plan.backward_lines()
    early = [ln for grp in plan.early_groups for ln in plan.activation_lines(grp)]
    forward_code = [ln.code for ln in (*early, *forward_lines)]
    context = {
        **api_context(plan, source_hash),
        "template": TEMPLATE,
        "schedule": plan.s,
        "gates": plan.s.gates,
        "inner": SIGMOID_INNER,
        "hoisted": plan.hoisted_lines(),
        "step_sums": plan.step_sums(),
        "early_activation": early,
        "forward_lines": forward_lines,
        "backward_lines": backward_lines,
        "after_loop": plan.after_loop(),
        "loop_buffers": plan.loop_buffers(_scratch_in(forward_code)),
        "backward_scratch": _scratch_in([ln.code for ln in backward_lines]),
        "uni": uni,
        "uni_time": uni_time,
    }
    return env.get_template(TEMPLATE).render(**context)


def statements(cell: Cell) -> list[Line]:
    """Every statement the fused module prints from a stage (for the smoke run's attribution)."""
    kp = KernelPlan(cell)
    lines = [*kp.forward_lines(), *kp.backward_lines()]
    return lines + [ln for grp in kp.s.groups for ln in kp.activation_lines(grp)]
