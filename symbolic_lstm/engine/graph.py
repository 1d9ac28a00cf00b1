"""Stage 2: the graph of one step — who consumes each node, and where the forks are.

The article's third principle: where a value feeds two consumers (a *fork*), the gradients of the two
branches are added.  A node's *uses* are its consumers inside the step, the loss (if the node is scored)
and the next step (if the node is a recurrent state).  For the LSTM: a<t> forks to the Error and the
next block; c<t> forks to tanh (the a stage) and the next block; a<t-1> and x<t> feed all four sums.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from .cell import Cell, Linear, Stage

UseKind = Literal["stage", "loss", "next"]


@dataclass(frozen=True)
class Use:
    """One branch out of ``node``: read by stage ``consumer`` (kind "stage"), by the Error ("loss"),
    or carried to the next step as state ``consumer`` ("next")."""

    node: str
    consumer: str
    kind: UseKind


class StepGraph:
    """Consumers of every node of one step of ``cell``.

    Args:
        cell: the cell.
        scored: nodes the loss reads at every step (default: the cell's output).
    """

    def __init__(self, cell: Cell, scored: Sequence[str] | None = None) -> None:
        self.cell = cell
        self.scored = tuple(scored) if scored is not None else (cell.output,)
        self.nodes: tuple[str, ...] = cell.leaves + cell.vectors + tuple(st.name for st in cell.stages)
        uses: dict[str, list[Use]] = {n: [] for n in self.nodes}
        for st in cell.stages:
            for r in st.reads:
                uses[r].append(Use(r, st.name, "stage"))
        for n in self.scored:
            if n not in uses:
                raise ValueError(f"scored node {n!r} is not a node of cell {cell.name!r}")
            uses[n].append(Use(n, "Error", "loss"))
        for s in cell.states:
            uses[s].append(Use(s, s, "next"))
        self._uses = {n: tuple(u) for n, u in uses.items()}

    def uses(self, node: str) -> tuple[Use, ...]:
        """The branches out of ``node``, in order: stage consumers, the loss, the next step."""
        return self._uses[node]

    def is_fork(self, node: str) -> bool:
        return len(self._uses[node]) >= 2

    @property
    def forks(self) -> tuple[str, ...]:
        return tuple(n for n in self.nodes if self.is_fork(n))

    def stage(self, name: str) -> Stage:
        return self.cell.stage(name)

    def is_linear(self, name: str) -> bool:
        return name in {st.name for st in self.cell.linear_stages}

    def materialised(self, node: str) -> bool:
        """Does δnode get a name of its own?  Forks (the article's δa, δc), outputs of linear stages
        (their δ feeds the weight gradients), the step's leaves (a<t-1>, c<t-1>, x<t>), unit parameters
        (their δ, summed over steps and rows, is their gradient) and inner nodes a linear stage reads (GRU's
        r<t>·a<t-1>: their δ is a matrix product) and row scalars (their δ sums over the units).  Every other
        node has one consumer, and its chain is written inline, as the article does."""
        return (
            self.is_fork(node)
            or self.is_linear(node)
            or node in self.cell.leaves
            or node in self.cell.vectors
            or node in self.cell.scalars
            or bool(self.linear_consumers(node))
        )

    def reverse_order(self) -> tuple[str, ...]:
        """Nodes in the order the backward pass visits them: last stage first, leaves and unit parameters last."""
        return tuple(st.name for st in reversed(self.cell.stages)) + self.cell.leaves + self.cell.vectors

    def linear_consumers(self, node: str) -> tuple[Linear, ...]:
        linear = {st.name: st for st in self.cell.linear_stages}
        return tuple(linear[u.consumer] for u in self._uses[node] if u.kind == "stage" and u.consumer in linear)
