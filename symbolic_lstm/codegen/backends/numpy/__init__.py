"""The NumPy backend: vectorised, in-place NumPy kernels, NumPy the only import of the module it writes.

Two layouts print the same schedule (:mod:`symbolic_lstm.codegen.schedule`): the fused gate buffer
(:mod:`.fused`: one product per operand over every gate that reads it, activations in place, the fast one)
and, for the cells it cannot lay out, stage by stage (:mod:`.stages`, see :func:`.stages.stages_reason`).
The losses, heads and input checks are shared (:mod:`.api`, ``templates/numpy/_api.py.j2``).

A plan holds its parts rather than inheriting them: :class:`.fused.KernelPlan` holds the schedule, the layout's
names (:class:`.names.FusedNames`), the forward and backward printers (:class:`.forward.ForwardLines`,
:class:`.backward.BackwardLines`, each given the names and the printer) and the losses (:class:`.api.LossCode`);
:class:`.stages.StagePlan` holds the schedule, its names and the losses.
"""

from __future__ import annotations

from types import ModuleType

from ....engine.cell import Cell
from ...backend import Backend, Statement


class NumPyBackend(Backend):
    name = "numpy"
    summary = "<cell>.py, fast, NumPy only"
    templates = "numpy"
    trains = True
    tensors = "shared memory"
    elsewhere = "array-api"
    keeps_dtype = True  # float32 in, float32 out: every buffer takes the forward pass's dtype

    def render(self, cell: Cell) -> str:
        return _layout(cell).render(cell, self.source_hash(cell))

    def statements(self, cell: Cell) -> list[Statement]:
        return [Statement(ln.code, ln.stage) for ln in _layout(cell).statements(cell) if ln.stage]


def _layout(cell: Cell) -> ModuleType:
    """The fused layout, or the stage-by-stage one for a cell it cannot lay out (imported when first used:
    the registry is read by every command, rendering by few)."""
    from . import fused, stages

    return stages if stages.stages_reason(cell) is not None else fused
