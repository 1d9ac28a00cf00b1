"""How a training run stops on a signal: the first Ctrl-C or SIGTERM decides the exit status, later ones are
noted and ignored while the run writes its checkpoint and says how to continue."""

from __future__ import annotations

import shlex
import signal
import sys
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from .. import train as tr

#: The signals that stopped the run, the first first: it decides the exit status; later ones are not acted on.
STOP: list[int] = []


def interrupt(signum: int, frame: object) -> None:
    """Ctrl-C or SIGTERM: stop (a KeyboardInterrupt) on the first; a later one, while the run is already
    stopping (writing its checkpoint, saying how to continue), is noted and ignored."""
    STOP.append(signum)
    if len(STOP) == 1:
        raise KeyboardInterrupt


def interrupted(stop: BaseException, config: tr.Config, more: str) -> None:
    """Say where an interrupted run stopped and how to continue it (``more``: options to repeat); exit
    128 + the number of the first signal (130 for Ctrl-C, 143 for SIGTERM), as shells do."""
    from ..train import TrainingInterrupted

    code = 128 + (STOP[0] if STOP else signal.SIGINT)
    if not isinstance(stop, TrainingInterrupted) or stop.finished:  # after the last epoch was saved
        checkpoint, error = getattr(stop, "checkpoint", None), getattr(stop, "error", None)
        kept = f"; {checkpoint} holds the whole run" if checkpoint is not None else ""
        if error is not None:  # the last write failed: say what the file really holds
            kept = f"; error: {error}"
        click.echo(f"\ninterrupted after the last epoch ({config.epochs}), before the report{kept}", err=True)
        sys.exit(code)
    if stop.checkpoint is None:
        click.echo(f"\ninterrupted after epoch {stop.epoch}; nothing saved (no --checkpoint)", err=True)
    elif stop.error is not None:
        click.echo(f"\ninterrupted after epoch {stop.epoch}; error: {stop.error}", err=True)
    else:
        ck = shlex.quote(str(stop.checkpoint))  # a command to paste, whatever the file is called
        click.echo(
            f"\ninterrupted: wrote {stop.checkpoint} at epoch {stop.epoch}; continue with\n"
            f"  symbolic-lstm train --resume {ck} --epochs {config.epochs} --checkpoint {ck}{more}",
            err=True,
        )
    sys.exit(code)
