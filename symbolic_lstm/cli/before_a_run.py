"""What ``train`` checks before any work, so a run is never lost to a path or to memory it cannot have: outputs
that could not be written or would replace what is not this run's, and a run larger than the free memory."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

import click

from .common import output_file, same_file

if TYPE_CHECKING:
    from .. import train as tr


def check_outputs(
    checkpoint: Path | None, checkpoint_every: int | None, resume: Path | None, plot_file: Path | None, force: bool
) -> None:
    """Usage errors for outputs that could not be written, or would replace what is not this run's: every output
    is checked before any work starts, so a run is never lost to a path."""
    from .. import train as tr

    if checkpoint_every is not None and checkpoint is None:
        raise click.BadParameter("needs --checkpoint FILE to write to", param_hint="--checkpoint-every")
    if plot_file is not None:  # one file written twice: the checkpoint (or the run resumed) would be lost
        for other, option in ((checkpoint, "--checkpoint"), (resume, "--resume")):
            if other is not None and same_file(plot_file, other):
                raise click.BadParameter(
                    f"{plot_file} is the file {option} names ({other}); the plot would replace it — choose "
                    "another name for one of them",
                    param_hint="--plot",
                )
    if checkpoint is not None:
        output_file(checkpoint, "--checkpoint", force, tr.is_checkpoint, "a symbolic-lstm checkpoint")
        continued = resume is not None and checkpoint.exists() and same_file(checkpoint, resume)
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
        output_file(plot_file, "--plot", force, tr.is_our_plot, "a plot symbolic-lstm wrote")


def check_memory(k: ModuleType, config: tr.Config, problem: tr.Problem | tr.TextProblem) -> None:
    """A usage error, before anything is allocated, for a run that asks more memory at once than the machine
    has free (it would die with a MemoryError, or be killed, minutes in)."""
    from ..train.memory import available_bytes, gib, run_bytes

    need, what = run_bytes(k, config.hidden, config.window, config.batch, problem)
    free = available_bytes()
    if free is not None and need > free:
        raise click.BadParameter(
            f"this run needs about {gib(need)} at once for {what} with n_a = {config.hidden}, more than the "
            f"{gib(free)} this machine has free; choose a smaller --hidden, --window or --batch",
            param_hint="--hidden / --window / --batch",
        )
