"""A run's settings: a new run's from the options given (with each dataset's defaults), or a resumed run's from
its checkpoint — where an option given again must agree with what the checkpoint was trained with."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from .checkpoints import Config
from .data import TEXTS

if TYPE_CHECKING:
    from ..engine.cell import Cell

#: (window, hidden, epochs, holdout) a new run takes unless told: a text, a series.
TEXT_DEFAULTS = (64, 128, 60, 0.1)
SERIES_DEFAULTS = (12, 16, 300, 0.2)
#: The settings a resumed run keeps from its checkpoint (an option given again must agree).
KEPT = ("cell", "data", "window", "hidden", "batch", "optimizer", "lr", "clip", "seed")


class SettingsConflictError(ValueError):
    """A setting given for a resumed run disagrees with its checkpoint; ``option`` is the command-line flag."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


def new_config(
    cell: str,
    data: str,
    *,
    window: int | None = None,
    hidden: int | None = None,
    epochs: int | None = None,
    batch: int = 32,
    optimizer: str = "adam",
    lr: float = 0.01,
    clip: float | None = 5.0,
    seed: int = 0,
    cell_digest: str | None = None,
) -> Config:
    """The settings of a new run on ``data``; ``None`` takes the dataset's default (:data:`TEXT_DEFAULTS`,
    :data:`SERIES_DEFAULTS`).  ``cell_digest``: the cell's :attr:`~symbolic_lstm.Cell.digest`, which a resumed
    run checks its cell against."""
    window_d, hidden_d, epochs_d, holdout = TEXT_DEFAULTS if data in TEXTS else SERIES_DEFAULTS
    return Config(
        cell, data, window or window_d, hidden or hidden_d, epochs or epochs_d, batch, optimizer, lr, clip,
        holdout, seed, cell_digest,
    )  # fmt: skip


def resume_config(
    saved: Config,
    at: int,
    path: str | Path,
    given: dict[str, object],
    epochs: int | None,
    same_cell: bool = False,
) -> Config:
    """The settings of the run a checkpoint holds (``saved``, at epoch ``at``), continued to ``epochs``.

    ``given`` holds the settings named on the command line (keys of :data:`KEPT`; ``clip`` None for
    --no-clip); each must equal the checkpoint's — ``same_cell`` says the cell given is the checkpoint's
    under another spelling (its name, where the checkpoint holds a path).

    Raises:
        SettingsConflictError: a given setting differs from the checkpoint's, or ``epochs`` is not past ``at``.
    """
    for name, value in given.items():
        stored = getattr(saved, name)
        if value != stored and not (name == "cell" and same_cell):
            flag = "--no-clip" if name == "clip" and value is None else f"--{name.replace('_', '-')} {value}"
            raise SettingsConflictError(
                f"{flag} conflicts with {path}, which was trained with {name} = {stored!r}; leave it out to "
                "keep the checkpoint's, or start a new run without --resume",
                f"--{name.replace('_', '-')}",
            )
    if epochs is None or at >= epochs:
        raise SettingsConflictError(
            f"{path} is at epoch {at}; give the epoch to continue to with --epochs (more than {at})", "--epochs"
        )
    return Config(**{**asdict(saved), "epochs": epochs})


class CellMismatchError(ValueError):
    """The cell to resume a checkpoint with was not given (a cell from a file) or is not the one it trained;
    ``option`` is how the caller names the cell (the command line's ``--cell``)."""

    def __init__(self, message: str, option: str) -> None:
        super().__init__(message)
        self.option = option


#: How a cell and the consent to change it are given: on the command line (the cell quoted for a shell: a
#: checkpoint's cell string is text from a file, never echoed back as a command to paste), and from Python.
COMMAND_LINE = ("--cell {}", "--cell-changed")
PYTHON = ("cell={!r}", "cell_changed=True")


def _give(how: str, spec: str) -> str:
    """``spec`` as ``how`` gives a cell: shell-quoted for the command line, ``repr`` for Python."""
    import shlex

    return how.format(spec if "!r" in how else shlex.quote(spec))


def trained_cell(
    saved: Config, path: str | Path, cell: Cell | None, cell_changed: bool = False, how: tuple[str, str] = PYTHON
) -> tuple[Cell, bool]:
    """The cell a checkpoint's run continues with, and whether it is the one trained.

    A checkpoint never runs code by itself: with ``cell`` None a built-in is rebuilt by its name, and a cell from
    a file must be given (where the file is now: a moved file with the same definition is the same cell). A cell
    whose digest differs from the one trained is refused unless ``cell_changed``; a checkpoint from before
    digests were kept compares names.  ``how``: the wording of the cell and of the consent in messages.

    Raises:
        CellMismatchError: no cell given for a cell from a file, or a changed cell without ``cell_changed``.
    """
    from ..engine.cells import BUILTIN, get_cell

    give, consent = how
    if cell is None:
        if saved.cell not in BUILTIN:
            raise CellMismatchError(
                f"{path} was trained with the cell {saved.cell!r}, from a file; a checkpoint does not run code by "
                f"itself: pass {_give(give, saved.cell)} (or where that file is now) to resume it",
                give.format("").strip(" ='"),
            )
        cell = get_cell(saved.cell)
    same = cell.digest == saved.cell_digest if saved.cell_digest is not None else cell.name == saved.cell
    if not same and saved.cell_digest is not None and not cell_changed:
        raise CellMismatchError(
            f"{_give(give, cell.spec)} conflicts with {path}, which was trained with cell = {saved.cell!r}: its "
            f"definition differs (digest {cell.digest}, trained {saved.cell_digest}); leave it out to keep a "
            f"built-in checkpoint's cell, pass the cell as it was, or {consent} to resume with this one anyway "
            "(its parameters must still fit)",
            give.format("").strip(" ='"),
        )
    return cell, same
