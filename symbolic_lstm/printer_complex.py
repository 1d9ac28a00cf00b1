"""The kernel printer for complex-step differentiation (:mod:`symbolic_lstm.complex_step`).

The complex-step derivative f′(x) = Im f(x + ih)/h holds for functions analytic near the real axis, and all
of NumPy's ufuncs the kernels use are (tanh, exp, log, sqrt, powers).  The functions with kinks are not, but
each is analytic on either side of its kink: it is printed as the analytic branch that the *real part* of its
argument selects, so that the imaginary part carries that branch's derivative —

* ``Max(a, b)`` → ``np.where(np.real(a) >= np.real(b), a, b)`` (nested for more arguments), ``Min`` likewise;
* ``|a|`` → ``a*np.sign(np.real(a))``, softsign ``a/(1 + a*np.sign(np.real(a)))``;
* ``sign(a)``, ``Heaviside(a)`` → of ``np.real(a)`` (constant on each side: derivative 0);
* a ``Piecewise`` condition compares real parts (NumPy would order complex numbers lexicographically).
"""

from __future__ import annotations

import sympy as sp

from .printer_numpy import KernelPrinter, heaviside_at_zero


class ComplexStepPrinter(KernelPrinter):
    """Prints a cell's stages for complex arguments whose imaginary part is an infinitesimal step."""

    def _real(self, expr: sp.Expr) -> str:
        return f"{self._module_format('numpy.real')}({self._print(expr)})"

    def _pick(self, args: tuple[sp.Expr, ...], op: str) -> str:
        first, *rest = args
        if not rest:
            return self._print(first)
        other = self._pick(tuple(rest), op)
        return (
            f"{self._module_format('numpy.where')}({self._real(first)} {op} {self._module_format('numpy.real')}"
            f"({other}), {self._print(first)}, {other})"
        )

    def _print_Max(self, expr: sp.Expr) -> str:
        return self._pick(expr.args, ">=")

    def _print_Min(self, expr: sp.Expr) -> str:
        return self._pick(expr.args, "<=")

    def _print_Abs(self, expr: sp.Expr) -> str:
        arg = self.parenthesize(expr.args[0], sp.printing.precedence.PRECEDENCE["Mul"])
        return f"({arg}*{self._module_format('numpy.sign')}({self._real(expr.args[0])}))"

    def _print_sign(self, expr: sp.Expr) -> str:
        return f"{self._module_format('numpy.sign')}({self._real(expr.args[0])})"

    def _print_Heaviside(self, expr: sp.Expr) -> str:
        at_zero = self._print(heaviside_at_zero(expr))
        return f"{self._module_format('numpy.heaviside')}({self._real(expr.args[0])}, {at_zero})"

    def _print_Relational(self, expr: sp.Expr) -> str:
        ops = {"==": "equal", "!=": "not_equal", "<": "less", "<=": "less_equal", ">": "greater", ">=": "greater_equal"}
        if expr.rel_op not in ops:
            return super()._print_Relational(expr)
        return f"{self._module_format('numpy.' + ops[expr.rel_op])}({self._real(expr.lhs)}, {self._real(expr.rhs)})"
