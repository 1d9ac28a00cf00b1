"""A direct interpreter of a cell's stages over NumPy arrays: slow, simple, and independent of the kernels.

It walks the stages of every step as the cell lists them (a linear stage as ``[inputs…] Wᵀ + b``, an
elementwise stage through ``sympy.lambdify``, a mean over the units of a row), keeping every node's value.
It knows no derivative.  The gradient check runs it on complex arrays, many problems at once along leading
axes, for the complex-step derivative (:mod:`symbolic_lstm.complex_step`); it also gives what the kernels do
not expose: the arguments of the functions with kinks (relu's input, the two sides of a ``Max``, a
``Piecewise`` condition), whose signs say where a point lies relative to a kink.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import sympy as sp

from .cell import Cell, Linear, Reduce
from .printer_numpy import KernelPrinter

Arrays = Mapping[str, np.ndarray]


def kink_arguments(expr: sp.Expr) -> list[sp.Expr]:
    """Expressions whose sign changes where ``expr`` has a kink or a jump: the argument of |·|, sign and
    Heaviside; a − b for every pair of a Max or Min; lhs − rhs of every Piecewise condition."""
    out: list[sp.Expr] = []
    for e in sp.preorder_traversal(expr):
        if isinstance(e, (sp.Abs, sp.sign, sp.Heaviside)):
            out.append(e.args[0])
        elif isinstance(e, (sp.Max, sp.Min)):
            args = list(e.args)
            out += [args[i] - args[j] for i in range(len(args)) for j in range(i + 1, len(args))]
        elif isinstance(e, sp.Piecewise):
            for _, cond in e.args:
                out += [
                    r.lhs - r.rhs for r in sp.preorder_traversal(cond) if isinstance(r, sp.core.relational.Relational)
                ]
    return out


class Reference:
    """The cell's stages compiled once (lambdify, with ``printer``), then run on any number of problems."""

    def __init__(self, cell: Cell, printer: type[KernelPrinter] = KernelPrinter) -> None:
        self.cell = cell
        self.stages: list[tuple[object, Callable | None, list[Callable]]] = []
        for st in cell.stages:
            if isinstance(st, Linear):
                self.stages.append((st, None, []))
                continue
            syms = [sp.Symbol(r) for r in st.reads]
            fn = sp.lambdify(syms, st.expr, modules=[{"np": np}], printer=printer)
            kinks = [sp.lambdify(syms, k, modules=[{"np": np}], printer=printer) for k in kink_arguments(st.expr)]
            self.stages.append((st, fn, kinks))

    def run(
        self, x: np.ndarray, p: Arrays, init: Arrays, kinks: bool = False
    ) -> tuple[list[dict[str, np.ndarray]], np.ndarray]:
        """Every node's value at every step (x: (T, B, n_x); init: ``{state}0`` arrays (B, n_a)) and, with
        ``kinks``, the value of every kink argument at every step and unit, flattened into one array.

        Every array may have the same leading axes as well (x: (…, T, B, n_x), a weight (…, n_a, columns), a
        bias or unit parameter (…, n_a), an initial state (…, B, n_a)): independent problems run at once.
        """
        cell = self.cell
        state = {s: np.asarray(init[f"{s}0"]) for s in cell.states}
        steps, found = [], []
        for t in range(x.shape[-3]):
            env: dict[str, np.ndarray] = {f"{s}_prev": state[s] for s in cell.states}
            env.update({i: x[..., t, :, :] for i in cell.inputs})
            env.update({v: np.expand_dims(p[v], -2) for v in cell.vectors})  # a row: every batch row reads it
            for st, fn, kink_fns in self.stages:
                if isinstance(st, Linear):
                    z = np.concatenate([env[k] for k in st.inputs], axis=-1)
                    value = np.matmul(z, np.swapaxes(np.asarray(p[st.weight]), -1, -2))
                    env[st.name] = value if st.bias is None else value + np.expand_dims(p[st.bias], -2)
                    continue
                args = [env[r] for r in st.reads]  # type: ignore[attr-defined]
                value = np.asarray(fn(*args))  # type: ignore[misc]
                if isinstance(st, Reduce):
                    value = np.mean(value, axis=-1, keepdims=True)
                env[st.name] = value  # type: ignore[attr-defined]
                if kinks:
                    found += [np.broadcast_to(k(*args), value.shape).ravel() for k in kink_fns]
            steps.append(env)
            state = {s: env[s] for s in cell.states}
        return steps, (np.concatenate(found) if found else np.zeros(0))
