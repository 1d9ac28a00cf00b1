"""The training loop: epochs of batches, an optimiser step per batch, checkpoints every N epochs, at the end and on
Ctrl-C (the last whole epoch), then the held-out evaluation — one loop for every problem."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from ..runtime.threads import blas_threads
from .checkpoints import Config, Start, check_start, checkpoint_lock, save_checkpoint
from .optimiser import Optimizer, update
from .problems import Gradients, NonFiniteOutputsError, Problem, TextProblem, evaluate, sample, text_loss


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
    checkpoint_epoch: int | None = None  # the epoch the checkpoint file holds (None: this run wrote none)

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
    ``error`` why that write failed, if it did; ``finished``: every epoch had run and been saved — the signal
    came during the held-out evaluation, which was skipped.
    """

    def __init__(
        self, epoch: int, checkpoint: str | Path | None, error: str | None = None, finished: bool = False
    ) -> None:
        super().__init__(epoch, checkpoint, error)
        self.epoch, self.checkpoint, self.error, self.finished = epoch, checkpoint, error, finished


class DivergedError(ValueError):
    """The loss, a gradient or a parameter stopped being finite (NaN or ±inf) in the middle of training.

    ``epoch`` and ``step`` say where (1-based: the step's epoch, its batch); ``what`` what was not finite;
    ``checkpoint`` the file written for the last whole epoch before it (``saved``, None without one), and
    ``error`` why that write failed, if it did.
    """

    def __init__(
        self,
        epoch: int,
        step: int,
        what: str,
        saved: int,
        checkpoint: str | Path | None,
        error: str | None,
        where: str | None = None,
    ):
        where = where or f"epoch {epoch}, step {step}"
        if checkpoint is None:
            kept = "nothing saved (no checkpoint)"
        elif error is not None:
            kept = error
        else:
            kept = f"wrote {checkpoint} at epoch {saved}, the last whole epoch before it"
            if where.startswith("the held-out"):
                kept = f"{checkpoint} holds epoch {saved}, the end of training"
        super().__init__(f"{what} is not finite at {where}; {kept}")
        self.epoch, self.step, self.what, self.saved, self.checkpoint, self.error = (
            epoch, step, what, saved, checkpoint, error,
        )  # fmt: skip


class _NonFiniteError(Exception):
    def __init__(self, step: int, what: str) -> None:
        super().__init__(step, what)
        self.step, self.what = step, what


def _first_non_finite(E: float, g: dict, gh: dict, params: dict, head: dict) -> str | None:
    """What is not finite after a step (the loss, a gradient, an updated parameter), or None."""
    if not np.isfinite(E):
        return f"the loss ({E})"
    grads, values = ("the gradient of", g | gh), ("the parameter", params | head)
    for kind, arrays in (grads, values):
        for name, v in arrays.items():
            if not np.isfinite(v).all():
                return f"{kind} {name}"
    return None


def _install(handlers: dict[int, object]) -> KeyboardInterrupt | None:
    """Set every handler in ``handlers``; return the KeyboardInterrupt a pending signal raised meanwhile (None
    if none did).

    ``signal.signal`` first runs any Python handler that is pending, so a signal arriving between two installs
    can run — and raise from — a handler in the middle: the installs still to make (an install made twice is
    the same install) are made again, so none is left half-way (a SIGTERM handler stuck on one that only
    records, the next signal lost)."""
    raised = None
    todo = list(handlers)
    while todo:
        try:
            while todo:
                signal.signal(todo[0], handlers[todo[0]])  # type: ignore[arg-type]
                todo.pop(0)
        except KeyboardInterrupt as e:  # the pending handler's, not this install's: go on
            raised = raised or e
    return raised


class _Uninterruptible:
    """Ctrl-C and SIGTERM wait while a checkpoint is written (a second Ctrl-C 10 ms after the first one cut the
    write short and left no checkpoint at all); the signal is acted on once the file is whole.  In the main
    thread only (elsewhere signals cannot be handled, and none arrive there)."""

    SIGNALS = ("SIGINT", "SIGTERM")

    def __init__(self) -> None:
        self.caught: list[int] = []
        self.previous: dict[int, object] = {}

    def __enter__(self) -> _Uninterruptible:
        import threading

        if threading.current_thread() is threading.main_thread():
            signals = [getattr(signal, n) for n in self.SIGNALS]
            self.previous = {sig: signal.getsignal(sig) for sig in signals}  # runs no handler: nothing set yet
            raised = _install({sig: lambda signum, _frame: self.caught.append(signum) for sig in signals})
            if raised is not None:  # a signal came as the write began: nothing written yet, act on it now
                _install(self.previous)
                raise raised
        return self

    def __exit__(self, *exc: object) -> None:
        raised = _install(self.previous)  # every handler back, whatever runs meanwhile
        if raised is not None:  # a signal that came as the write ended: acted on, now that all is restored
            raise raised

    def deliver(self) -> None:
        """Act on a signal that arrived during the write, as its handler would have."""
        import signal

        for signum in self.caught[:1]:
            handler = self.previous.get(signum)
            if callable(handler):
                handler(signum, None)
            elif handler == signal.SIG_DFL and signum == signal.SIGINT:
                raise KeyboardInterrupt
            elif handler == signal.SIG_DFL:  # SIGTERM's default: the process ends, now that the file is whole
                signal.raise_signal(signum)


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


def _save(history: History, path: str | Path | None, config: Config, *state: object) -> _Uninterruptible:
    """Write the checkpoint, with Ctrl-C and SIGTERM held until it is whole (the returned object's
    ``deliver()`` acts on one that came meanwhile); a failure (a full disk) is recorded in ``history``, saying
    which epoch the file holds, and the run is kept."""
    with _Uninterruptible() as held:
        if path is None:
            return held
        epoch = state[0]
        try:
            save_checkpoint(path, config, *state)  # type: ignore[arg-type]
            history.checkpoint_error, history.checkpoint_epoch = None, int(epoch)  # type: ignore[call-overload]
        except OSError as e:
            on_disk = (
                f"the file holds epoch {history.checkpoint_epoch}" if history.checkpoint_epoch is not None
                else "no checkpoint of this run is on disk"
            )  # fmt: skip
            why = e.strerror or e
            history.checkpoint_error = f"cannot write the checkpoint {path} at epoch {epoch}: {why}; {on_disk}"
    return held


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
    on_checkpoint_error: Callable[[str], None] | None = None,
) -> None:
    """Run ``epoch(e)`` (which returns its mean loss) for e = first … epochs − 1.

    With a ``checkpoint`` file: written atomically every ``checkpoint_every`` epochs and at the end; on Ctrl-C,
    the last whole epoch is written and :class:`TrainingInterrupted` raised (an epoch cut short is not saved:
    a resumed run must draw the batches the uninterrupted run would have).  A periodic write that fails is
    passed to ``on_checkpoint_error`` at once (the message says which epoch the file holds) and training goes
    on: the next write tries again, and the end says what is on disk.  A step whose loss, gradients or updated
    parameters are not finite stops the run: the last whole epoch is written and :class:`DivergedError`
    raised.
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
                    held = _save(history, checkpoint, config, *done)
                    if history.checkpoint_error is not None and on_checkpoint_error is not None:
                        on_checkpoint_error(history.checkpoint_error)
                    held.deliver()
            if on_epoch is not None:
                on_epoch(e + 1, loss)
    except KeyboardInterrupt:
        last = done[0] if done is not None else first + len(history.losses)
        if done is not None and history.checkpoint_epoch != last:
            _save(history, checkpoint, config, *done)  # a second Ctrl-C meanwhile: the write finishes first
        raise TrainingInterrupted(last, checkpoint, history.checkpoint_error) from None
    except _NonFiniteError as bad:
        last = done[0] if done is not None else first + len(history.losses)
        if done is not None and history.checkpoint_epoch != last:
            _save(history, checkpoint, config, *done)
        raise DivergedError(
            first + len(history.losses) + 1, bad.step, bad.what, last, checkpoint, history.checkpoint_error
        ) from None
    held = _save(history, checkpoint, config, config.epochs, params, head, opt, rng)
    try:
        held.deliver()  # a Ctrl-C during the last write: every epoch is saved, the evaluation is skipped
    except KeyboardInterrupt:
        raise TrainingInterrupted(config.epochs, checkpoint, history.checkpoint_error, finished=True) from None


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
    on_checkpoint_error: Callable[[str], None] | None = None,
    lock: bool = True,
) -> tuple[History, dict, dict]:
    """Train ``config.epochs`` epochs of ``problem`` with the generated module ``k`` (from ``start`` = a
    checkpoint's (epoch, params, head, optimiser state, batch generator state) if given).

    Returns (history, params, head).  ``on_epoch(epoch, loss)`` is called after every epoch; for a text,
    ``on_sample(epoch, text)`` every ``sample_every`` epochs and at the end, and an epoch is
    ``steps_per_epoch`` batches of random chunks (a series' epoch is every window once).  ``gradients``
    computes a batch's sum elsewhere (Dask workers holding ``problem``); by default, here.
    ``on_checkpoint_error(message)`` hears of a periodic checkpoint write that failed, when it fails.  The
    ``checkpoint`` file is locked for the run (:func:`~.checkpoints.checkpoint_lock`) unless ``lock`` is False
    (the caller holds it).

    Raises:
        TrainingInterrupted: Ctrl-C (a KeyboardInterrupt); the last whole epoch is saved first (during the
            held-out evaluation, after the last epoch was saved: ``finished``).
        DivergedError: the loss, a gradient or a parameter became NaN or infinite (a ValueError naming the
            epoch and step); the last whole epoch is saved first.
        CheckpointLockedError: another run is writing ``checkpoint`` (a ValueError naming its process).
    """
    if start is not None:  # a damaged or foreign checkpoint: one ValueError naming what, not a traceback later
        check_start("the checkpoint", k, config, problem.n_inputs, problem.n_inputs, start)
    first, params, head, opt, rng = _begin(k, config, problem.n_inputs, problem.n_inputs, start)
    grads = gradients or (lambda p, h, sel: problem.gradients(k, p, h, sel))
    history = History()

    def epoch(_: int) -> float:
        errors = []
        for step, sel in enumerate(problem.selections(rng, config.batch, steps_per_epoch), start=1):
            # an overflow is found and named below, once, rather than warned about by every ufunc on the way
            with np.errstate(over="ignore", invalid="ignore"):
                try:
                    E, g, gh = grads(params, head, sel)
                except NonFiniteOutputsError as e:  # the outputs overflowed before any loss saw them
                    raise _NonFiniteError(step, e.what) from None
                update(opt, params, head, g, gh)
            bad = _first_non_finite(E, g, gh, params, head)  # checked every step: the next forward never sees one
            if bad is not None:
                raise _NonFiniteError(step, bad)
            errors.append((E, sel))
        return problem.epoch_loss(errors, steps_per_epoch)

    def after(e: int, loss: float) -> None:
        if on_epoch is not None:
            on_epoch(e, loss)
        if on_sample is not None and isinstance(problem, TextProblem) and (e % sample_every == 0 or e == config.epochs):
            try:
                with np.errstate(over="ignore", invalid="ignore"):
                    text = sample(k, problem, params, head, np.random.default_rng(e - 1))
            except NonFiniteOutputsError as bad:
                raise _NonFiniteError(0, f"{bad.what}, sampling text after epoch {e},") from None
            on_sample(e, text)

    gates = len(getattr(k, "WEIGHTS", ())) or 4
    locked = checkpoint_lock(checkpoint) if checkpoint is not None and lock else contextlib.nullcontext()
    with locked, blas_threads(config.batch, problem.n_inputs, config.hidden, gates):  # one thread for small products
        _epochs(
            config, first, (params, head, opt, rng), epoch, history, after, checkpoint, checkpoint_every,
            on_checkpoint_error,
        )  # fmt: skip
    try:
        _held_out(k, problem, params, head, config, history)
    except KeyboardInterrupt:  # every epoch ran and was saved: only the evaluation is lost
        raise TrainingInterrupted(config.epochs, checkpoint, history.checkpoint_error, finished=True) from None
    except NonFiniteOutputsError as e:  # trained weights that overflow on data the run never saw
        saved = history.checkpoint_epoch if checkpoint is not None else config.epochs
        raise DivergedError(
            config.epochs, 0, e.what, saved or config.epochs, checkpoint, history.checkpoint_error,
            where="the held-out evaluation after the last epoch",
        ) from None  # fmt: skip
    return history, params, head


def _held_out(
    k: ModuleType, problem: Problem | TextProblem, params: dict, head: dict, config: Config, history: History
) -> None:
    """The held-out result, into ``history``."""
    with np.errstate(over="ignore", invalid="ignore"):
        if isinstance(problem, TextProblem):
            history.test_rmse = text_loss(k, problem, params, head, problem.test_ids)  # nats per character
            history.baseline_rmse = float(np.log(problem.vocab))  # a uniform guess over the characters
            return
        history.test_rmse, history.baseline_rmse, pred = evaluate(k, problem, params, head)
    history.test_years = problem.target_years[problem.n_train :]
    history.test_truth = problem.series.values[config.window :][problem.n_train :]
    history.test_pred = pred


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
