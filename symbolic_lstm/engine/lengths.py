"""Batches of sequences of different lengths: the carry-over select, a stage the engine differentiates.

A batch pads its sequences to T steps; sequence b has lengths[b] of them.  With the mask m<t> = [t ≤ lengths[b]]
(1 while the sequence runs, 0 after it) every state s and the output y pass through a select after the cell's
step s~<t> (what the cell computes from s<t-1> and x<t>):

    s<t> = m<t>·s~<t> + (1 − m<t>)·s<t-1>          ŷ<t> = m<t>·y<t>

so after its end a sequence keeps its states and outputs 0.  The chain rule through the select (derived here by
SymPy, like any stage's local rule) gives

    δs~<t> = m<t>·δs<t>        δs<t-1> += (1 − m<t>)·δs<t>        δy<t> = m<t>·δŷ<t>

With m ∈ {0, 1} that is the kernels' rule, which adds no work to a step: before the end the select is the identity;
after it the step's own δ is 0 (its parameter and input contributions vanish) and δs passes unchanged to s<t-1> —
so a seed on a carried state after the end reaches the state at the end, and the output's seeds there are
dropped.  The kernels therefore fold the seeds once (``_state_seed``, ``_output_seed`` in the generated modules) and
carry the states forward (``_carry``); :func:`kernel_rule_holds` checks that reading of the derived rule.
"""

from __future__ import annotations

from dataclasses import dataclass

import sympy as sp

__all__ = ["CarryOver", "carry_over", "kernel_rule_holds"]

#: The mask m<t> ∈ {0, 1}: step t lies within the sequence.
MASK = sp.Symbol("m")


@dataclass(frozen=True)
class CarryOver:
    """The select for one state (``output=False``) or for the output (``output=True``), and its derived δ rule.

    ``value`` is s<t> (or ŷ<t>) in terms of the step's value ``step`` (s~<t>, y<t>) and, for a state, its
    previous value ``prev``; ``rule`` maps each operand to its δ in terms of ``delta`` (δs<t>, δŷ<t>), each
    obtained by differentiating ``value`` — nothing typed by hand.
    """

    name: str
    output: bool
    step: sp.Symbol
    prev: sp.Symbol | None
    delta: sp.Symbol

    @property
    def value(self) -> sp.Expr:
        if self.output:
            return MASK * self.step
        return MASK * self.step + (1 - MASK) * self.prev

    @property
    def rule(self) -> dict[sp.Symbol, sp.Expr]:
        """δ of each operand: ∂value/∂operand · δ (the select is linear in its operands, so this is exact)."""
        operands = [self.step] if self.output else [self.step, self.prev]
        return {o: sp.diff(self.value, o) * self.delta for o in operands}


def carry_over(states: tuple[str, ...], output: str) -> list[CarryOver]:
    """The selects of a cell with these states and output: one per state, and one for the output's sequence."""
    selects = [CarryOver(s, False, sp.Symbol(f"{s}~"), sp.Symbol(f"{s}_prev"), sp.Symbol(f"delta_{s}")) for s in states]
    selects.append(CarryOver(output, True, sp.Symbol(f"{output}_step"), None, sp.Symbol(f"delta_{output}_hat")))
    return selects


def kernel_rule_holds(select: CarryOver) -> bool:
    """The derived rule at m = 1 and m = 0 is what the kernels do: the identity while the sequence runs; after its
    end no δ into the step and, for a state, δ passed unchanged to its previous value (0 for the output)."""
    running = {o: d.subs(MASK, 1) for o, d in select.rule.items()}
    ended = {o: d.subs(MASK, 0) for o, d in select.rule.items()}
    if running[select.step] != select.delta or ended[select.step] != 0:
        return False
    if select.output:
        return True
    return running[select.prev] == 0 and ended[select.prev] == select.delta
