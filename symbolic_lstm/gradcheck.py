"""Numeric check of generated kernels: every gradient against central differences, in float64.

The loss exercises every output at once: Error = mse_loss(a, y, mode) + Σ v·c (random v, passed to
``backward`` as ``dc``; every other problem passes ``dc=None`` to check that path too).  Problems vary T
(1 included), B (1 included), sizes and both loss modes, with non-zero initial states and weights large
enough that gates are not all near ½.

Central differences use the fourth-order stencil (f(−2h) − 8f(−h) + 8f(h) − f(2h)) / 12h with h = 1e-3,
whose truncation and round-off errors are both near 1e-12 here.  The relative error of an entry is
(|g − n| − atol·max(1, |E|))⁺ / max(|g| + |n|, floor), with floor = 1e-6 · (largest |n| of that gradient), so
entries that are (near) zero are compared on the gradient's own scale instead of dividing 0 by 0, and atol =
1e-12 allows the stencil's own round-off, about 1.5·ε·|E|/h = 3e-13·|E| (an entry of 1e-6 in a loss of 10,
as a<0>'s gradient becomes after a few multiplicative steps, has nothing more to resolve).

Cells with kinks (``NONSMOOTH``: relu, |x|, clipping, a Piecewise) are differentiable everywhere but on a
set of measure zero, and the kernels take PyTorch's derivative there (relu′(0) = 0).  A central difference
whose points lie on both sides of a kink measures neither side, so the check finds out: the cell's stages
are run again by an independent interpreter (:mod:`symbolic_lstm.reference`), which gives the sign of
every kink argument (relu's input, a − b of a Max, lhs − rhs of a Piecewise condition) at every step and
unit.  An entry whose stencil changes any of those signs is differentiated again with h/10, h/100 and
h/1000; if even the smallest stencil crosses a kink, the entry is not compared, and the table counts it.

Cells that normalise over units (``REDUCES_OVER_UNITS``, the layer-normalised LSTM) are checked with
n_a ≥ 4 and h = 1e-4: with two units (v − μ)/σ is ±|d|/√(d² + ε), flat almost everywhere, so its
gradients are round-off-sized and no relative comparison means anything; and 1/√(σ² + ε) makes the
function sharp enough that the stencil's truncation error at h = 1e-3 reaches 1e-6.

Saturated gates (``SATURATED``: weights 20× PyTorch's initial scale, about half the gate units within 1e-3
of 0 or 1) make many gradient entries vanish to ~1e-8 while the stencil's round-off stays near
1e-12·|E|; there an entry passes when |g − n| ≤ atol·max(1, |E|) + tol·(|g| + |n|) with atol = 1e-9 and
tol = 1e-5 — the looser, stated tolerance for that regime.  The function is also much sharper there, so
the stencil steps by h = 1e-4 (at 1e-3 its truncation error reaches 1e-4 relative on a GRU's a<0>).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .cell import Cell

#: (T, B, n_x, n_a, loss mode, pass dc)
Problem = tuple[int, int, int, int, str, bool]

DEFAULT_PROBLEMS: tuple[Problem, ...] = (
    (1, 1, 2, 3, "many-to-many", True),
    (1, 3, 3, 2, "many-to-one", False),
    (4, 1, 2, 3, "many-to-one", True),
    (3, 2, 3, 4, "many-to-many", False),
    (5, 3, 2, 2, "many-to-many", True),
    (6, 2, 4, 3, "many-to-one", False),
)

H = 1e-3
FLOOR = 1e-6


@dataclass(frozen=True)
class Regime:
    """How large the random weights are, and the tolerances that go with it."""

    weight_scale: float  # multiple of init_params' U(−1/√n_a, 1/√n_a) weights
    tol: float  # largest relative error accepted
    atol: float  # absolute round-off allowance, times max(1, |E|)
    h: float = H  # stencil step: smaller where the function is sharper


#: Gates mostly in their sensitive range: float64 gradients agree to ~1e-8 relative.
NORMAL = Regime(weight_scale=2.0, tol=1e-7, atol=1e-12)
#: Gates about half saturated: vanishing entries are compared against the stencil's round-off.
SATURATED = Regime(weight_scale=20.0, tol=1e-5, atol=1e-9, h=1e-4)


@dataclass(frozen=True)
class CheckRow:
    """Worst relative error of one gradient over all problems."""

    key: str
    shape: str
    max_rel_error: float  # max |g − n| / (|g| + |n|), floored
    tol: float
    judged: float | None = None  # the same after the regime's absolute allowance (None: no allowance)
    skipped: int = 0  # entries whose every stencil crossed a kink (not compared)

    @property
    def ok(self) -> bool:
        return bool((self.max_rel_error if self.judged is None else self.judged) <= self.tol)


class CheckReport(list):
    """The rows of a gradient check (a list of :class:`CheckRow`): ``str`` is the CLI's table, Jupyter shows an
    HTML table."""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self)

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
        verdict = "all within tolerance" if self.ok else "FAILED: " + ", ".join(r.key for r in self if not r.ok)
        skipped = sum(r.skipped for r in self)
        note = f"; {skipped} entries at a kink not compared" if skipped else ""
        return (
            f"<table><thead><tr>{head}<th></th></tr></thead><tbody>{rows}</tbody></table>"
            f"<p>{len(self)} gradients against central differences: {verdict}{note}</p>"
        )


def relative_error(analytic: np.ndarray, numeric: np.ndarray, atol: float = 0.0) -> float:
    """max (|a − n| − atol)⁺ / max(|a| + |n|, FLOOR · max|n|), elementwise (0 for empty arrays); entries
    where ``numeric`` is nan (not measured: at a kink) are left out."""
    keep = ~np.isnan(numeric)
    analytic, numeric = analytic[keep], numeric[keep]
    if analytic.size == 0:
        return 0.0
    floor = max(FLOOR * float(np.max(np.abs(numeric))), np.finfo(np.float64).tiny)
    denom = np.maximum(np.abs(analytic) + np.abs(numeric), floor)
    excess = np.maximum(np.abs(analytic - numeric) - atol, 0.0)
    return float(np.max(excess / denom))


def numeric_gradient(
    f: Callable[[], float], arr: np.ndarray, h: float = H, kinks: Callable[[], np.ndarray] | None = None
) -> np.ndarray:
    """dF/darr by the fourth-order central stencil, perturbing ``arr`` in place (restored after).

    ``kinks``: where given, the signs of the function's kink arguments at the current point; an entry whose
    stencil changes any of them is taken again with h/10, h/100, h/1000, and is nan if every stencil does.
    """
    out = np.zeros_like(arr)
    flat, grad = arr.reshape(-1), out.reshape(-1)
    base = None if kinks is None else kinks()
    for i in range(flat.size):
        x0 = flat[i]
        grad[i] = np.nan
        for hh in (h, h / 10, h / 100, h / 1000) if kinks is not None else (h,):
            vals, crossed = [], False
            for step in (-2 * hh, -hh, hh, 2 * hh):
                flat[i] = x0 + step
                vals.append(f())
                crossed = crossed or (base is not None and not np.array_equal(kinks(), base))  # type: ignore[misc]
            flat[i] = x0
            if not crossed:
                grad[i] = (vals[0] - 8 * vals[1] + 8 * vals[2] - vals[3]) / (12 * hh)
                break
    return out


def check_module(
    k: ModuleType,
    seed: int = 0,
    tol: float | None = None,
    problems: Sequence[Problem] = DEFAULT_PROBLEMS,
    regime: Regime = NORMAL,
    cell: Cell | None = None,
) -> list[CheckRow]:
    """Check every gradient ``k.backward`` returns against central differences of ``k.forward``.

    ``tol`` overrides the regime's relative tolerance.  ``cell``: the module's cell, for a module with kinks
    (``NONSMOOTH``) whose stencils must not cross one (default: the cell its ``CELL_SPEC`` names).  Returns
    one row per gradient key.
    """
    ref = None
    if getattr(k, "NONSMOOTH", False):
        from .cells import get_cell
        from .reference import Reference

        ref = Reference(cell if cell is not None else get_cell(k.CELL_SPEC))
    tol = regime.tol if tol is None else tol
    h = regime.h
    if getattr(k, "REDUCES_OVER_UNITS", False):
        problems = [(T, B, n_x, max(n_a, 4), mode, dc) for T, B, n_x, n_a, mode, dc in problems]
        h = min(h, 1e-4)
    rng = np.random.default_rng(seed)
    worst: dict[str, float] = {}
    judged: dict[str, float] = {}
    shapes: dict[str, set[str]] = {}
    skipped: dict[str, int] = {}
    for T, B, n_x, n_a, mode, with_dc in problems:
        p = {
            name: regime.weight_scale * v
            for name, v in k.init_params(n_x, n_a, seed=int(rng.integers(1 << 30))).items()
        }
        for name in getattr(k, "UNIT_PARAMS", ()):  # distinct per unit, even where init_params starts them equal
            p[name] = p[name] + rng.uniform(-0.5, 0.5, size=n_a)
        x = rng.normal(size=(T, B, n_x))
        init = {f"{s}0": 0.5 * rng.normal(size=(B, n_a)) for s in k.STATES}
        y = rng.normal(size=(T, B, n_a) if mode == "many-to-many" else (B, n_a))
        extra = {f"d{s}": rng.normal(size=(T, B, n_a)) for s in k.STATES[1:]} if with_dc else {}

        def loss(x=x, p=p, init=init, y=y, mode=mode, extra=extra) -> float:
            out = k.forward(x, p, **init)
            E = k.mse_loss(out[0], y, mode)[0]
            return E + sum(float(np.sum(v * out[1 + j])) for j, v in enumerate(extra.values()))

        out = k.forward(x, p, **init)
        E, da = k.mse_loss(out[0], y, mode)
        allowance = regime.atol * max(1.0, abs(E))
        grads = k.backward(da, out[-1], **extra)
        arrays = {**p, "x": x, **init}
        if set(grads) != set(arrays):
            raise AssertionError(f"backward returned keys {sorted(grads)}, expected {sorted(arrays)}")
        signs = None if ref is None else (lambda x=x, p=p, init=init: np.sign(ref.run(x, p, init, kinks=True)[1]))
        for key, arr in arrays.items():
            numeric = numeric_gradient(loss, arr, h, signs)
            skipped[key] = skipped.get(key, 0) + int(np.isnan(numeric).sum())
            if grads[key].shape != arr.shape:
                raise AssertionError(f"gradient {key} has shape {grads[key].shape}, expected {arr.shape}")
            worst[key] = max(worst.get(key, 0.0), relative_error(grads[key], numeric))
            judged[key] = max(judged.get(key, 0.0), relative_error(grads[key], numeric, allowance))
            shapes.setdefault(key, set()).add(_shape_name(key, k))
    return CheckReport(
        CheckRow(
            key, " | ".join(sorted(shapes[key])), worst[key], tol, judged[key] if regime.atol else None, skipped[key]
        )
        for key in arrays
    )


def _shape_name(key: str, k: ModuleType) -> str:
    if key == "x":
        return "(T, B, n_x)"
    if key.endswith("0") and key[:-1] in k.STATES:
        return "(B, n_a)"
    if key in getattr(k, "WEIGHTS", ()):
        return f"(n_a, {getattr(k, 'WEIGHT_COLUMNS', {}).get(key, 'n_a + n_x')})"
    return "(n_a,)"


def format_table(rows: Sequence[CheckRow]) -> str:
    """The check as a text table: gradient, shape, max relative error, verdict (the error after the
    round-off allowance too, where that decided a verdict), and the entries a kink kept from being compared."""
    allowance = any(r.judged is not None and r.max_rel_error > r.tol for r in rows)
    extra = f" {'judged error':>16}" if allowance else ""
    first = "raw rel. error" if allowance else "max rel. error"
    lines = [f"{'gradient':<10} {'shape':<18} {first:>15}{extra}  ", "-" * (50 + len(extra))]
    for r in rows:
        judged = (f" {r.judged:>16.3e}" if r.judged is not None else " " * 17) if allowance else ""
        verdict = "✓" if r.ok else "✗ > %.0e" % r.tol
        lines.append(f"{r.key:<10} {r.shape:<18} {r.max_rel_error:>15.3e}{judged}  {verdict}")
    if allowance:
        lines.append(
            "raw: max |g − n| / (|g| + |n|), where entries near 0 compare the stencil's round-off with round-off; "
            "judged: the same after allowing |g − n| ≤ atol·max(1, |E|) for that round-off (the verdict reads it)"
        )
    skipped = {r.key: r.skipped for r in rows if r.skipped}
    if skipped:
        lines.append(
            "not compared (every stencil down to h/1000 crossed a kink): "
            + ", ".join(f"{n} of {key}" for key, n in skipped.items())
        )
    return "\n".join(lines)
