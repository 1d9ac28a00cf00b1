"""``prove``: the one-step lemma and induction over time (any T), or the unrolled network (-T), with progress on
a terminal."""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from typing import TextIO

import click

from ..engine.cell import Cell
from ..engine.derivation import LOSS_MODES
from ..proof.comparison import Comparison
from .common import CELL, Dask, dask_options, gathered, loss_option, main, seed_option


@main.command(short_help="prove the chain-rule engine: the one-step lemma, and induction over time (any T)")
@CELL
@click.option("--n-a", type=click.IntRange(min=1, max=4), default=None, help="Hidden size (default: 1 and 2).")
@click.option("--n-x", type=click.IntRange(min=1, max=4), default=None, help="Input size (default: = n_a).")
@click.option(
    "--unrolled",
    is_flag=True,
    help="Instead: differentiate the Error of a net unrolled over T steps directly (the second, independent check).",
)
@click.option(
    "--unroll",
    "-T",
    type=click.IntRange(min=1, max=5),
    default=None,
    help="Steps to unroll (implies --unrolled) [default: 3; 1 for cells that normalise over units].",
)
@loss_option("both", default="both")
@click.option(
    "--points",
    type=click.IntRange(min=1, max=50),
    default=3,
    show_default=True,
    help="Random rational points to compare at.",
)
@seed_option()
@click.option("--exact", is_flag=True, help="Also expand every difference to 0 (slow: minutes).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: CPUs).")
@click.option(
    "--verbose",
    "-v",
    is_flag=True,
    help="Every comparison on a line of its own (size, loss mode, points), not the table of obligations.",
)
@dask_options("Prove")
@gathered(Comparison, "comparison")
def prove(
    cell: Cell,
    n_a: int | None,
    n_x: int | None,
    unrolled: bool,
    unroll: int | None,
    loss: str,
    comparison: Comparison,
    jobs: int | None,
    verbose: bool,
    dask: Dask,
) -> None:
    """Prove the engine's backward right for every sequence length: the one-step lemma and induction over T.

    The lemma: for one step, with free adjoints λ_s arriving at each state from the future, the engine's
    δ's of the previous states and x<t> and the step's parameter contributions equal the direct derivatives
    of L = Σ_s ⟨λ_s, s<t>⟩ + [E<t>] (E<t> scored, or not).  The induction's base and step: BPTT over T = 1
    and T = 2 (its boundary, its sums over steps, each loss mode's scoring) against direct differentiation
    of the unrolled Error.  Together they give every T.  --unrolled (or -T) instead compares with the
    Error of a net unrolled over T steps: a second, independent check.

    Prints a table, one row per gradient and a column per obligation (the lemma at each size, the base T = 1,
    the step T = 2), then what follows; -v prints every comparison instead.  Exits 1 on any mismatch.  The
    comparisons are independent: they run in local processes (--jobs), or as one task per gradient entry on
    Dask (--workers, --scheduler).
    """
    from ..proof.obligations import prove_all

    if jobs is not None and (dask.workers is not None or dask.scheduler is not None):
        raise click.UsageError("--jobs sets local processes; with Dask (--workers, --scheduler) leave it out")

    reduces = bool(cell.scalars)
    if cell.square and n_a is not None and n_x is not None and n_a != n_x:
        raise click.BadParameter(
            f"cell {cell.name} reads its input unit by unit beside n_a units: it needs n_x = n_a", param_hint="--n-x"
        )
    if n_a is None and n_x is None:
        # a layer norm over one unit is identically β: prove normalising cells at n_a = 2
        sizes = [(2, 1 if not cell.square else 2)] if reduces else [(1, 1), (2, 2)]
    else:
        sizes = [(n_a or n_x, n_x or n_a)]  # type: ignore[list-item]
    modes = LOSS_MODES if loss == "both" else (loss,)
    if not unrolled and unroll is None:
        _prove_for_every_t(cell, sizes, modes, comparison, jobs, dask, verbose)
        return
    if unroll is None:
        unroll = 1 if reduces else 3
        if reduces:
            click.echo(
                f"cell {cell.name} normalises over units: proving at T = 1 (each further step multiplies the "
                "unrolled Error's size)",
                err=True,
            )
    failed = proved = 0
    progress = ProofProgress(f"unrolled, T = {unroll}")
    with _proof_executor(jobs, dask) as kw:
        for line in prove_all(cell, sizes, unroll, modes, **comparison.keywords(), progress=progress.callback, **kw):
            progress.clear()
            click.echo(str(line))
            failed += not line.ok
            proved += 1
    if failed:
        click.echo(f"{failed} gradient(s) differ from direct differentiation", err=True)
        sys.exit(1)
    if not proved:  # a proof of nothing is no proof: never a silent success
        click.echo("no gradient was compared: nothing is proved", err=True)
        sys.exit(1)
    click.echo("all gradients equal direct differentiation of the unrolled Error")


def _prove_for_every_t(
    cell: Cell,
    sizes: list[tuple[int, int]],
    modes: tuple[str, ...],
    comparison: Comparison,
    jobs: int | None,
    dask: Dask,
    verbose: bool = False,
) -> None:
    """The lemma at ``sizes``, the induction's base and step at T = 1, 2, as a table (``verbose``: every line);
    what follows, in words."""
    from ..proof.cache import ProofCache
    from ..proof.exact import for_proof
    from ..proof.obligations import derivation_of, prove
    from ..proof.sizes import prove_sizes
    from ..proof.step import CASES, DRIVER, EVERY_N, LEMMA, driver_size, prove_step

    failed: dict[str, list[str]] = {EVERY_N.name: [], LEMMA.name: [], DRIVER.name: []}
    proved = 0
    progress = ProofProgress(LEMMA.name)

    columns: dict[str, list] = {}

    def show(lines: list, obligation: str, column: str) -> None:
        nonlocal proved
        progress.clear()
        columns[column] = list(lines)
        for line in lines:
            if verbose:
                click.echo(str(line))
            proved += 1
            if not line.ok:
                where = f"n_a={line.n_a} {line.mode}" if obligation == LEMMA.name else f"T={line.T} {line.mode}"
                failed[obligation].append(f"{line.gradient} ({where})")

    click.echo(f"{EVERY_N.name}: {EVERY_N.statement}")
    proof_cell = for_proof(cell)
    rules = prove_sizes(proof_cell, derivation_of(proof_cell), ProofCache())
    for rule in rules:
        click.echo(f"  {rule}")
        failed[EVERY_N.name] += [] if rule.ok else [f"{rule.name} ({', '.join(rule.differs)})"]
    with _proof_executor(jobs, dask) as kw:
        click.echo(f"{LEMMA.name}: {LEMMA.about(cell)} ({' / '.join(CASES)})")
        for n_a, n_x in sizes:
            progress.label = f"{LEMMA.name}, n_a = {n_a}, n_x = {n_x}"
            lines = prove_step(cell, n_a, n_x, **comparison.keywords(), progress=progress.callback, **kw)  # type: ignore[arg-type]
            show(lines, LEMMA.name, f"lemma n_a={n_a}" if n_a == n_x else f"lemma {n_a}x{n_x}")
        da, dx = driver_size(cell)
        click.echo(f"{DRIVER.name}: {DRIVER.statement} (n_a = {da}, n_x = {dx})")
        for T in (1, 2):
            progress.label = f"{DRIVER.name}, T = {T}"
            lines = prove(cell, da, dx, T, modes, **comparison.keywords(), progress=progress.callback, **kw)  # type: ignore[arg-type]
            show(lines, DRIVER.name, "base T=1" if T == 1 else "step T=2")
    if not verbose and columns:
        click.echo(obligation_table(columns))
    if any(failed.values()):
        what = "; ".join(
            f"the {name} obligation fails for {', '.join(lines)}"
            if name == EVERY_N.name
            else f"the {name} fails for {', '.join(lines)}"
            for name, lines in failed.items()
            if lines
        )
        follows = (
            "nothing follows for other T"
            if failed[LEMMA.name] or failed[DRIVER.name]
            else ("nothing follows for other n")
        )
        click.echo(f"{what}: {follows}", err=True)
        sys.exit(1)
    if not proved:
        click.echo("no gradient was compared: nothing is proved", err=True)
        sys.exit(1)
    click.echo(conclusion(sizes, rules.uncovered))


def conclusion(sizes: list[tuple[int, int]], uncovered: list[str]) -> str:
    """The proof's last line: what follows from the obligations — for every T and every n, or for every T and
    the sizes checked, naming the stages no symbolic-size rule covers."""
    where = "; ".join(f"n_a = n_x = {a}" if a == x else f"n_a = {a}, n_x = {x}" for a, x in sizes)
    every_t = (
        "BPTT's boundary, sums over steps and loss modes hold at T = 1, 2; by induction over the steps, every "
        "gradient is exact for any sequence length"
    )
    if uncovered:
        return (
            f"proved for every T at the sizes checked ({where}); not for every n: no symbolic-size rule covers "
            f"{', '.join(uncovered)}, so the width rests on those sizes — one step's backward is the step's "
            f"vector–Jacobian product there; {every_t} (README: why the proof is a proof)"
        )
    return (
        "proved for every T and every n: every stage's rule is its vector–Jacobian product at symbolic sizes (the "
        "every-n obligations above); one step's backward — those rules composed along the step's graph, forks "
        f"adding, the same expression at every size — is the step's vector–Jacobian product ({where}), which "
        f"decides the composition; {every_t} and any widths n_a, n_x (README: why the proof is a proof)"
    )


def obligation_table(columns: dict[str, list]) -> str:
    """One row per gradient, a column per obligation (``columns``: its name → its proof lines): ✓ where every
    comparison of that gradient in that obligation (each size, each loss mode) held, ✗ where one did not."""
    rows: list[str] = []
    for lines in columns.values():
        for ln in lines:
            if ln.gradient not in rows:
                rows.append(ln.gradient)

    def label(gradient: str) -> str:  # a state's δ: a<t-1> in one step, a<0> at the start of a sequence
        return f"{gradient[:-1]}<t-1>, {gradient[:-1]}<0>" if gradient.endswith("0") else gradient

    def mark(lines: list, gradient: str) -> str:
        mine = [ln for ln in lines if ln.gradient == gradient]
        return "–" if not mine else "✓" if all(ln.ok for ln in mine) else "✗"

    width = max(len("gradient"), *(len(label(g)) for g in rows)) + 2
    head = "gradient".ljust(width) + "  ".join(c.ljust(max(len(c), 1)) for c in columns)
    body = [
        (label(g).ljust(width) + "  ".join(mark(lines, g).ljust(len(c)) for c, lines in columns.items())).rstrip()
        for g in rows
    ]
    return "\n".join([head, "-" * len(head), *body])


@contextlib.contextmanager
def _proof_executor(jobs: int | None, dask: Dask) -> Iterator[dict]:
    """Where a proof's obligations run — ``{"workers": jobs}`` (local processes) or ``{"executor": …}`` (Dask,
    said on standard error) — for the body; Ctrl-C ends the proof with one line and exit code 130."""
    client = dask.client()
    if client is not None:
        from ..distributed import DaskExecutor

        click.echo(f"proving on {dask.where(client)}", err=True)
    try:
        yield {"executor": DaskExecutor(client)} if client is not None else {"workers": jobs}
    except KeyboardInterrupt:
        click.echo("\ninterrupted: the proof is incomplete", err=True)
        sys.exit(130)
    finally:
        if client is not None:
            client.close()  # type: ignore[attr-defined]


class ProofProgress:
    """Progress of a proof on standard error, one line rewritten in place — which obligation, entries
    decided of how many, the gradient just decided, the time since the start — on a terminal only: piped or
    redirected, it writes nothing."""

    def __init__(self, label: str, stream: TextIO | None = None) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.on = bool(getattr(self.stream, "isatty", lambda: False)())
        self.start = time.monotonic()
        self._width = 0

    def __call__(self, done: int, total: int, gradient: str) -> None:
        if not self.on:
            return
        text = f"{self.label}: {done}/{total} decided (last: {gradient}), {time.monotonic() - self.start:.0f} s"
        self.stream.write("\r" + text.ljust(self._width))
        self.stream.flush()
        self._width = len(text)

    @property
    def callback(self) -> ProofProgress | None:
        """What to pass as the proof's ``progress``: this reporter on a terminal, else None (no polling)."""
        return self if self.on else None

    def clear(self) -> None:
        """Erase the line before results are printed."""
        if self.on and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self.stream.flush()
            self._width = 0
