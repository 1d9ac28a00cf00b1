"""The training loop: epochs of batches, an optimiser step per batch, checkpoints every N epochs, at the end and on
Ctrl-C (the last whole epoch), then the held-out evaluation — one loop for every problem."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from ..threads import blas_threads
from .checkpoints import Config, Start, save_checkpoint
from .optimiser import Optimizer, update
from .problems import Gradients, Problem, TextProblem, evaluate, sample, text_loss


@dataclass
class History:
    """What a run produced: per-epoch training loss (mean ½ squared error per window, scaled units)."""

    losses: list[float] = field(default_factory=list)
    test_rmse: float = float("nan")
    baseline_rmse: float = float("nan")
    test_years: np.ndarray | None = None
    test_truth: np.ndarray | None = None
    test_pred: np.ndarray | None = None
    checkpoint_error: str | None = None  # why the checkpoint could not be written (the run itself is kept)

    def _repr_png_(self) -> bytes | None:
        """Jupyter plots the run inline (:func:`~.plots.figure`) where matplotlib is installed."""
        import importlib.util
        import io

        if importlib.util.find_spec("matplotlib") is None or not self.losses:
            return None
        import matplotlib.pyplot as plt

        from .plots import figure

        fig = figure(self, f"{len(self.losses)} epochs")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)  # type: ignore[attr-defined]
        plt.close(fig)
        return buf.getvalue()


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM from the command line) stopped training; a KeyboardInterrupt, with where it stopped.

    ``epoch`` is the last whole epoch; ``checkpoint`` the file written for it (None without ``--checkpoint``),
    ``error`` why that write failed, if it did.
    """

    def __init__(self, epoch: int, checkpoint: str | Path | None, error: str | None = None) -> None:
        super().__init__(epoch, checkpoint, error)
        self.epoch, self.checkpoint, self.error = epoch, checkpoint, error


def _begin(
    k: ModuleType, config: Config, n_x: int, n_y: int, start: Start | None
) -> tuple[int, dict, dict, Optimizer, np.random.Generator]:
    """(first epoch, params, head, optimiser, batch rng): fresh, or from a checkpoint's ``start`` — with the
    batch generator where the checkpointed run left it, so the resumed run draws the batches it would have."""
    opt = Optimizer(config.optimizer, config.lr, config.clip)
    if start is None:
        params = k.init_params(n_x, config.hidden, seed=config.seed)
        head = k.init_head(config.hidden, n_y, seed=config.seed + 1)
        return 0, params, head, opt, np.random.default_rng(config.seed)
    first, params, head, state, rng_state = start
    opt.load_state(state)
    rng = np.random.default_rng(config.seed)
    if rng_state is not None:
        rng.bit_generator.state = rng_state
    else:  # a checkpoint from before the generator was stored: reproducible, not the uninterrupted batches
        rng = np.random.default_rng([config.seed, first])
    return first, params, head, opt, rng


def _save(history: History, path: str | Path | None, config: Config, *state: object) -> None:
    """Write the checkpoint; a failure (a full disk) is recorded in ``history``, and the run is kept."""
    if path is None:
        return
    try:
        save_checkpoint(path, config, *state)  # type: ignore[arg-type]
        history.checkpoint_error = None
    except OSError as e:
        history.checkpoint_error = f"cannot write the checkpoint {path}: {e.strerror or e}"


def _snapshot(epoch: int, params: dict, head: dict, opt: Optimizer, rng: np.random.Generator) -> tuple:
    """Copies of everything a checkpoint holds, as they are after ``epoch`` whole epochs."""
    copy = Optimizer(opt.kind, opt.lr, opt.clip)
    copy.load_state(opt.state())  # load_state copies the moments
    return (
        epoch,
        {n: v.copy() for n, v in params.items()},
        {n: v.copy() for n, v in head.items()},
        copy,
        _copy_rng(rng),
    )


def _copy_rng(rng: np.random.Generator) -> np.random.Generator:
    """An independent generator in ``rng``'s state."""
    bits = type(rng.bit_generator)()
    bits.state = rng.bit_generator.state
    return np.random.Generator(bits)


def _epochs(
    config: Config,
    first: int,
    state: tuple[dict, dict, Optimizer, np.random.Generator],
    epoch: Callable[[int], float],
    history: History,
    on_epoch: Callable[[int, float], None] | None,
    checkpoint: str | Path | None,
    checkpoint_every: int | None,
) -> None:
    """Run ``epoch(e)`` (which returns its mean loss) for e = first … epochs − 1.

    With a ``checkpoint`` file: written atomically every ``checkpoint_every`` epochs and at the end; on Ctrl-C,
    the last whole epoch is written and :class:`TrainingInterrupted` raised (an epoch cut short is not saved:
    a resumed run must draw the batches the uninterrupted run would have).
    """
    if checkpoint_every is not None and checkpoint_every < 1:
        raise ValueError(f"checkpoint_every must be at least 1 epoch, got {checkpoint_every}")
    params, head, opt, rng = state
    done = _snapshot(first, params, head, opt, rng) if checkpoint is not None else None
    try:
        for e in range(first, config.epochs):
            loss = epoch(e)
            history.losses.append(loss)
            if checkpoint is not None:
                done = _snapshot(e + 1, params, head, opt, rng)
                if checkpoint_every is not None and (e + 1) % checkpoint_every == 0 and e + 1 < config.epochs:
                    _save(history, checkpoint, config, *done)
            if on_epoch is not None:
                on_epoch(e + 1, loss)
    except KeyboardInterrupt:
        last = done[0] if done is not None else first + len(history.losses)
        if done is not None:
            _save(history, checkpoint, config, *done)
        raise TrainingInterrupted(last, checkpoint, history.checkpoint_error) from None
    _save(history, checkpoint, config, config.epochs, params, head, opt, rng)


def fit(
    k: ModuleType,
    config: Config,
    problem: Problem | TextProblem,
    start: Start | None = None,
    *,
    on_epoch: Callable[[int, float], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    gradients: Gradients | None = None,
    on_sample: Callable[[int, str], None] | None = None,
    sample_every: int = 10,
    steps_per_epoch: int = 20,
) -> tuple[History, dict, dict]:
    """Train ``config.epochs`` epochs of ``problem`` with the generated module ``k`` (from ``start`` = a
    checkpoint's (epoch, params, head, optimiser state, batch generator state) if given).

    Returns (history, params, head).  ``on_epoch(epoch, loss)`` is called after every epoch; for a text,
    ``on_sample(epoch, text)`` every ``sample_every`` epochs and at the end, and an epoch is
    ``steps_per_epoch`` batches of random chunks (a series' epoch is every window once).  ``gradients``
    computes a batch's sum elsewhere (Dask workers holding ``problem``); by default, here.
    """
    first, params, head, opt, rng = _begin(k, config, problem.n_inputs, problem.n_inputs, start)
    grads = gradients or (lambda p, h, sel: problem.gradients(k, p, h, sel))
    history = History()

    def epoch(_: int) -> float:
        errors = []
        for sel in problem.selections(rng, config.batch, steps_per_epoch):
            E, g, gh = grads(params, head, sel)
            update(opt, params, head, g, gh)
            errors.append((E, sel))
        return problem.epoch_loss(errors, steps_per_epoch)

    def after(e: int, loss: float) -> None:
        if on_epoch is not None:
            on_epoch(e, loss)
        if on_sample is not None and isinstance(problem, TextProblem) and (e % sample_every == 0 or e == config.epochs):
            on_sample(e, sample(k, problem, params, head, np.random.default_rng(e - 1)))

    gates = len(getattr(k, "WEIGHTS", ())) or 4
    with blas_threads(config.batch, problem.n_inputs, config.hidden, gates):  # one thread for small products
        _epochs(config, first, (params, head, opt, rng), epoch, history, after, checkpoint, checkpoint_every)
    if isinstance(problem, TextProblem):
        history.test_rmse = text_loss(k, problem, params, head, problem.test_ids)  # nats per character
        history.baseline_rmse = float(np.log(problem.vocab))  # a uniform guess over the characters
    else:
        history.test_rmse, history.baseline_rmse, pred = evaluate(k, problem, params, head)
        history.test_years = problem.target_years[problem.n_train :]
        history.test_truth = problem.series.values[config.window :][problem.n_train :]
        history.test_pred = pred
    return history, params, head


def train(
    k: ModuleType,
    config: Config,
    problem: Problem,
    start: Start | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    checkpoint: str | Path | None = None,
    checkpoint_every: int | None = None,
    gradients: Gradients | None = None,
) -> tuple[History, dict, dict]:
    """:func:`fit` for a series (the positional order of earlier versions)."""
    return fit(
        k, config, problem, start, on_epoch=on_epoch, checkpoint=checkpoint,
        checkpoint_every=checkpoint_every, gradients=gradients,
    )  # fmt: skip


def train_text(
    k: ModuleType,
    config: Config,
    problem: TextProblem,
    start: Start | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
    checkpoint: str | Path | None = None,
    on_sample: Callable[[int, str], None] | None = None,
    sample_every: int = 10,
    steps_per_epoch: int = 20,
    checkpoint_every: int | None = None,
    gradients: Gradients | None = None,
) -> tuple[History, dict, dict]:
    """:func:`fit` for a text (the positional order of earlier versions)."""
    return fit(
        k, config, problem, start, on_epoch=on_epoch, checkpoint=checkpoint, checkpoint_every=checkpoint_every,
        gradients=gradients, on_sample=on_sample, sample_every=sample_every, steps_per_epoch=steps_per_epoch,
    )  # fmt: skip
