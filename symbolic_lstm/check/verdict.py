"""What a check concludes from its comparisons: the tolerances and round-off allowances (the regimes), the
relative error that measures a gradient against the reference's, one row per gradient, the report and its table
(:mod:`.gradcheck` runs the comparisons; its docstring says why each number is what it is).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from types import ModuleType

import numpy as np

__all__ = [
    "FLOOR", "FORWARD_ROUNDOFF", "FORWARD_TOL", "NORMAL", "ROUNDOFF", "SATURATED", "CheckReport", "CheckRow",
    "Regime", "format_table", "relative_error", "shape_name",
]  # fmt: skip

FLOOR = 1e-6
#: Float64 round-off of a backward pass, relative to the problem's largest derivative: the absolute allowance of
#: every comparison (measured up to ~2e-13 over every built-in and paper cell).
ROUNDOFF = 1e-12


@dataclass(frozen=True)
class Regime:
    """How large the random weights are, and the tolerances that go with it."""

    weight_scale: float  # multiple of init_params' U(−1/√n_a, 1/√n_a) weights
    tol: float  # largest relative error accepted
    atol: float  # absolute round-off allowance, times max(1, |E|)


#: Gates mostly in their sensitive range.
NORMAL = Regime(weight_scale=2.0, tol=1e-7, atol=0.0)
#: Gates about half saturated: vanishing entries are compared against float64 round-off of their sums.
SATURATED = Regime(weight_scale=20.0, tol=1e-7, atol=1e-10)
#: Largest relative difference between the module's forward pass and the reference interpreter's.
FORWARD_TOL = 1e-10
#: The forward pass's round-off allowance per value, times its sensitivity to a relative change of every input
#: (:meth:`~symbolic_lstm.check.complex_step.ComplexStep.sensitivity`): near a pole of the cell's own math (a normaliser
#: n<t> that crosses 0) two right computations differ by far more than 1e-10, and by about eps · that.
FORWARD_ROUNDOFF = 1e-13


@dataclass(frozen=True)
class CheckRow:
    """Worst relative error of one gradient over all problems."""

    key: str
    shape: str
    max_rel_error: float  # max |g − n| / (|g| + |n|), floored
    tol: float
    judged: float | None = None  # the same after the absolute round-off allowance (None: not computed)
    skipped: int = 0  # entries whose every stencil crossed a kink (not compared)

    @property
    def ok(self) -> bool:
        return bool((self.max_rel_error if self.judged is None else self.judged) <= self.tol)


class CheckReport(list):
    """The rows of a gradient check (a list of :class:`CheckRow`): ``str`` is the CLI's table, Jupyter shows an
    HTML table.  ``forward``: the largest relative difference between the module's forward pass (outputs and
    states) and the reference interpreter's; the check fails if it exceeds ``FORWARD_TOL``."""

    forward: float = 0.0
    compared: int = 0  # problems whose gradients were compared (not at a kink)
    scale: float = 1.0  # the smallest scale a problem was checked at (see :func:`fitting_scale`)

    @property
    def forward_ok(self) -> bool:
        return self.forward <= FORWARD_TOL

    @property
    def ok(self) -> bool:
        """Every gradient and the forward pass within tolerance — and at least one gradient compared."""
        return len(self) > 0 and self.compared > 0 and all(r.ok for r in self) and self.forward_ok

    @property
    def skipped(self) -> int:
        return sum(r.skipped for r in self)

    def verdict(self) -> str:
        """One line: what was compared, and whether it agreed."""
        bad = [r.key for r in self if not r.ok]
        tols = sorted({r.tol for r in self})
        tol = "/".join(f"{t:g}" for t in tols)
        forward = "" if self.forward_ok else f"; the forward pass differs from the cell's ({self.forward:.1e})"
        if not self or not self.compared:
            return "FAILED: no gradient was compared" + (" (every problem's point lies at a kink)" if self else "")
        if bad or not self.forward_ok:
            return "FAILED: " + (f"{', '.join(bad)} exceed {tol}" if bad else "gradients within tolerance") + forward
        return f"all {len(self)} gradients within {tol} of the complex-step reference{self.scale_note}"

    @property
    def scale_note(self) -> str:
        """Where the cell overflowed at the check's own scale: at which scale it was checked instead."""
        if self.scale == 1.0:
            return ""
        return (
            f" (the cell overflows at the check's own scale: parameters, input and initial states scaled by "
            f"{self.scale:g} where it did)"
        )

    def __str__(self) -> str:
        return format_table(self)

    def _repr_html_(self) -> str:
        import html

        judged = any(r.judged is not None and r.max_rel_error > r.tol for r in self)
        head = "<th>gradient</th><th>shape</th><th>max rel. error</th>" + ("<th>judged</th>" if judged else "")
        rows = "".join(
            "<tr><td>%s</td><td>%s</td><td>%.3e</td>%s<td>%s</td></tr>"
            % (
                html.escape(r.key),
                html.escape(r.shape),
                r.max_rel_error,
                (f"<td>{r.judged:.3e}</td>" if r.judged is not None else "<td></td>") if judged else "",
                "✓" if r.ok else f"✗ &gt; {r.tol:.0e}",
            )
            for r in self
        )
        note = f"; {self.skipped} entries at a kink not compared" if self.skipped else ""
        return (
            f"<table><thead><tr>{head}<th></th></tr></thead><tbody>{rows}</tbody></table>"
            f"<p>{len(self)} gradients against the complex-step derivative of the cell: {html.escape(self.verdict())}"
            f"{note}; forward pass within {self.forward:.1e} of the cell's own stages</p>"
        )


def relative_error(analytic: np.ndarray, numeric: np.ndarray, atol: float | np.ndarray = 0.0) -> float:
    """max (|a − n| − atol)⁺ / max(|a| + |n|, FLOOR · max|n|), elementwise (0 for empty arrays; ``atol`` a number
    or an allowance per entry); entries where ``numeric`` is nan (not measured: at a kink) are left out."""
    keep = ~np.isnan(numeric)
    if np.ndim(atol):
        atol = np.broadcast_to(atol, numeric.shape)[keep]
    analytic, numeric = analytic[keep], numeric[keep]
    if analytic.size == 0:
        return 0.0
    floor = max(FLOOR * float(np.max(np.abs(numeric))), np.finfo(np.float64).tiny)
    denom = np.maximum(np.abs(analytic) + np.abs(numeric), floor)
    excess = np.maximum(np.abs(analytic - numeric) - atol, 0.0)
    return float(np.max(excess / denom))


def shape_name(key: str, k: ModuleType) -> str:
    inputs = getattr(k, "INPUTS", (getattr(k, "INPUT", "x"),))
    if key in inputs:
        return "(T, B, n_x)" if key == inputs[0] else f"(T, B, n_{key})"
    if key.endswith("0") and key[:-1] in k.STATES:
        return "(B, n_a)"
    if key in getattr(k, "PARAM_SHAPES", {}):  # the stage-by-stage layout: rows of n_x units too
        return str(k.PARAM_SHAPES[key])
    if key in getattr(k, "WEIGHTS", ()):
        return f"(n_a, {getattr(k, 'WEIGHT_COLUMNS', {}).get(key, 'n_a + n_x')})"
    return "(n_a,)"


def format_table(rows: Sequence[CheckRow]) -> str:
    """The check as a text table: gradient, shape, max relative error, verdict (the error after the
    round-off allowance too, where that decided a verdict), the entries a kink kept from being compared, and,
    for a :class:`CheckReport`, the forward pass against the reference interpreter."""
    allowance = any(r.judged is not None and r.max_rel_error > r.tol for r in rows)
    extra = f" {'judged error':>16}" if allowance else ""
    first = "raw rel. error" if allowance else "max rel. error"
    lines = [f"{'gradient':<10} {'shape':<18} {first:>15}{extra}  ", "-" * (50 + len(extra))]
    for r in rows:
        judged = (f" {r.judged:>16.3e}" if r.judged is not None else " " * 17) if allowance else ""
        verdict = "✓" if r.ok else "✗ > %.0e" % r.tol
        lines.append(f"{r.key:<10} {r.shape:<18} {r.max_rel_error:>15.3e}{judged}  {verdict}")
    if isinstance(rows, CheckReport):
        verdict = "✓" if rows.forward_ok else "✗ > %.0e" % FORWARD_TOL
        lines.append(f"{'(forward)':<10} {'outputs, states':<18} {rows.forward:>15.3e}{' ' * len(extra)}  {verdict}")
    if allowance:
        lines.append(
            "raw: max |g − n| / (|g| + |n|); judged: the same after allowing |g − n| within float64 round-off "
            f"(the larger of {ROUNDOFF:g} of the problem's largest derivative and, for saturated gates, "
            "atol·max(1, |E|), where products are large and their sums vanish; the verdict reads it)"
        )
    skipped = {r.key: r.skipped for r in rows if r.skipped}
    if skipped:
        lines.append(
            "not compared (the problem's point lies within round-off of a kink): "
            + ", ".join(f"{n} of {key}" for key, n in skipped.items())
        )
    return "\n".join(lines)
