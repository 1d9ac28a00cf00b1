"""A symbolic proof that the chain-rule engine is right, for a tiny unrolled net.

For n_a, n_x and T given, every weight, bias, input, initial state and target becomes a SymPy symbol.
The forward pass is unrolled into one Error expression, which ``sympy.diff`` differentiates *directly*
with respect to every symbol.  Independently, the engine's per-step equations (δ at every fork, the
linear stages' matrix-calculus rules, the boundary conditions, sums over time) run backward over the
same unrolled values.  The two must be identical.

How the two sides are built is :mod:`symbolic_lstm.proof.net` (the unrolled net and the engine's gradients over
it); how they are compared, exactly, is :mod:`symbolic_lstm.proof.exact`; this module runs the obligations (one
per gradient entry) on an executor and collects the verdicts.  The one-step lemma and induction over T, which
make the proof hold for every T, are :mod:`symbolic_lstm.proof.step`.
"""

from __future__ import annotations

import multiprocessing
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import Any, Protocol

import sympy as sp

from ..engine.cell import Cell
from ..engine.derivation import LOSS_MODES, LossMode, StepDerivation, derive
from .comparison import Comparison
from .exact import Evaluator, UnjudgedPointError, exact_constants, for_proof, polynomial_zero
from .net import UnrolledNet, accumulate, boundary, engine_gradients, explicit, step_backward
from .points import Point, indeterminates, random_point

__all__ = [
    "Evaluator", "Executor", "LocalProcesses", "Point", "ProofLine", "ProofReport", "UnjudgedPointError",
    "UnrolledNet", "accumulate", "boundary", "decide", "derivation_of", "engine_gradients", "exact_constants",
    "explicit", "for_proof", "indeterminates", "method_of", "polynomial_zero", "prove", "prove_all", "random_point",
    "step_backward",
]  # fmt: skip


@dataclass(frozen=True)
class ProofLine:
    """The verdict for one gradient: ``entries`` scalar partial derivatives compared."""

    gradient: str
    shape: tuple[int, ...]
    entries: int
    ok: bool
    n_a: int
    n_x: int
    T: int
    mode: str  # a loss mode; for the one-step lemma, whether the step's Error is scored
    method: str
    kind: str = "unrolled"  # "unrolled" (T steps), or "lemma" (one step, free adjoints from the future)

    def __str__(self) -> str:
        mark = "✓" if self.ok else "✗"
        shape = "×".join(map(str, self.shape))
        if self.kind == "lemma":
            name = f"{self.gradient[:-1]}<t-1>" if self.gradient.endswith("0") else self.gradient
            return (
                f"{mark} ∂L/∂{name:<7} ({shape}, {self.entries} entries)  one step, n_a={self.n_a} n_x={self.n_x}, "
                f"{self.mode}: {self.method}"
            )
        return (
            f"{mark} dError/d{self.gradient:<4} ({shape}, {self.entries} entries)  "
            f"n_a={self.n_a} n_x={self.n_x} T={self.T} {self.mode}: {self.method}"
        )


class ProofReport(list):
    """The lines of a proof (a list of :class:`ProofLine`): ``str`` is what ``symbolic-lstm prove`` prints,
    Jupyter shows an HTML table."""

    @property
    def ok(self) -> bool:
        return all(line.ok for line in self)

    def __str__(self) -> str:
        return "\n".join(map(str, self))

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            "<tr><td>%s</td><td>%s</td><td>%s</td><td>%d</td><td>n_a=%d, n_x=%d, T=%d</td><td>%s</td>"
            "<td>%s</td></tr>"
            % (
                "✓" if ln.ok else "✗",
                ("∂L/∂" if ln.kind == "lemma" else "∂Error/∂") + html.escape(ln.gradient),
                "×".join(map(str, ln.shape)),
                ln.entries,
                ln.n_a,
                ln.n_x,
                ln.T,
                html.escape(ln.mode),
                html.escape(ln.method),
            )
            for ln in self
        )
        lemma = any(ln.kind == "lemma" for ln in self)
        verdict = "every gradient equals direct differentiation" if self.ok else "some gradients differ"
        what = "of L = Σ_s ⟨λ_s, s&lt;t&gt;⟩ + [E&lt;t&gt;] over one step" if lemma else "of the unrolled Error"
        return (
            "<table><thead><tr><th></th><th>gradient</th><th>shape</th><th>entries</th><th>net</th><th>loss</th>"
            f"<th>compared</th></tr></thead><tbody>{rows}</tbody></table><p>{verdict} {what}</p>"
        )


_DERIVATIONS: dict[tuple, StepDerivation] = {}


def derivation_of(cell: Cell) -> StepDerivation:
    """``derive(cell)``, once per cell and engine: the lemma and the induction's T = 1, 2 share it."""
    key = (derive, cell.name, cell.stages, cell.inputs, cell.states, cell.output, cell.vectors, cell.scalars)
    if key not in _DERIVATIONS:
        _DERIVATIONS[key] = derive(cell)
    return _DERIVATIONS[key]


def prove(
    cell: Cell,
    n_a: int = 1,
    n_x: int = 1,
    T: int = 3,
    modes: tuple[LossMode, ...] = LOSS_MODES,
    points: int = Comparison.points,
    seed: int = Comparison.seed,
    exact: bool = Comparison.exact,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> ProofReport:
    """Compare direct differentiation of the unrolled Error with the engine, gradient by gradient.

    Each step's Error is differentiated once per symbol and shared by both loss modes (many-to-one
    scores only the last step).  The differentiations are independent, so they run on ``executor``: by
    default :class:`LocalProcesses` (``workers`` forked processes, default one per CPU, that send back only
    verdicts); :class:`symbolic_lstm.distributed.DaskExecutor` runs one task per gradient entry on a cluster.
    """
    for mode in modes:
        if mode not in LOSS_MODES:
            raise ValueError(f"loss mode must be one of {', '.join(LOSS_MODES)}, got {mode!r}")
    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}")
    cell = for_proof(cell)
    net = UnrolledNet(cell, n_a, n_x, T)
    d = derivation_of(cell)
    ours = {mode: engine_gradients(net, d, mode) for mode in modes}
    wrt = list(net.wrt())
    jobs = [(name, k, sym) for name, syms in wrt for k, sym in enumerate(syms)]
    atoms = indeterminates(net.step_errors + [e for g in ours.values() for m in g.values() for e in m])
    rng = random.Random(seed)
    scored = {mode: frozenset(t for t in range(1, T + 1) if net.scored(t, mode)) for mode in modes}
    draw = point_sets(atoms, rng, points)
    job = _Job(net.step_errors, scored, ours, draw(), exact)
    verdicts = decide(job, jobs, executor or LocalProcesses(workers), progress, draw)
    lines = ProofReport()
    for mode in modes:
        for name, syms in wrt:
            ok, method = line_verdict([verdicts[(name, k)][mode] for k in range(len(syms))], points, exact)
            lines.append(ProofLine(name, tuple(syms.shape), len(syms), ok, n_a, n_x, T, mode, method))
    return lines


@dataclass
class _Job:
    """What every obligation reads (sent once to each process or Dask worker): plain SymPy data."""

    step_errors: list[sp.Expr]
    scored: dict[LossMode, frozenset[int]]  # the steps each loss mode scores
    engine: dict[LossMode, dict[str, sp.Matrix]]
    points: list[Point]
    exact: bool


_JOB: _Job | None = None


class Executor(Protocol):
    """Where a proof's obligations run: ``map(check, context, jobs, progress)`` returns
    ``dict(check(job, context) for job in jobs)``, calling ``progress(done, total, gradient)`` as verdicts
    arrive.  :class:`LocalProcesses` here; :class:`symbolic_lstm.distributed.DaskExecutor` on a cluster."""

    def map(self, check: Callable, context: Any, jobs: list, progress: Progress | None) -> dict: ...


@dataclass(frozen=True)
class LocalProcesses:
    """``workers`` processes forked with the context in hand (default: one per CPU; one runs in this process)."""

    workers: int | None = None

    def map(self, check: Callable, context: Any, jobs: list, progress: Progress | None) -> dict:
        global _JOB
        _JOB = context
        try:
            return _run(check, self.workers, jobs, progress, context)
        finally:
            _JOB = None


#: Fresh sets of points drawn for the entries no point of the first set could judge (each on a pole or a kink).
REDRAWS = 2


def decide(
    job: _Job,
    jobs: list[tuple[str, int, sp.Symbol]],
    executor: Executor,
    progress: Progress | None,
    redraw: Callable[[], list[Point]] | None = None,
) -> dict:
    """Every obligation's verdicts (one per gradient entry), run on ``executor``: True, False, or None where no
    point could judge it — then decided again at up to REDRAWS fresh sets of points from ``redraw``."""
    verdicts = executor.map(_check, job, jobs, progress)
    for _ in range(REDRAWS if redraw is not None else 0):
        undecided = [j for j in jobs if None in verdicts[(j[0], j[1])].values()]
        if not undecided:
            break
        again = executor.map(_check, replace(job, points=redraw()), undecided, None)  # type: ignore[misc]
        for key, fresh in again.items():
            verdicts[key] = {m: fresh[m] if v is None else v for m, v in verdicts[key].items()}
    return verdicts


def point_sets(atoms: list[sp.Expr], rng: random.Random, points: int) -> Callable[[], list[Point]]:
    """Draws ``points`` random points for ``atoms`` from ``rng`` each call: the first set, then the fresh ones
    :func:`decide` asks for."""
    return lambda: [random_point(atoms, rng) for _ in range(points)]


def line_verdict(found: list[bool | None], points: int, exact: bool) -> tuple[bool, str]:
    """A line's verdict from its entries' (True, False, or None where no point could judge one) and how it was
    reached, as the line prints it."""
    if False in found:  # one point where the sides differ disproves the identity, whatever the others say
        return False, f"differs from direct differentiation at a random rational point (of {points})"
    return all(v is True for v in found), method_of(points, exact, judged=None not in found)


def method_of(points: int, exact: bool, judged: bool = True) -> str:
    """How a line's identity was checked, as the lines print it (``judged``: some point could judge every entry)."""
    if not judged:
        return f"not decided: every random rational point drawn ({points} × {1 + REDRAWS}) lies on a pole or a kink"
    return f"equal at {points} random rational points" + ("; difference expands to 0" if exact else "")


def _check(
    job: tuple[str, int, sp.Symbol], context: _Job | None = None
) -> tuple[tuple[str, int], dict[LossMode, bool | None]]:
    """Differentiate every step's Error by one symbol and compare with the engine in each mode (None: no point
    could judge it)."""
    name, k, sym = job
    ctx = context or _JOB
    assert ctx is not None
    # the direct side: ∂(each term)/∂sym at each point, by forward-mode differentiation of the expression
    # (None where the point lies on a pole or a kink: not a point to judge at); the engine's side evaluated in
    # the same exact arithmetic, sharing the forward values
    evaluators = _evaluators(ctx)
    at_points = [_direct_at(ctx.step_errors, sym, ev) for ev in evaluators]
    per_step = [sp.diff(e, sym) for e in ctx.step_errors] if ctx.exact else None
    verdict = {}
    for mode, grads in ctx.engine.items():
        ours = grads[name][k]
        ok, compared = True, 0
        for ev, direct in zip(evaluators, at_points, strict=True):
            if direct is None:
                continue
            try:
                vb = ev.value(ours)
            except UnjudgedPointError:
                continue  # a denominator vanishes here (log's 1/(1 + e^s) where e^s drew −1): not a point to judge at
            compared += 1
            ok = ok and sum((g for t, g in enumerate(direct, 1) if t in ctx.scored[mode]), Fraction(0)) == vb
        if compared == 0:
            verdict[mode] = None  # no point could judge it: decided at fresh points (see :func:`decide`)
            continue
        if ok and per_step is not None:
            direct_expr = sp.Add(*(g for t, g in enumerate(per_step, 1) if t in ctx.scored[mode]))
            ok = polynomial_zero(direct_expr - ours)
        verdict[mode] = bool(ok)
    return (name, k), verdict


#: One evaluator per point of the current job, kept by each process across the entries it checks.
_EVALUATORS: tuple[object, list[Evaluator]] | None = None


def _evaluators(ctx: _Job) -> list[Evaluator]:
    global _EVALUATORS
    if _EVALUATORS is None or _EVALUATORS[0] is not ctx:
        _EVALUATORS = (ctx, [Evaluator(p) for p in ctx.points])
    return _EVALUATORS[1]


def _direct_at(terms: list[sp.Expr], sym: sp.Symbol, ev: Evaluator) -> list[Fraction] | None:
    try:
        return [ev.derivative(e, sym) for e in terms]
    except UnjudgedPointError:
        return None


def _leave_interrupts_to_parent(context: Any = None) -> None:
    """Ctrl-C reaches the pool's processes too: only the parent, which stops the pool, should act on it.  A
    process started afresh (not forked) is handed the job's context here."""
    import signal

    global _JOB
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if context is not None:
        _JOB = context


#: ``progress(done, total, gradient)``: called as each obligation (a gradient entry) is decided.
Progress = Callable[[int, int, str], None]


def _run(
    check: Callable, workers: int | None, jobs: list, progress: Progress | None = None, context: Any = None
) -> dict:
    n = len(jobs)
    workers = min(workers or os.cpu_count() or 1, n)
    out: dict = {}

    def collect(results: Iterator) -> dict:
        for key, verdict in results:
            out[key] = verdict
            if progress is not None:
                progress(len(out), n, key[0])
        return out

    if workers > 1 and "fork" in multiprocessing.get_all_start_methods() and not _fork_unsafe():
        with multiprocessing.get_context("fork").Pool(workers, initializer=_leave_interrupts_to_parent) as pool:
            return collect(pool.imap_unordered(check, jobs))
    if workers > 1:  # JAX's threads (or no fork at all): fresh processes, handed the context
        with multiprocessing.get_context("spawn").Pool(
            workers, initializer=_leave_interrupts_to_parent, initargs=(context,)
        ) as pool:
            return collect(pool.imap_unordered(check, jobs))
    return collect(map(check, jobs))


def _fork_unsafe() -> bool:
    """Whether this process runs threads that a fork would copy mid-flight: JAX's (it warns that a fork "will
    likely lead to a deadlock"), once a JAX module or the JAX bridge was used here."""
    import sys

    return "jax" in sys.modules


def prove_all(
    cell: Cell,
    sizes: list[tuple[int, int]],
    T: int = 3,
    modes: tuple[LossMode, ...] = LOSS_MODES,
    **kw: object,
) -> Iterator[ProofLine]:
    """Run :func:`prove` for every size (both loss modes at once)."""
    for n_a, n_x in sizes:
        yield from prove(cell, n_a, n_x, T, modes, **kw)  # type: ignore[arg-type]
