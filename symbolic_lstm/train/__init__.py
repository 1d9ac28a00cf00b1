"""Training with the generated kernels: the article's update rule W* = W − α ∂Error/∂W on real sequences.

Two tasks ship with the package.  A character-level language model of Shakespeare's *The Tempest*
(``data/tempest.txt``): one-hot characters in, the softmax cross-entropy head (``softmax_ce_loss``) predicts
the next character at every step, samples of generated text are printed as it learns, and the held-out
last tenth of the play gives a validation loss in bits per character.  And one-step-ahead prediction of
the yearly sunspot numbers (``data/sunspots.csv``, 1700–2008): the cell reads the previous ``window`` years,
a linear read-out of a<T> (``linear_mse_loss``, many-to-one) predicts the next year.  The last ``holdout``
of the years is held out, and the held-out error is compared with the naive forecast "next year = this year".

One job a module: :mod:`.data` (the shipped datasets), :mod:`.problems` (batches and their gradients),
:mod:`.optimiser` (SGD, Adam, clipping), :mod:`.checkpoints` (settings and state in ``.npz``),
:mod:`.resume` (a run's settings, new or resumed), :mod:`.loop` (:func:`fit`), :mod:`.plots`.
"""

from __future__ import annotations

from .checkpoints import (
    CheckpointLockedError,
    Config,
    Start,
    check_start,
    checkpoint_lock,
    is_checkpoint,
    load_checkpoint,
    save_checkpoint,
)
from .data import DATASETS, TEXTS, Series, load_series, load_text
from .loop import DivergedError, History, TrainingInterrupted, fit, train, train_text
from .optimiser import Optimizer, update
from .plots import PLOT_FORMATS, PLOT_MARK, figure, is_our_plot, plot
from .problems import Gradient, Gradients, Problem, TextProblem, evaluate, load_problem, sample, text_loss
from .resume import CellMismatchError, SettingsConflictError, new_config, resume_config, trained_cell

__all__ = [
    "DATASETS", "PLOT_FORMATS", "PLOT_MARK", "TEXTS", "CellMismatchError", "CheckpointLockedError", "Config",
    "DivergedError", "Gradient", "Gradients", "History", "Optimizer", "Problem", "Series", "SettingsConflictError",
    "Start", "TextProblem", "TrainingInterrupted", "check_start", "checkpoint_lock", "evaluate", "figure", "fit",
    "is_checkpoint", "is_our_plot", "load_checkpoint", "load_problem", "load_series", "load_text", "new_config",
    "plot", "resume_config", "sample", "save_checkpoint", "text_loss", "train", "train_text", "trained_cell",
    "update",
]  # fmt: skip
