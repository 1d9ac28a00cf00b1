"""The ``symbolic-lstm`` command: derive (LaTeX), prove (symbolic), generate (kernels), check (numeric).

Usage errors (unknown target, cell, option value) exit with code 2 and list the valid choices; a failed
proof or gradient check exits with 1.
"""

from __future__ import annotations

import contextlib
import math
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import TextIO

import click

from . import __version__
from .cell import Cell
from .cells import BUILTIN, get_cell
from .codegen.backends import BACKENDS
from .codegen.backends import DEFAULT as DEFAULT_BACKEND
from .derivation import LOSS_MODES
from .files import write_atomic
from .stale import freshness


class CellParam(click.ParamType):
    """A built-in cell name or ``path/to/file.py:NAME``."""

    name = "cell"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Cell:
        if isinstance(value, Cell):
            return value
        try:
            return get_cell(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


CELL = click.option(
    "--cell",
    type=CellParam(),
    default="lstm",
    show_default=True,
    help=f"Cell to work on: built-in {', '.join(sorted(BUILTIN))}, or path/to/file.py:NAME.",
)


def dask_options(what: str) -> Callable[[Callable], Callable]:
    """--workers N / --scheduler ADDRESS: run ``what`` on Dask (the [distributed] extra)."""

    def decorate(f: Callable) -> Callable:
        f = click.option(
            "--scheduler",
            metavar="ADDRESS",
            default=None,
            help=f"{what} on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:PORT).",
        )(f)
        return click.option(
            "--workers",
            type=click.IntRange(min=1),
            default=None,
            metavar="N",
            help=f"{what} on a local Dask cluster of N worker processes (pip install '.[distributed]').",
        )(f)

    return decorate


def _dask_client(workers: int | None, scheduler: str | None) -> object | None:
    """The Dask client --workers / --scheduler ask for (None for neither); a usage error naming the address
    when nothing answers there, or the extra to install."""
    if workers is None and scheduler is None:
        return None
    if workers is not None and scheduler is not None:
        raise click.UsageError("give --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both")
    try:
        from .distributed import connect

        return connect(workers=workers, scheduler=scheduler)
    except ImportError:
        raise click.UsageError(
            f"{'--workers' if workers else '--scheduler'} needs Dask: pip install 'symbolic-lstm[distributed]'"
        ) from None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--scheduler" if scheduler else "--workers") from None


def _where(client: object, scheduler: str | None) -> str:
    """How many workers a client has, and where: for the run's first lines."""
    from .distributed import workers_of

    n = len(workers_of(client))
    where = f"the cluster at {scheduler}" if scheduler else "a local cluster"
    import importlib.util

    # without bokeh, Dask's dashboard page only says to install it
    link = getattr(client, "dashboard_link", None) if importlib.util.find_spec("bokeh") else None
    return f"{n} Dask worker{'s' if n != 1 else ''} ({where}" + (f"; dashboard {link})" if link else ")")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="symbolic-lstm")
def main() -> None:
    """Backpropagation through an LSTM, derived by the chain rule over its functional stages.

    Exit codes: 0 success; 1 a proof line or a gradient check failed, a stale module, or an output that could
    not be written at the end of a run; 2 a usage error; 3 check --stale found a module it cannot judge.
    """


@main.command(short_help="print the LaTeX derivation of dError/d(target), stage by stage")
@click.argument("targets", nargs=-1, metavar="[TARGET]...")
@CELL
@click.option("--unroll", "-T", type=click.IntRange(min=1), default=None, help="Also print one row per step, t = T…1.")
@click.option("--loss", type=click.Choice(LOSS_MODES), default="many-to-many", show_default=True)
@click.option("--standalone", is_flag=True, help="A complete LaTeX document (compiles with pdflatex).")
@click.option(
    "--head",
    type=click.Choice(["softmax-ce"]),
    default=None,
    help="Also derive a loss head: softmax cross-entropy over z = W_y a + b_y.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file (atomically) instead of standard output.",
)
def derive(
    targets: tuple[str, ...],
    cell: Cell,
    unroll: int | None,
    loss: str,
    standalone: bool,
    head: str | None,
    output: Path | None,
) -> None:
    """Print the LaTeX derivation of dError/dTARGET (all default targets when none is given).

    TARGET is a weight or bias (W_f, b_f, …), a<t-1> (a_prev), c<t-1> (c_prev), x<t> (x), a<0> (a0),
    c<0> (c0), or any node of the cell (sum_f, Gamma_f, c, a …).
    """
    from .emit_latex import DerivationDocument, target_aliases
    from .emit_latex import targets as all_targets

    known = all_targets(cell)
    aliases = target_aliases(cell)
    keys = []
    for t in targets:
        key = aliases.get(t, t)
        if key not in known:
            raise click.BadParameter(
                f"{t!r} is not a target of cell {cell.name!r}. Choose from: {', '.join(known)} "
                f"(also written {', '.join(aliases)})",
                param_hint="TARGET",
            )
        keys.append(key)
    doc = DerivationDocument(cell, mode=loss, unroll=unroll)  # type: ignore[arg-type]
    text = doc.standalone(keys) if standalone else doc.body(keys)
    if head is not None:
        from .heads import latex as head_latex

        section = "\n\\subsection*{Softmax cross-entropy head}\n" + head_latex()
        text = text.replace("\\end{document}", section + "\\end{document}") if standalone else text + section
    _emit(text, output)


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
@click.option("--loss", type=click.Choice([*LOSS_MODES, "both"]), default="both", show_default=True)
@click.option(
    "--points",
    type=click.IntRange(min=1, max=50),
    default=3,
    show_default=True,
    help="Random rational points to compare at.",
)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--exact", is_flag=True, help="Also expand every difference to 0 (slow: minutes).")
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=None, help="Worker processes (default: CPUs).")
@dask_options("Prove")
def prove(
    cell: Cell,
    n_a: int | None,
    n_x: int | None,
    unrolled: bool,
    unroll: int | None,
    loss: str,
    points: int,
    seed: int,
    exact: bool,
    jobs: int | None,
    workers: int | None,
    scheduler: str | None,
) -> None:
    """Prove the engine's backward right for every sequence length: the one-step lemma and induction over T.

    The lemma: for one step, with free adjoints λ_s arriving at each state from the future, the engine's
    δ's of the previous states and x<t> and the step's parameter contributions equal the direct derivatives
    of L = Σ_s ⟨λ_s, s<t>⟩ + [E<t>] (E<t> scored, or not).  The induction's base and step: BPTT over T = 1
    and T = 2 (its boundary, its sums over steps, each loss mode's scoring) against direct differentiation
    of the unrolled Error.  Together they give every T.  --unrolled (or -T) instead compares with the
    Error of a net unrolled over T steps: a second, independent check.

    Prints one line per gradient (✓/✗); exits 1 on any mismatch.  The comparisons are independent: they run
    in local processes (--jobs), or as one task per gradient entry on Dask (--workers, --scheduler).
    """
    from .proof import prove_all

    if jobs is not None and (workers is not None or scheduler is not None):
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
        _prove_for_every_t(cell, sizes, modes, points, seed, exact, jobs, workers, scheduler)
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
    with _proof_executor(jobs, workers, scheduler) as kw:
        for line in prove_all(
            cell, sizes, unroll, modes, points=points, seed=seed, exact=exact, progress=progress.callback, **kw
        ):
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
    points: int,
    seed: int,
    exact: bool,
    jobs: int | None,
    workers: int | None,
    scheduler: str | None,
) -> None:
    """The lemma at ``sizes``, the induction's base and step at T = 1, 2; what follows, in words."""
    from .proof import prove
    from .proof_step import CASES, DRIVER, LEMMA, driver_size, prove_step

    failed: dict[str, list[str]] = {LEMMA.name: [], DRIVER.name: []}
    proved = 0
    progress = ProofProgress(LEMMA.name)

    def show(lines: list, obligation: str) -> None:
        nonlocal proved
        progress.clear()
        for line in lines:
            click.echo(str(line))
            proved += 1
            if not line.ok:
                where = f"n_a={line.n_a} {line.mode}" if obligation == LEMMA.name else f"T={line.T} {line.mode}"
                failed[obligation].append(f"{line.gradient} ({where})")

    with _proof_executor(jobs, workers, scheduler) as kw:
        click.echo(f"{LEMMA.name}: {LEMMA.statement} ({' / '.join(CASES)})")
        for n_a, n_x in sizes:
            progress.label = f"{LEMMA.name}, n_a = {n_a}, n_x = {n_x}"
            lines = prove_step(cell, n_a, n_x, points=points, seed=seed, exact=exact, progress=progress.callback, **kw)  # type: ignore[arg-type]
            show(lines, LEMMA.name)
        da, dx = driver_size(cell)
        click.echo(f"{DRIVER.name}: {DRIVER.statement} (n_a = {da}, n_x = {dx})")
        for T in (1, 2):
            progress.label = f"{DRIVER.name}, T = {T}"
            lines = prove(
                cell, da, dx, T, modes, points=points, seed=seed, exact=exact, progress=progress.callback, **kw
            )  # type: ignore[arg-type]
            show(lines, DRIVER.name)
    if any(failed.values()):
        what = "; ".join(f"the {name} fails for {', '.join(lines)}" for name, lines in failed.items() if lines)
        click.echo(f"{what}: nothing follows for other T", err=True)
        sys.exit(1)
    if not proved:
        click.echo("no gradient was compared: nothing is proved", err=True)
        sys.exit(1)
    where = "; ".join(f"n_a = n_x = {a}" if a == x else f"n_a = {a}, n_x = {x}" for a, x in sizes)
    click.echo(
        f"proved for every T: one step's backward is the step's vector–Jacobian product ({where}); BPTT's "
        "boundary, sums over steps and loss modes hold at T = 1, 2; by induction over the steps, every gradient "
        "is exact for any sequence length (README: why the proof is a proof)"
    )


@contextlib.contextmanager
def _proof_executor(jobs: int | None, workers: int | None, scheduler: str | None) -> Iterator[dict]:
    """Where a proof's obligations run — ``{"workers": jobs}`` (local processes) or ``{"client": …}`` (Dask,
    said on standard error) — for the body; Ctrl-C ends the proof with one line and exit code 130."""
    client = _dask_client(workers, scheduler)
    if client is not None:
        click.echo(f"proving on {_where(client, scheduler)}", err=True)
    try:
        yield {"client": client} if client is not None else {"workers": jobs}
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


def _kernels(cell: Cell, directory: Path | None) -> ModuleType:
    """The cell's generated NumPy module: from ``directory``, the package (built-in cells) or, for a user
    cell, the user cache, where it is generated on first use (said on standard error)."""
    from .codegen import CodegenError
    from .loader import cache_dir, module_for

    try:
        found = module_for(cell, directory)
    except CodegenError as e:
        raise click.BadParameter(str(e), param_hint="--cell") from None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--dir" if directory is not None else "--cell") from None
    except OSError as e:
        raise click.UsageError(
            f"cannot write the kernels of {cell.spec} into {cache_dir()}: {e.strerror}; "
            "set XDG_CACHE_HOME to a writable folder"
        ) from None
    if found.generated:
        click.echo(f"generated the kernels of {cell.spec} into {found.path} (first use, kept for next time)", err=True)
    return found.module


def _emit(text: str | bytes, output: Path | None) -> None:
    """Write ``text`` (or a drawing's bytes) to ``output`` atomically, or to standard output."""
    if output is None:
        text = text.decode("utf-8") if isinstance(text, bytes) else text
        click.echo(text, nl=not text.endswith("\n"))
    else:
        if str(output) in ("", "."):
            raise click.BadParameter("expected a file name, got an empty one", param_hint="--output")
        try:
            write_atomic(output, text)
        except OSError as e:
            raise click.BadParameter(f"cannot write {output}: {e.strerror}", param_hint="--output") from None
        click.echo(f"wrote {output}", err=True)


@main.command(short_help="write the kernels derived from the cell (NumPy, or array-API with --backend)")
@CELL
@click.option(
    "--out",
    "out_dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to write <cell>.py into [default: the checkout's generated/ folder; ./generated when the package is "
    "installed, whose own modules are left as shipped].",
)
@click.option("--force", is_flag=True, help="Overwrite a file that symbolic-lstm did not generate.")
@click.option(
    "--backend",
    type=click.Choice(list(BACKENDS)),
    default=DEFAULT_BACKEND,
    show_default=True,
    help="; ".join(f"{b.name}: {b.summary}" for b in BACKENDS.values()) + ".",
)
def generate(cell: Cell, out_dir: Path | None, force: bool, backend: str) -> None:
    """Write the forward/backward kernels derived from the cell: NumPy (default) or array-API (--backend).

    The module is imported and run forward and backward on a tiny problem before it is moved into place: a
    module that fails to run is never written (exit 2, naming the stage whose code failed).
    """
    import os

    from .codegen import CodegenError
    from .codegen.pipeline import module_name, render, write_checked
    from .paths import generated_dir, is_checkout
    from .stale import is_generated

    folder = out_dir
    if folder is None and is_checkout() and os.access(generated_dir(), os.W_OK):
        folder = generated_dir()
    elif folder is None:  # an installed package's modules stay as shipped
        folder = Path("generated")
        click.echo(
            f"writing to {folder.resolve()}: the installed package's own modules are left as shipped "
            f"(load this one with load({module_name(cell, backend)!r}, 'generated'); --out DIR chooses the folder)",
            err=True,
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise click.BadParameter(f"cannot create folder {folder}: {e.strerror}", param_hint="--out") from None
    target = folder / f"{module_name(cell, backend)}.py"
    if target.is_dir():
        raise click.BadParameter(f"{target} is a folder; cannot write the module there", param_hint="--out")
    if target.exists() and not force and not is_generated(target):
        raise click.BadParameter(
            f"{target} exists and was not generated by symbolic-lstm; use --force to overwrite it",
            param_hint="--out",
        )
    try:
        text = render(cell, backend)
        write_checked(cell, backend, folder, text)
    except CodegenError as e:
        raise click.BadParameter(str(e), param_hint="--cell") from None
    except OSError as e:
        raise click.BadParameter(f"cannot write {target}: {e.strerror}", param_hint="--out") from None
    click.echo(f"wrote {target} ({len(text.splitlines())} lines, cell {cell.name})")


@main.command(short_help="check the generated kernels against the complex-step derivative of the cell")
@CELL
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the random problems.")
@click.option(
    "--tol",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Largest relative error accepted [default: 1e-7].",
)
@click.option(
    "--saturated",
    is_flag=True,
    help="Weights 20x larger, so about half the gate units saturate; vanishing entries are then compared "
    "with an absolute round-off allowance of 1e-10*max(1,|E|).",
)
@click.option(
    "--dir",
    "directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    default=None,
    help="Folder holding the generated module (default: the package's generated/ folder).",
)
@click.option(
    "--stale",
    is_flag=True,
    help="Instead: report every generated module in the folder made from other sources than the current "
    "cell, code generator and templates (runs the cell files named in user-cell modules); exit 1 if any, "
    "3 if none is stale but a module's cell cannot be found (moved or broken), so it is not known fresh.",
)
def check(cell: Cell, seed: int, tol: float | None, saturated: bool, directory: Path | None, stale: bool) -> None:
    """Check the generated kernels against the complex-step derivative of the cell's stages (float64), and their
    forward pass against the same interpreter; exit 1 if any error > TOL."""
    from .codegen.pipeline import source_hash
    from .gradcheck import DEFAULT_PROBLEMS, NORMAL, SATURATED, check_module, format_table
    from .loader import available
    from .paths import generated_dir

    if stale:
        folder = directory if directory is not None else generated_dir()
        names = available(folder)
        if not names:
            raise click.BadParameter(f"no generated modules in {folder}", param_hint="--dir")
        reports = [freshness(folder / f"{name}.py", run_cell_files=True) for name in names]
        for r in reports:
            click.echo(r.describe())
        if any(r.stale for r in reports):
            click.echo(f"{sum(r.stale for r in reports)} stale module(s)", err=True)
            sys.exit(1)
        if any(r.unknown for r in reports):
            click.echo(
                f"{sum(r.unknown for r in reports)} module(s) whose cell cannot be found: not known fresh", err=True
            )
            sys.exit(3)
        return
    module = _kernels(cell, directory)
    if getattr(module, "SOURCE_HASH", None) != source_hash(cell):
        from .stale import regenerate_command

        folder = directory if directory is not None else generated_dir()
        click.echo(
            f"warning: {folder / (cell.name + '.py')} was generated from another version of the cell, code generator "
            f"or templates; run: {regenerate_command(cell.spec, folder)}",
            err=True,
        )
    regime = SATURATED if saturated else NORMAL
    tol = regime.tol if tol is None else tol
    report = check_module(module, seed=seed, tol=tol, regime=regime, cell=cell)
    click.echo(
        f"cell {cell.name}: {len(DEFAULT_PROBLEMS)} random problems (T, B incl. 1; both loss modes), float64"
        + (", saturated gates (weights x20)" if saturated else "")
    )
    click.echo(format_table(report))
    if not report.ok:
        click.echo(report.verdict(), err=True)
        sys.exit(1)
    click.echo(report.verdict())


@main.command(short_help="draw the computation graph: stages, forks, backward edges with their partials")
@CELL
@click.option(
    "--unroll", "-T", type=click.IntRange(min=1, max=50), default=None, help="Draw T steps (default: one step t)."
)
@click.option("--loss", type=click.Choice(LOSS_MODES), default="many-to-many", show_default=True)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "svg", "png"]),
    default="dot",
    show_default=True,
    help="svg and png need Graphviz's dot program.",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file (atomically) instead of standard output (required for png).",
)
def graph(cell: Cell, unroll: int | None, loss: str, fmt: str, output: Path | None) -> None:
    """Draw the computation graph as the article does: functional stages as nodes, forks marked, backward
    edges (dashed) labelled with the local partials the engine derived."""
    from .emit_dot import GraphvizMissingError, graph_dot, render

    text = graph_dot(cell, unroll, loss)  # type: ignore[arg-type]
    if fmt == "dot":
        _emit(text, output)
        return
    if fmt == "png" and output is None:
        raise click.BadParameter("PNG is binary: give a file with -o FILE.png", param_hint="--output")
    try:
        data = render(text, fmt)
    except GraphvizMissingError as e:
        raise click.UsageError(str(e)) from None
    _emit(data, output)


@main.command(short_help="train a cell on shipped real data (The Tempest, yearly sunspots)")
@CELL
@click.option(
    "--data",
    type=click.Choice(["tempest", "sunspots"]),
    default="tempest",
    show_default=True,
    help="tempest: character model of Shakespeare's The Tempest; sunspots: yearly sunspot forecast.",
)
@click.option(
    "--window",
    type=click.IntRange(min=1, max=1000),
    default=None,
    help="Steps per sequence [tempest: 64 characters; sunspots: 12 years].",
)
@click.option(
    "--hidden", "-n", type=click.IntRange(min=1, max=4096), default=None, help="n_a [tempest: 128; sunspots: 16]."
)
@click.option(
    "--epochs", type=click.IntRange(min=1), default=None, help="[tempest: 60, of 20 batches each; sunspots: 300]"
)
@click.option("--batch", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--optimizer", type=click.Choice(["adam", "sgd"]), default="adam", show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.01, show_default=True)
@click.option(
    "--clip", type=click.FloatRange(min=0, min_open=True), default=5.0, show_default=True, help="Gradient-norm clip."
)
@click.option("--no-clip", is_flag=True, help="Do not clip the gradient.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option(
    "--checkpoint",
    type=click.Path(path_type=Path),
    default=None,
    help="Save parameters, optimiser state and settings here (.npz) at the end (an existing file is overwritten "
    "only if it is a checkpoint, unless --force).",
)
@click.option(
    "--resume",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Continue from a checkpoint up to --epochs; its settings are kept (an option given too must agree).",
)
@click.option(
    "--plot",
    "plot_file",
    type=click.Path(path_type=Path),
    default=None,
    help="Save the loss curve (and the sunspot forecast) as PNG, PDF or SVG by the suffix (needs matplotlib: "
    "pip install '.[plot]').",
)
@click.option(
    "--sample-every", type=click.IntRange(min=1), default=10, show_default=True, help="tempest: epochs between samples."
)
@click.option(
    "--checkpoint-every",
    type=click.IntRange(min=1),
    default=None,
    metavar="E",
    help="Also write the --checkpoint every E epochs (atomically; Ctrl-C writes the last whole epoch's).",
)
@dask_options("Data-parallel training")
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (it is also off when output is not a terminal).")
@click.option("--force", is_flag=True, help="Overwrite a --checkpoint or --plot file that symbolic-lstm did not write.")
@click.pass_context
def train(
    ctx: click.Context,
    cell: Cell,
    data: str,
    window: int | None,
    hidden: int | None,
    epochs: int | None,
    batch: int,
    optimizer: str,
    lr: float,
    clip: float,
    no_clip: bool,
    seed: int,
    checkpoint: Path | None,
    resume: Path | None,
    plot_file: Path | None,
    sample_every: int,
    checkpoint_every: int | None,
    workers: int | None,
    scheduler: str | None,
    quiet: bool,
    force: bool,
) -> None:
    """Train the cell on real data shipped with the package, with W* = W − α ∂Error/∂W (SGD) or Adam.

    \b
    tempest   character-level language model of The Tempest: softmax cross-entropy head on every step,
              samples printed as it learns, held-out loss on the play's last tenth
    sunspots  one-step-ahead forecast of the yearly sunspot numbers 1700–2008 through a linear read-out;
              held-out years compared with the naive forecast "next year = this year"

    With --resume, the checkpoint's settings are kept (cell, data, window, hidden, batch, optimizer, lr, clip,
    seed); one given on the command line must agree with it. The resumed run ends where the uninterrupted run
    would have, bit for bit.

    With --workers N or --scheduler ADDRESS, every batch is split over the Dask workers, each computing its
    shard's gradients with the generated kernels; the sum updates the parameters once per step, as one
    process would (equal to round-off). Ctrl-C (or SIGTERM) writes the --checkpoint of the last whole epoch
    and exits 130.
    """
    from . import train as tr

    explicit = {n for n in ctx.params if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE}
    if checkpoint_every is not None and checkpoint is None:
        raise click.BadParameter("needs --checkpoint FILE to write to", param_hint="--checkpoint-every")
    # every output is checked before any work starts: a run is never lost to a path that cannot be written
    if checkpoint is not None:
        _output_file(checkpoint, "--checkpoint", force, tr.is_checkpoint, "a symbolic-lstm checkpoint")
        continued = resume is not None and checkpoint.exists() and checkpoint.resolve() == Path(resume).resolve()
        if checkpoint.exists() and not force and not continued:
            try:
                saved, (epoch, *_) = tr.load_checkpoint(checkpoint)
                run = f"cell {saved.cell} on {saved.data}, epoch {epoch}"
            except (OSError, ValueError):
                run = "unreadable"
            raise click.BadParameter(
                f"{checkpoint} holds another run's checkpoint ({run}); continue that run with --resume "
                f"{checkpoint}, choose another name, or pass --force to replace it",
                param_hint="--checkpoint",
            )
    if plot_file is not None:
        fmt = plot_file.suffix.lower().lstrip(".")
        if fmt not in tr.PLOT_FORMATS:
            raise click.BadParameter(
                f"{plot_file}: the plot is written as {', '.join(tr.PLOT_FORMATS)} (by the file's suffix), "
                f"got {plot_file.suffix or 'no suffix'!r}",
                param_hint="--plot",
            )
        try:
            import matplotlib  # noqa: F401
        except ImportError:
            raise click.UsageError("--plot needs matplotlib: pip install matplotlib (or the '[plot]' extra)") from None
        _output_file(plot_file, "--plot", force, tr.is_our_plot, "a plot symbolic-lstm wrote")
    start = None
    if resume is not None:
        try:
            saved, start = tr.load_checkpoint(resume)
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--resume") from None
        given = {
            "cell": cell.spec, "data": data, "window": window, "hidden": hidden, "batch": batch,
            "optimizer": optimizer, "lr": lr, "clip": None if no_clip else clip, "seed": seed,
        }  # fmt: skip
        named = {k: v for k, v in given.items() if ({k} | ({"no_clip"} if k == "clip" else set())) & explicit}
        try:
            config = tr.resume_config(saved, start[0], resume, named, epochs, same_cell=cell.name == saved.cell)
        except tr.SettingsConflictError as e:
            raise click.BadParameter(str(e), param_hint=e.option) from None
        if "cell" not in explicit and cell.spec != saved.cell:
            try:
                cell = get_cell(saved.cell)
            except ValueError as e:
                raise click.BadParameter(
                    f"{resume} was trained with cell {saved.cell}: {e}", param_hint="--resume"
                ) from None
    else:
        config = tr.new_config(
            cell.spec, data, window=window, hidden=hidden, epochs=epochs, batch=batch, optimizer=optimizer, lr=lr,
            clip=None if no_clip else clip, seed=seed,
        )  # fmt: skip
    data = config.data
    k = _kernels(cell, None)
    try:
        problem = tr.load_problem(data, config.window, config.holdout)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    n_x = problem.n_inputs
    if cell.square and config.hidden != n_x:
        raise click.BadParameter(
            f"cell {cell.name} reads its input unit by unit beside n_a units, so n_a must equal n_x = {n_x} on "
            f"{data}; pass --hidden {n_x}",
            param_hint="--hidden",
        )
    first = 0 if start is None else start[0]
    what = (
        f"{len(problem.train_ids)} training characters ({problem.vocab} distinct), {len(problem.test_ids)} held out"
        if isinstance(problem, tr.TextProblem)
        else f"{problem.n_train} training windows, {problem.n_test} held out"
    )
    client = _dask_client(workers, scheduler)  # after every check: a bad address fails before any work
    click.echo(
        f"{cell.name} on {data}: n_a = {config.hidden}, window {config.window}, {what}; "
        f"{config.optimizer} lr {config.lr}, clip {config.clip}; epochs {first + 1}–{config.epochs}"
    )
    gradients = None
    if client is not None:
        from .distributed import DataParallel

        click.echo(f"data-parallel on {_where(client, scheduler)}: each batch of {config.batch} split over them")
        parallel = DataParallel(client, k)
        gradients = parallel.select(parallel.load(tr.load_problem, data, config.window, config.holdout))
    losses: list[float] = []
    samples: list[str] = []
    bar_shown = not quiet and sys.stdout.isatty()

    def on_sample(epoch: int, sample: str) -> None:
        samples.append(f"--- sample after epoch {epoch} (loss {losses[-1]:.3f}) ---\n{sample}")
        if not bar_shown:
            click.echo(samples.pop())

    def run(on_epoch: Callable[[int, float], None]) -> tr.History:
        return tr.fit(
            k, config, problem, start, on_epoch=on_epoch, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
            gradients=gradients, on_sample=on_sample, sample_every=sample_every,
        )[0]  # fmt: skip

    _SIGNAL[0] = signal.SIGINT
    previous = signal.signal(signal.SIGTERM, _interrupt)  # a batch system's "stop" saves like Ctrl-C
    try:
        if not bar_shown:
            history = run(lambda _e, loss: losses.append(loss))
        else:
            with click.progressbar(
                length=config.epochs - first,
                label="training",
                item_show_func=lambda _: f"loss {losses[-1]:.4g}" if losses else "",
            ) as bar:

                def on_epoch(epoch: int, loss: float) -> None:
                    losses.append(loss)
                    bar.update(1)
                    while samples:  # print samples between progress updates
                        click.echo("\n" + samples.pop(0))

                history = run(on_epoch)
            for rest in samples:
                click.echo(rest)
    except tr.TrainingInterrupted as stop:
        more = f" --checkpoint-every {checkpoint_every}" if checkpoint_every else ""
        more += f" --workers {workers}" if workers else f" --scheduler {scheduler}" if scheduler else ""
        _interrupted(stop, config.epochs, more)
    finally:
        signal.signal(signal.SIGTERM, previous)
        if client is not None:
            client.close()  # type: ignore[attr-defined]
    if client is not None:
        click.echo(f"{parallel.steps} steps on {parallel.n_workers} Dask workers", err=True)
    if len(history.losses) == 1:  # one epoch (a resume by one): one number, not "x (epoch 4) → x (epoch 4)"
        click.echo(f"training loss: {history.losses[0]:.4g} (epoch {config.epochs})")
    else:
        click.echo(
            f"training loss: {history.losses[0]:.4g} (epoch {first + 1}) → {history.losses[-1]:.4g} "
            f"(epoch {config.epochs})"
        )
    if isinstance(problem, tr.TextProblem):
        nats = history.test_rmse
        click.echo(
            f"held-out loss {nats:.3f} nats/char ({nats / math.log(2):.2f} bits) on the last tenth of the play; "
            f"a uniform guess over {problem.vocab} characters: {history.baseline_rmse:.3f}"
        )
        title = f"{cell.name} on {data} (characters)"
    else:
        click.echo(
            f"held-out RMSE {history.test_rmse:.1f} sunspots vs {history.baseline_rmse:.1f} for "
            f"'next year = this year' ({problem.n_test} years, "
            f"{int(history.test_years[0])}–{int(history.test_years[-1])})"
        )
        title = f"{cell.name} on yearly sunspots"
    failed = []
    if history.checkpoint_error is not None:
        failed.append(history.checkpoint_error)
    elif checkpoint is not None:
        click.echo(f"wrote {checkpoint}", err=True)
    if plot_file is not None:
        try:
            tr.plot(history, plot_file, title)
            click.echo(f"wrote {plot_file}", err=True)
        except OSError as e:
            failed.append(f"cannot write the plot {plot_file}: {e.strerror or e}")
    if failed:  # the run and what could be written are kept; say what was not, one line each
        for line in failed:
            click.echo(f"error: {line}", err=True)
        sys.exit(1)


_SIGNAL = [signal.SIGINT]  # what stopped training: Ctrl-C, unless _interrupt says SIGTERM


def _interrupt(signum: int, frame: object) -> None:
    _SIGNAL[0] = signal.Signals(signum)
    raise KeyboardInterrupt


def _interrupted(stop: BaseException, epochs: int, more: str) -> None:
    """Say where an interrupted run stopped and how to continue it (``more``: options to repeat); exit
    128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), as shells do."""
    from .train import TrainingInterrupted

    assert isinstance(stop, TrainingInterrupted)
    if stop.checkpoint is None:
        click.echo(f"\ninterrupted after epoch {stop.epoch}; nothing saved (no --checkpoint)", err=True)
    elif stop.error is not None:
        click.echo(f"\ninterrupted after epoch {stop.epoch}; error: {stop.error}", err=True)
    else:
        click.echo(
            f"\ninterrupted: wrote {stop.checkpoint} at epoch {stop.epoch}; continue with\n"
            f"  symbolic-lstm train --resume {stop.checkpoint} --epochs {epochs} --checkpoint {stop.checkpoint}{more}",
            err=True,
        )
    sys.exit(128 + _SIGNAL[0])


def _output_file(path: Path, option: str, force: bool, ours: Callable[[Path], bool], what: str) -> None:
    """Fail now, as a usage error, for an output file that cannot be written later or is someone else's."""
    if str(path) in ("", "."):
        raise click.BadParameter("expected a file name, got an empty one", param_hint=option)
    if path.is_dir():
        raise click.BadParameter(f"{path} is a folder; expected a file name", param_hint=option)
    folder = path.parent
    if not folder.is_dir():
        raise click.BadParameter(f"cannot write {path}: the folder {folder} does not exist", param_hint=option)
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"cannot write {path}: the folder {folder} is not writable", param_hint=option)
    if path.exists() and not force and not ours(path):
        raise click.BadParameter(
            f"{path} exists and is not {what}; use --force to overwrite it, or choose another name", param_hint=option
        )
