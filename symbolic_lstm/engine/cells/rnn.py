"""The Elman recurrent network with a tanh unit (Elman 1990): one stage, one state.

sum_a = W_a [a<t-1>, x<t>] + b_a
a<t> = tanh(sum_a)
"""

from __future__ import annotations

import sympy as sp

from ..cell import Cell, CellBuilder


def build(name: str = "rnn") -> Cell:
    cell = CellBuilder(
        name, inputs=("x",), states=("a",), output="a", description="Elman RNN: a<t> = tanh(W_a [a<t-1>, x<t>] + b_a)"
    )
    s = cell.linear("sum_a", [cell.prev("a"), cell.input("x")], weight="W_a", bias="b_a")
    cell.stage("a", sp.tanh(s))
    return cell.build()
