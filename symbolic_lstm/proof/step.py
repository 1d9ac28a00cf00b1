"""A proof for every T: the one-step lemma, and induction over time.

The engine's backward is the same statements at every step t; prove *them*, once, and BPTT follows for any
sequence length.

**The lemma.**  One step F: (states<t-1>, x<t>, θ) → (states<t>, output<t>).  Let λ_s be the adjoint
arriving at each state s<t> from the steps after t (∂E<t+1…T>/∂s<t>, fresh symbols: any value at all), and
let the step's own Error E<t> be scored or not.  Then the engine's backward for that step — δ of every
previous state, δx<t>, and the step's contribution to every parameter's gradient, forks summed — equals the
vector–Jacobian product of F computed directly: ``sympy.diff`` of

    L = Σ_s ⟨λ_s, s<t>⟩ + [E<t>]

with respect to states<t-1>, x<t> and θ (θ at this step only).  Checked exactly as the unrolled proof is
(:mod:`symbolic_lstm.proof`: floats as exact rationals, activations as independent random rationals,
Schwartz–Zippel; ``exact`` expands the difference), at the sizes given.

**The induction.**  The Error over T steps is E = Σ_t E<t>, with θ shared by every step.  Reverse
accumulation starts from λ<T> = 0 (nothing after the last step) and, at t = T … 1, applies the lemma with
λ<t> the δ of the previous states that step t + 1 returned: by the lemma that δ is ∂(E<t+1> + … + E<T>)/∂s<t>
exactly, so each step's δ's are exact for every t (induction on T − t), ∂E/∂x<t> is step t's δx, ∂E/∂s<0>
is step 1's δ, and ∂E/∂θ is the sum of the steps' contributions (θ is shared: the total derivative sums its
uses).  Many-to-one scores E<T> only.  What the induction rests on besides the lemma — the boundary
λ<T> = 0, the sum over steps, the scoring of each loss mode, the hand-over of δs<t-1> to step t − 1 — is the
driver's, the same code for every T; it is checked against direct differentiation of the unrolled Error at
T = 1 and T = 2 (every gradient, both loss modes), the smallest lengths that exercise each piece.

**Several inputs.**  A cell that reads further per-step inputs (a decoder's context z<t> beside x<t>) has the
lemma for each: the engine's δz<t> equals ∂L/∂z<t> as its δx<t> equals ∂L/∂x<t>, and the induction hands
∂E/∂z<t> the step's δz as it hands ∂E/∂x<t> the step's δx.  Every further input is given n_x units in the
proof (its own width is a size like n_x: the matrix rules are derived at symbolic sizes).

**Every n.**  What makes the step's backward depend on the width is inside the stage rules — the matrix rules
over n units and m_i columns, a unit reading its own unit, a mean's Σ and 1/n.  Those are proved at symbolic
sizes, as the engine produces them, by :mod:`.rules` (once per kind and operand pattern, cached).  The lemma
checks the *wiring* — the derivation's chain expressions, derived once with no size in them, which compose the
rules along the graph with forks adding — at the sizes tried (n_a = n_x ∈ {1, 2}; n_a = 2 for a cell with a
mean); a wrong wiring is a wrong name in an expression that is the same at every size, so it shows there.
Together: every T and every n (docs/internals.md, "For every n").
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import sympy as sp

from ..engine.cell import Cell
from ..engine.derivation import LOSS_MODES
from .comparison import Comparison
from .exact import for_proof
from .net import UnrolledNet, engine_gradients, symbol_vector
from .obligations import (
    Executor,
    LocalProcesses,
    Progress,
    ProofLine,
    ProofReport,
    _Job,
    decide,
    derivation_of,
    line_verdict,
    point_sets,
    prove,
)
from .points import indeterminates

#: The two cases of the lemma: the step's Error scored (many-to-many, or t = T), or not (many-to-one, t < T).
CASES = ("E<t> scored", "E<t> not scored")


@dataclass(frozen=True)
class Obligation:
    """One thing the proof checks, and what it is for (printed above its lines)."""

    name: str
    statement: str

    def about(self, cell: Cell) -> str:
        """The statement for ``cell``: its per-step inputs named where the statement says x<t> (``x<t>, z<t>``)."""
        return self.statement.replace("x<t>", ", ".join(f"{i}<t>" for i in cell.inputs))


LEMMA = Obligation(
    "lemma",
    "one step: the engine's δ's of states<t-1>, x<t> and the step's parameter contributions equal the direct "
    "derivatives of L = Σ_s ⟨λ_s, s<t>⟩ + [E<t>] for free adjoints λ_s from the future",
)
EVERY_N = Obligation(
    "every n",
    "each stage kind's rule, as the engine produces it, equals its vector–Jacobian product at symbolic sizes (n "
    "units, m_i columns per operand, B rows: index notation, decided exactly) — once per kind and operand pattern, "
    "cached, cited by every cell",
)
DRIVER = Obligation(
    "induction",
    "base and step of the induction: BPTT over T = 1 and T = 2 (boundary λ<T> = 0, contributions summed over "
    "steps, many-to-one scoring E<T> only) equals direct differentiation of the unrolled Error",
)


def prove_step(
    cell: Cell,
    n_a: int = 1,
    n_x: int = 1,
    points: int = Comparison.points,
    seed: int = Comparison.seed,
    exact: bool = Comparison.exact,
    workers: int | None = None,
    executor: Executor | None = None,
    progress: Progress | None = None,
) -> ProofReport:
    """Check the one-step lemma for ``cell`` at these sizes, in both cases (E<t> scored or not).

    Returns one line per gradient and case: parameters (this step's contribution), ``x`` (x<t>) and
    ``<state>0`` (the previous state s<t-1>).
    """
    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}")
    cell = for_proof(cell)
    net = UnrolledNet(cell, n_a, n_x, 1)  # states<0> are the symbols s<t-1>, x<1> is x<t>
    d = derivation_of(cell)
    lam = {s: symbol_vector(f"lambda_{s}", net.size_of(s)).T for s in cell.states}  # adjoints from the future: free
    future = sp.Add(*(lam[s][i] * net.steps[0][s][i] for s in cell.states for i in range(net.size_of(s))))
    terms = [future, net.step_errors[0]]
    scored = {CASES[0]: frozenset({1, 2}), CASES[1]: frozenset({1})}  # which of ``terms`` L adds, per case
    ours = {
        case: engine_gradients(net, d, "many-to-many", incoming=dict(lam), scored=lambda t, c=case: c == CASES[0])
        for case in CASES
    }
    wrt = list(net.wrt())
    jobs = [(name, k, sym) for name, syms in wrt for k, sym in enumerate(syms)]
    atoms = indeterminates(terms + [e for g in ours.values() for m in g.values() for e in m])
    rng = random.Random(seed)
    draw = point_sets(atoms, rng, points)
    job = _Job(terms, scored, ours, draw(), exact)  # type: ignore[arg-type]
    verdicts = decide(job, jobs, executor or LocalProcesses(workers), progress, draw)
    lines = ProofReport()
    for case in CASES:
        for name, syms in wrt:
            ok, method = line_verdict([verdicts[(name, k)][case] for k in range(len(syms))], points, exact)
            lines.append(ProofLine(name, tuple(syms.shape), len(syms), ok, n_a, n_x, 1, case, method, "lemma"))  # type: ignore[arg-type]
    return lines


def driver_size(cell: Cell) -> tuple[int, int]:
    """(n_a, n_x) of the induction's base and step: 1 and 1, or 2 units where a mean over units needs them
    (a layer norm over one unit is identically its β)."""
    if cell.scalars:
        return (2, 2 if cell.square else 1)
    return (1, 1)


def prove_driver(
    cell: Cell,
    points: int = 2,
    seed: int = 0,
    workers: int | None = None,
    executor: Executor | None = None,
) -> ProofReport:
    """The induction's base and step: the unrolled proof at T = 1 and T = 2, both loss modes."""
    n_a, n_x = driver_size(cell)
    lines = ProofReport()
    for T in (1, 2):
        lines.extend(prove(cell, n_a, n_x, T, LOSS_MODES, points=points, seed=seed, workers=workers, executor=executor))
    return lines
