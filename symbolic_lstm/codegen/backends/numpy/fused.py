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
    ModuleApi,
    template_env,
    uni,
    uni_time,
)
from ...schedule import Schedule
from .api import LossCode, api_context
from .backward import BackwardLines
from .forward import ForwardLines
from .inplace import SCRATCH, SIGMOID_INNER
from .names import FusedNames, OwnPrinter

__all__ = ["KernelPlan", "render", "statements"]

TEMPLATE = "numpy/cell_module.py.j2"


class KernelPlan(ModuleApi):
    """The schedule of ``cell``, spelled as NumPy for the template: the parts it holds, each given what it reads.

    * ``s``: the :class:`~symbolic_lstm.codegen.schedule.Schedule` (gates, products, buffers, δ statements);
    * ``names``: the fused layout's :class:`~.names.FusedNames` (slices, buffer names, docstrings, cache keys),
      every own name registered when they are made;
    * ``printer``: the kernel printer, printing the own names' symbols (``_tanh_c``) as those names;
    * ``forward`` and ``backward``: :class:`~.forward.ForwardLines` and :class:`~.backward.BackwardLines`, the
      statements, each given the names and the printer;
    * ``losses``: the :class:`~.api.LossCode` both layouts print alike.

    The module API (returns, parameter shapes) is :class:`~symbolic_lstm.codegen.lines.ModuleApi`'s.
    """

    layout = "fused"

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        self.s = Schedule(cell)
        self.d = self.s.d
        self.names = FusedNames(cell, self.s)
        self.own = self.names.own
        self.printer = OwnPrinter(self.own)
        self.forward = ForwardLines(self.names, self.printer)
        self.backward = BackwardLines(self.names, self.printer)
        self.losses = LossCode(cell, self.d, self.printer)


def _scratch_in(code: list[str]) -> list[str]:
    """The scratch buffers (_tmp0, _tmp1 …) these statements name; they are taken in order, so a prefix."""
    used = [s for s in SCRATCH if any(re.search(rf"\b{s}\b", c) for c in code)]
    return SCRATCH[: len(used)]


def render(cell: Cell, source_hash: str) -> str:
    """The fused gate-buffer module for ``cell``, as text (byte-stable)."""
    plan = KernelPlan(cell)
    forward, backward = plan.forward, plan.backward
    env = template_env()
    env.filters["add_prefix"] = lambda s, prefix: prefix + s
    env.filters["prime_of"] = backward.prime_of
    env.globals["own"] = plan.own
    forward_lines, backward_lines = forward.forward_lines(), backward.backward_lines()
    early = [ln for grp in plan.names.early_groups for ln in forward.activation_lines(grp)]
    forward_code = [ln.code for ln in (*early, *forward_lines)]
    context = {
        **api_context(plan, source_hash),
        "template": TEMPLATE,
        "schedule": plan.s,
        "names": plan.names,
        "forward": forward,
        "backward": backward,
        "gates": plan.s.gates,
        "inner": SIGMOID_INNER,
        "hoisted": forward.hoisted_lines(),
        "step_sums": forward.step_sums(),
        "early_activation": early,
        "forward_lines": forward_lines,
        "backward_lines": backward_lines,
        "after_loop": backward.after_loop(),
        "loop_buffers": forward.loop_buffers(_scratch_in(forward_code)),
        "backward_scratch": _scratch_in([ln.code for ln in backward_lines]),
        "uni": uni,
        "uni_time": uni_time,
    }
    return env.get_template(TEMPLATE).render(**context)


def statements(cell: Cell) -> list[Line]:
    """Every statement the fused module prints from a stage (for the smoke run's attribution)."""
    kp = KernelPlan(cell)
    lines = [*kp.forward.forward_lines(), *kp.backward.backward_lines()]
    return lines + [ln for grp in kp.s.groups for ln in kp.forward.activation_lines(grp)]
