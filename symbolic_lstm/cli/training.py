"""``train``: a cell on the shipped data, resumable, interrupt-safe, data-parallel over Dask."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import shlex
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import click

from ..codegen.backends import Backend
from ..engine.cell import Cell
from .before_a_run import check_memory, check_outputs
from .common import (
    CELL,
    Dask,
    FilePath,
    PositiveNumber,
    backend_option,
    dask_options,
    gathered,
    kernels_of,
    main,
    seed_option,
)
from .stopping import STOP, interrupt, interrupted

if TYPE_CHECKING:
    from .. import train as tr


@dataclasses.dataclass(frozen=True)
class Given:
    """The run's settings as the command line gives them (None: the data's default, or the checkpoint's)."""

    data: str
    window: int | None
    hidden: int | None
    epochs: int | None
    batch: int
    optimizer: str
    lr: float
    clip: float
    no_clip: bool
    seed: int

    def settings(self, cell: Cell) -> dict[str, object]:
        """What a checkpoint records of them (all but the epochs, which a resumed run may extend)."""
        return {
            "cell": cell.spec, "data": self.data, "window": self.window, "hidden": self.hidden, "batch": self.batch,
            "optimizer": self.optimizer, "lr": self.lr, "clip": None if self.no_clip else self.clip, "seed": self.seed,
        }  # fmt: skip


@dataclasses.dataclass(frozen=True)
class Outputs:
    """What the run writes and shows: the checkpoint (and how often), the plot, samples, the progress bar, and
    whether a file that is not ours may be replaced."""

    checkpoint: Path | None
    checkpoint_every: int | None
    plot_file: Path | None
    sample_every: int
    quiet: bool
    force: bool


@dataclasses.dataclass(frozen=True)
class Resuming:
    """Where the run continues from (a checkpoint), and whether the cell may differ from the one it trained."""

    resume: Path | None
    cell_changed: bool


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
@click.option("--lr", type=PositiveNumber(), default=0.01, show_default=True)
@click.option(
    "--clip", type=PositiveNumber(), default=5.0, show_default=True, help="Gradient-norm clip (--no-clip: none)."
)
@click.option("--no-clip", is_flag=True, help="Do not clip the gradient.")
@seed_option()
@click.option(
    "--checkpoint",
    type=FilePath(path_type=Path),
    default=None,
    help="Save parameters, optimiser state and settings here (.npz) at the end (an existing file is overwritten "
    "only if it is a checkpoint, unless --force).",
)
@click.option(
    "--resume",
    type=FilePath(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Continue from a checkpoint up to --epochs; its settings are kept (an option given too must agree).",
)
@click.option(
    "--cell-changed",
    is_flag=True,
    help="With --resume: continue with a --cell whose definition differs from the one the checkpoint trained "
    "(its parameters must still fit).",
)
@click.option(
    "--plot",
    "plot_file",
    type=FilePath(path_type=Path),
    default=None,
    help="Save the loss curve (and the sunspot forecast) as PNG, PDF or SVG by the suffix (needs matplotlib: "
    "pip install -e '.[plot]').",
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
@backend_option(
    "Which generated module trains: numpy (NumPy only) or jax (lax.scan loops compiled by XLA: ahead where "
    "the per-step work is small, such as batch 1; needs jax). The same gradients either way.",
    offered=lambda b: b.trains,
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bar (it is also off when output is not a terminal).")
@click.option("--force", is_flag=True, help="Overwrite a --checkpoint or --plot file that symbolic-lstm did not write.")
@click.pass_context
@gathered(Given, "given")
@gathered(Outputs, "outputs")
@gathered(Resuming, "resuming")
def train(
    ctx: click.Context, cell: Cell, given: Given, outputs: Outputs, resuming: Resuming, dask: Dask, backend: Backend
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
    shard's gradients with the generated kernels (the --backend's: jax needs jax on every worker, checked
    first); the sum updates the parameters once per step, as one process would (equal to round-off).
    Ctrl-C (or SIGTERM) writes the --checkpoint of the last whole epoch and exits 130 (143 for SIGTERM: the
    first signal decides, later ones are ignored while the run stops). After the last epoch is saved, a
    signal skips the held-out evaluation and the report: the checkpoint already holds the whole run.
    """
    from .. import train as tr
    from ..train.heap import keep_for_run

    if len(cell.inputs) > 1:  # before any work: the datasets give one sequence per step
        raise click.BadParameter(
            f"cell {cell.name} reads {len(cell.inputs)} per-step inputs ({', '.join(cell.inputs)}); train feeds one "
            "(the dataset's sequence): train a cell with one input, or call its module's forward(x, p, …, "
            f"{', '.join(f'{i}=…' for i in cell.inputs[1:])}) yourself",
            param_hint="--cell",
        )
    keep_for_run()  # this process's arrays are allocated afresh every batch: no page faults for them again
    checkpoint, checkpoint_every, plot_file = outputs.checkpoint, outputs.checkpoint_every, outputs.plot_file
    resume = resuming.resume
    explicit = {n for n in ctx.params if ctx.get_parameter_source(n) == click.core.ParameterSource.COMMANDLINE}
    check_outputs(checkpoint, checkpoint_every, resume, plot_file, outputs.force)  # before any work: nothing is lost
    held = ctx.with_resource(contextlib.ExitStack())  # released when the command ends, however it ends
    if checkpoint is not None:
        try:
            removed = held.enter_context(tr.checkpoint_lock(checkpoint))
        except tr.CheckpointLockedError as e:
            raise click.BadParameter(str(e), param_hint="--checkpoint") from None
        if removed:
            click.echo(f"removed {len(removed)} temporary file(s) a killed run left beside {checkpoint}", err=True)
    cell, config, start = _settings(cell, given.settings(cell), given.epochs, resume, explicit, resuming.cell_changed)
    k = kernels_of(cell, None, backend)
    problem = _problem(cell, config, resume)
    if resume is not None and start is not None:
        _check_start(resume, k, config, problem, start)
    check_memory(k, config, problem)
    first = 0 if start is None else start[0]
    client = dask.client()  # after every check: a bad address fails before any work
    gradients, parallel = None, None
    if client is not None:
        from ..distributed import DataParallel

        try:
            parallel = DataParallel(client, k)
        except ValueError as e:  # the workers cannot import what the backend's module imports
            client.close()  # type: ignore[attr-defined]
            raise click.BadParameter(str(e), param_hint="--backend") from None
    click.echo(
        f"{cell.name} on {config.data}: n_a = {config.hidden}, window {config.window}, {_size(problem)}; "
        f"{config.optimizer} lr {config.lr}, clip {config.clip}; epochs {first + 1}–{config.epochs}"
    )
    if parallel is not None:
        click.echo(f"data-parallel on {dask.where(client)}: each batch of {config.batch} split over them")
        gradients = parallel.select(parallel.load(tr.load_problem, config.data, config.window, config.holdout))

    def run(on_epoch: Callable[[int, float], None], on_sample: Callable[[int, str], None]) -> tr.History:
        return tr.fit(
            k, config, problem, start, on_epoch=on_epoch, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
            gradients=gradients, on_sample=on_sample, sample_every=outputs.sample_every,
            on_checkpoint_error=lambda message: click.echo(f"\nwarning: {message}; training goes on", err=True),
            lock=False,  # held above, from before any work
        )[0]  # fmt: skip

    more = f" --checkpoint-every {checkpoint_every}" if checkpoint_every else ""
    more += f" --workers {dask.workers}" if dask.workers else ""
    more += f" --scheduler {shlex.quote(dask.scheduler)}" if dask.scheduler and not dask.workers else ""
    STOP.clear()
    previous = {sig: signal.signal(sig, interrupt) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:  # from here to the exit, Ctrl-C and SIGTERM stop the run the same way: the first one decides
        try:
            history = _with_progress(run, config.epochs - first, shown=not outputs.quiet and sys.stdout.isatty())
        except tr.DivergedError as e:
            hint = "a smaller --lr" + ("" if config.clip is not None else " or a --clip")
            click.echo(f"\nerror: training diverged: {e}; try {hint}", err=True)
            sys.exit(1)
        finally:
            if client is not None:
                client.close()  # type: ignore[attr-defined]
        if parallel is not None:
            click.echo(f"{parallel.steps} steps on {parallel.n_workers} Dask workers", err=True)
        title = _report(history, problem, cell, config, first)
        _write_results(history, checkpoint, plot_file, title)
    except KeyboardInterrupt as stop:  # TrainingInterrupted from training; a plain one while reporting
        interrupted(stop, config, more)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _settings(
    cell: Cell,
    given: dict[str, object],
    epochs: int | None,
    resume: Path | None,
    explicit: set[str],
    cell_changed: bool = False,
) -> tuple[Cell, tr.Config, tr.Start | None]:
    """(cell, settings, where to start): a new run's from ``given``, or the checkpoint's (``--resume``), where a
    setting named on the command line must agree (``explicit``: the options named there).

    A checkpoint never runs code by itself: a built-in cell is rebuilt by name, a cell from a file must be passed
    with --cell (the file's path now, which may have moved), and a cell whose definition differs from the one
    trained (its digest) is refused unless ``cell_changed``."""
    from .. import train as tr

    if resume is None:
        return cell, tr.new_config(**given, epochs=epochs, cell_digest=cell.digest), None  # type: ignore[arg-type]
    try:
        saved, start = tr.load_checkpoint(resume)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--resume") from None
    try:
        cell, same = tr.trained_cell(
            saved, resume, cell if "cell" in explicit else None, cell_changed, how=tr.resume.COMMAND_LINE
        )
    except tr.CellMismatchError as e:
        raise click.BadParameter(str(e), param_hint="--cell" if "cell" in explicit else "--resume") from None
    named = {k: v for k, v in given.items() if ({k} | ({"no_clip"} if k == "clip" else set())) & explicit}
    try:
        config = tr.resume_config(saved, start[0], resume, named, epochs, same_cell=same or cell_changed)
    except tr.SettingsConflictError as e:
        raise click.BadParameter(str(e), param_hint=e.option) from None
    # the cell as it is now: a moved file's new path, an edited cell's digest, for the next checkpoint
    config = dataclasses.replace(config, cell=cell.spec, cell_digest=cell.digest)
    return cell, config, start


def _check_start(
    resume: Path, k: ModuleType, config: tr.Config, problem: tr.Problem | tr.TextProblem, start: tr.Start
) -> None:
    """A usage error naming what in the checkpoint does not fit the cell's module and the data."""
    from .. import train as tr

    try:
        tr.check_start(resume, k, config, problem.n_inputs, problem.n_inputs, start)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--resume") from None


def _problem(cell: Cell, config: tr.Config, resume: Path | None = None) -> tr.Problem | tr.TextProblem:
    """The run's dataset as a problem; a usage error for a window it cannot take (naming the checkpoint whose
    settings they are, on --resume), or a square cell's --hidden."""
    from .. import train as tr

    try:
        problem = tr.load_problem(config.data, config.window, config.holdout)
    except ValueError as e:
        if resume is not None:
            raise click.BadParameter(f"{resume}: its settings cannot run: {e}", param_hint="--resume") from None
        raise click.BadParameter(str(e), param_hint="--window") from None
    n_x = problem.n_inputs
    if cell.square and config.hidden != n_x:
        raise click.BadParameter(
            f"cell {cell.name} reads its input unit by unit beside n_a units, so n_a must equal n_x = {n_x} on "
            f"{config.data}; pass --hidden {n_x}",
            param_hint="--hidden",
        )
    return problem


def _size(problem: tr.Problem | tr.TextProblem) -> str:
    from .. import train as tr

    if isinstance(problem, tr.TextProblem):
        train, test = len(problem.train_ids), len(problem.test_ids)
        return f"{train} training characters ({problem.vocab} distinct), {test} held out"
    return f"{problem.n_train} training windows, {problem.n_test} held out"


def _with_progress(run: Callable[..., tr.History], epochs: int, shown: bool) -> tr.History:
    """``run(on_epoch, on_sample)`` with a progress bar on a terminal (samples printed between its updates), or
    samples as they come when ``shown`` is False."""
    losses: list[float] = []
    samples: list[str] = []

    def on_sample(epoch: int, sample: str) -> None:
        samples.append(f"--- sample after epoch {epoch} (loss {losses[-1]:.3f}) ---\n{sample}")
        if not shown:
            click.echo(samples.pop())

    if not shown:
        return run(lambda _e, loss: losses.append(loss), on_sample)
    with click.progressbar(
        length=epochs, label="training", item_show_func=lambda _: f"loss {losses[-1]:.4g}" if losses else ""
    ) as bar:

        def on_epoch(epoch: int, loss: float) -> None:
            losses.append(loss)
            bar.update(1)
            while samples:  # print samples between progress updates
                click.echo("\n" + samples.pop(0))

        history = run(on_epoch, on_sample)
    for rest in samples:
        click.echo(rest)
    return history


def _report(
    history: tr.History, problem: tr.Problem | tr.TextProblem, cell: Cell, config: tr.Config, first: int
) -> str:
    """Print the run's losses and held-out result; return the plot's title."""
    from .. import train as tr

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
        return f"{cell.name} on {config.data} (characters)"
    click.echo(
        f"held-out RMSE {history.test_rmse:.1f} sunspots vs {history.baseline_rmse:.1f} for "
        f"'next year = this year' ({problem.n_test} years, "
        f"{int(history.test_years[0])}–{int(history.test_years[-1])})"
    )
    return f"{cell.name} on yearly sunspots"


def _write_results(history: tr.History, checkpoint: Path | None, plot_file: Path | None, title: str) -> None:
    """Say what was written; a failure to write costs one line each and exit 1, never the run."""
    from .. import train as tr

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
    if failed:
        for line in failed:
            click.echo(f"error: {line}", err=True)
        sys.exit(1)
