"""The kernel printer with ``xp.`` (the arrays' namespace, from ``array_api_compat``) in place of ``np.``."""

from __future__ import annotations

import sympy as sp

from ....printer_numpy import KernelPrinter, heaviside_at_zero


class ArrayAPIPrinter(KernelPrinter):
    """The kernel printer with ``xp.`` (the arrays' namespace) in place of ``np.``."""

    def _module_format(self, fqn: str, register: bool = True) -> str:
        out = super()._module_format(fqn, register)
        return "xp." + out[len("np.") :] if out.startswith("np.") else out

    def _print_Heaviside(self, expr: sp.Expr) -> str:
        """The standard has no heaviside: H(x) = (x > 0) as the arrays' dtype, H(0) = 0 unless the cell says."""
        x = self._print(expr.args[0])
        step = f"xp.astype(xp.greater({x}, 0), ({x}).dtype)"
        h0 = heaviside_at_zero(expr)
        return step if h0 == 0 else f"xp.where(xp.equal({x}, 0), xp.full_like({x}, {self._print(h0)}), {step})"
