"""Training with the generated kernels: the article's update rule W* = W − α ∂Error/∂W on real sequences.

Two tasks ship with the package.  A character-level language model of Shakespeare's *The Tempest*
(``data/tempest.txt``): one-hot characters in, the softmax cross-entropy head (``softmax_ce_loss``) predicts
the next character at every step, samples of generated text are printed as it learns, and the held-out
last tenth of the play gives a validation loss in bits per character.  And one-step-ahead prediction of
the yearly sunspot numbers
(``data/sunspots.csv``, 1700–2008): the cell reads the previous ``window`` years, a linear read-out of
a<T> (``linear_mse_loss``, many-to-one) predicts the next year.  The last ``holdout`` of the years is held
out, and the held-out error is compared with the naive forecast "next year = this year".

Optimisers: plain SGD (the article's rule) and Adam, either with optional clipping of the gradient's global
norm.  Checkpoints are ``.npz`` files holding every parameter, the optimiser's state, the epoch, the settings
and the state of the random generator that draws the batches, so a resumed run is the uninterrupted run, bit
for bit.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import ModuleType

import numpy as np

from .paths import data_dir

DATASETS = ("sunspots", "tempest")
TEXTS = ("tempest",)


@dataclass(frozen=True)
class Series:
    """A yearly series: ``years`` (N,) and ``values`` (N,)."""

    name: str
    years: np.ndarray
    values: np.ndarray


def load_text(name: str = "tempest") -> str:
    """Read a shipped text (ValueError for an unknown name or a damaged file)."""
    if name not in TEXTS:
        raise ValueError(f"unknown text {name!r}; shipped: {', '.join(TEXTS)}")
    path = data_dir() / f"{name}.txt"
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None


def load_series(name: str = "sunspots") -> Series:
    """Read a shipped series (ValueError for an unknown name or a damaged file)."""
    if name not in DATASETS or name in TEXTS:
        raise ValueError(f"unknown dataset {name!r}; shipped: {', '.join(DATASETS)}")
    path = data_dir() / f"{name}.csv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        years = np.array([int(float(r["YEAR"])) for r in rows])
        values = np.array([float(r["SUNACTIVITY"]) for r in rows])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    return Series(name, years, values)


@dataclass
class Config:
    """Settings of a run (stored in checkpoints)."""

    cell: str = "lstm"
    data: str = "sunspots"
    window: int = 12
    hidden: int = 16
    epochs: int = 300
    batch: int = 32
    optimizer: str = "adam"
    lr: float = 0.01
    clip: float | None = 5.0
    holdout: float = 0.2
    seed: int = 0


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
        """Jupyter plots the run inline (:func:`figure`) where matplotlib is installed."""
        import importlib.util
        import io

        if importlib.util.find_spec("matplotlib") is None or not self.losses:
            return None
        import matplotlib.pyplot as plt

        fig = figure(self, f"{len(self.losses)} epochs")
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=80)  # type: ignore[attr-defined]
        plt.close(fig)
        return buf.getvalue()


class Problem:
    """Windows of the scaled series: x (window, N, 1) time-major, y (N, 1); a chronological split."""

    def __init__(self, series: Series, window: int, holdout: float) -> None:
        if window < 1:
            raise ValueError(f"window must be at least 1, got {window}")
        if not 0 < holdout < 1:
            raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
        v = series.values
        n = len(v) - window
        if n < 4:
            raise ValueError(f"window {window} leaves {n} examples of {len(v)} values; use a shorter window")
        self.series = series
        self.n_test = max(1, round(holdout * n))
        self.n_train = n - self.n_test
        self.scale = float(np.max(np.abs(v[: self.n_train + window]))) or 1.0  # training part only
        s = v / self.scale
        idx = np.arange(n)[:, None] + np.arange(window)[None, :]
        self.x = s[idx].T[:, :, None]  # (window, N, 1)
        self.y = s[window:][:, None]  # (N, 1): the year after each window
        self.last = s[window - 1 : -1][:, None]  # the naive forecast: the window's last year
        self.target_years = series.years[window:]

    def batches(self, rng: np.random.Generator, size: int) -> Iterator[np.ndarray]:
        order = rng.permutation(self.n_train)
        for i in range(0, self.n_train, size):
            yield order[i : i + size]

    def gradients(self, k: ModuleType, params: dict, head: dict, idx: np.ndarray) -> Gradient:
        """(Error, cell gradients, head gradients) of the windows ``idx`` (B,), summed over them: the
        many-to-one read-out of a<T>.  Pure, so a Dask worker holding this problem can run it for a shard."""
        out = k.forward(self.x[:, idx], params)
        E, da, gh = k.linear_mse_loss(out[0], self.y[idx], head, "many-to-one")
        return E, k.backward(da, out[-1]), gh


class Optimizer:
    """SGD (W* = W − α g) or Adam, with optional global-norm clipping; updates arrays in place."""

    def __init__(self, kind: str, lr: float, clip: float | None) -> None:
        if kind not in ("sgd", "adam"):
            raise ValueError(f"optimizer must be 'sgd' or 'adam', got {kind!r}")
        if not lr > 0:
            raise ValueError(f"learning rate must be positive, got {lr}")
        if clip is not None and not clip > 0:
            raise ValueError(f"clip must be positive (or None), got {clip}")
        self.kind, self.lr, self.clip = kind, lr, clip
        self.t = 0
        self.m: dict[str, np.ndarray] = {}
        self.v: dict[str, np.ndarray] = {}

    def step(self, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]) -> float:
        """Update ``params`` from ``grads``; return the gradient's global norm before clipping."""
        norm = float(np.sqrt(sum(float(np.sum(g * g)) for g in grads.values())))
        factor = self.clip / norm if self.clip is not None and norm > self.clip else 1.0
        self.t += 1
        for name, g in grads.items():
            g = g * factor
            if self.kind == "sgd":
                params[name] -= self.lr * g  # the article's W* = W − α ∂Error/∂W
                continue
            m = self.m.setdefault(name, np.zeros_like(g))
            v = self.v.setdefault(name, np.zeros_like(g))
            m *= 0.9
            m += 0.1 * g
            v *= 0.999
            v += 0.001 * g * g
            m_hat, v_hat = m / (1 - 0.9**self.t), v / (1 - 0.999**self.t)
            params[name] -= self.lr * m_hat / (np.sqrt(v_hat) + 1e-8)
        return norm

    def state(self) -> dict[str, np.ndarray]:
        out = {f"m/{k}": v for k, v in self.m.items()} | {f"v/{k}": v for k, v in self.v.items()}
        return out | {"t": np.array(self.t)}

    def load_state(self, arrays: dict[str, np.ndarray]) -> None:
        self.t = int(arrays.get("t", 0))
        self.m = {k[2:]: v.copy() for k, v in arrays.items() if k.startswith("m/")}
        self.v = {k[2:]: v.copy() for k, v in arrays.items() if k.startswith("v/")}


#: (epoch, params, head, optimiser state, batch generator state or None): where a resumed run starts.
Start = tuple[int, dict, dict, dict, "dict | None"]
#: (Error summed over the batch, the cell's gradients, the head's gradients): what one batch contributes.
Gradient = tuple[float, dict, dict]
#: gradients(params, head, selection) -> Gradient: the batch's sum, in this process or over Dask workers
#: (:class:`symbolic_lstm.distributed.DataParallel`); ``selection`` names the batch's sequences.
Gradients = Callable[[dict, dict, np.ndarray], Gradient]


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM from the command line) stopped training; a KeyboardInterrupt, with where it stopped.

    ``epoch`` is the last whole epoch; ``checkpoint`` the file written for it (None without ``--checkpoint``),
    ``error`` why that write failed, if it did.
    """

    def __init__(self, epoch: int, checkpoint: str | Path | None, error: str | None = None) -> None:
        super().__init__(epoch, checkpoint, error)
        self.epoch, self.checkpoint, self.error = epoch, checkpoint, error


def load_problem(data: str, window: int, holdout: float) -> Problem | TextProblem:
    """The shipped dataset ``data`` as a training problem (what a Dask worker loads once for a whole run)."""
    if data in TEXTS:
        return TextProblem(load_text(data), window, holdout)
    return Problem(load_series(data), window, holdout)


def save_checkpoint(
    path: str | Path,
    config: Config,
    epoch: int,
    params: dict,
    head: dict,
    opt: Optimizer,
    rng: np.random.Generator | None = None,
) -> None:
    """Write every array, the settings and the batch generator's state to ``path`` (.npz), atomically."""
    import io

    from .files import write_atomic

    arrays = {f"p/{k}": v for k, v in params.items()} | {f"head/{k}": v for k, v in head.items()}
    arrays |= {f"opt/{k}": v for k, v in opt.state().items()}
    meta = {"config": asdict(config), "epoch": epoch, "rng": None if rng is None else rng.bit_generator.state}
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def load_checkpoint(path: str | Path) -> tuple[Config, Start]:
    """The settings and the starting point stored in a checkpoint; ValueError naming what is wrong if the file
    is not one (not an .npz archive, or one without the settings ``train --checkpoint`` writes)."""
    import zipfile

    try:
        with np.load(path, allow_pickle=False) as z:
            if not hasattr(z, "files"):
                raise ValueError("it holds a single array, not an .npz archive")
            arrays = {k: z[k] for k in z.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else "it is not an .npz archive"
        if isinstance(e, ValueError) and "single array" in str(e):
            why = str(e)
        raise ValueError(
            f"{path} is not a symbolic-lstm checkpoint ({why}); train --checkpoint FILE.npz writes one"
        ) from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
        config = Config(**meta["config"])
        epoch = int(meta["epoch"])
        rng = meta.get("rng")
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{path} is an .npz archive but not a symbolic-lstm checkpoint (its settings are missing or damaged: "
            f"{type(e).__name__})"
        ) from None
    pick = {
        pre: {k[len(pre) + 1 :]: v for k, v in arrays.items() if k.startswith(pre + "/")}
        for pre in ("p", "head", "opt")
    }
    return config, (epoch, pick["p"], pick["head"], pick["opt"], rng)


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint ``train --checkpoint`` wrote (which a new run may overwrite)."""
    try:
        load_checkpoint(path)
    except ValueError:
        return False
    return True


#: Written into every plot's metadata, so that a later run may overwrite it and nothing else.
PLOT_MARK = "symbolic-lstm train"
#: Formats a plot is written in (by the file's suffix), each able to carry the mark.
PLOT_FORMATS = ("png", "pdf", "svg")


def is_our_plot(path: str | Path) -> bool:
    """Whether ``path`` is a plot ``train --plot`` wrote (its metadata carries PLOT_MARK)."""
    try:
        return PLOT_MARK.encode() in Path(path).read_bytes()
    except OSError:
        return False


def evaluate(k: ModuleType, problem: Problem, params: dict, head: dict) -> tuple[float, float, np.ndarray]:
    """Held-out RMSE of the model and of the naive forecast, in the data's units; and the predictions."""
    test = slice(problem.n_train, None)
    out = k.forward(problem.x[:, test], params)
    pred = k.predict(out[0][-1:], head)[0]  # (N_test, 1)
    truth = problem.y[test]
    rmse = float(np.sqrt(np.mean((pred - truth) ** 2))) * problem.scale
    base = float(np.sqrt(np.mean((problem.last[test] - truth) ** 2))) * problem.scale
    return rmse, base, pred[:, 0] * problem.scale


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


def _update(opt: Optimizer, params: dict, head: dict, g: dict, gh: dict) -> None:
    """One optimiser step on the cell's and the head's parameters together (arrays updated in place)."""
    grads = {f"p/{n}": g[n] for n in params} | {f"head/{n}": v for n, v in gh.items()}
    both = {f"p/{n}": v for n, v in params.items()} | {f"head/{n}": v for n, v in head.items()}
    opt.step(both, grads)


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
    """Train ``config.epochs`` epochs (from ``start`` = (epoch, params, head, optimiser state) if given).

    Returns (history, params, head).  ``on_epoch(epoch, loss)`` is called after every epoch.  ``gradients``
    computes a batch's sum elsewhere (Dask workers holding ``problem``); by default, here.
    """
    first, params, head, opt, rng = _begin(k, config, 1, 1, start)
    grads = gradients or (lambda p, h, idx: problem.gradients(k, p, h, idx))
    history = History()

    def epoch(_: int) -> float:
        total = 0.0
        for idx in problem.batches(rng, config.batch):
            E, g, gh = grads(params, head, idx)
            _update(opt, params, head, g, gh)
            total += E
        return total / problem.n_train

    _epochs(config, first, (params, head, opt, rng), epoch, history, on_epoch, checkpoint, checkpoint_every)
    history.test_rmse, history.baseline_rmse, pred = evaluate(k, problem, params, head)
    history.test_years = problem.target_years[problem.n_train :]
    history.test_truth = problem.series.values[config.window :][problem.n_train :]
    history.test_pred = pred
    return history, params, head


class TextProblem:
    """A text as character indices; random chunks of ``window`` characters for training, the last
    ``holdout`` of the text for validation."""

    def __init__(self, text: str, window: int, holdout: float) -> None:
        if window < 2:
            raise ValueError(f"window must be at least 2 characters, got {window}")
        if not 0 < holdout < 1:
            raise ValueError(f"holdout must lie in (0, 1), got {holdout}")
        self.chars = sorted(set(text))
        self.index = {ch: i for i, ch in enumerate(self.chars)}
        self.ids = np.array([self.index[ch] for ch in text])
        cut = int(len(text) * (1 - holdout))
        self.train_ids, self.test_ids = self.ids[:cut], self.ids[cut:]
        if len(self.train_ids) <= window + 1 or len(self.test_ids) <= window + 1:
            raise ValueError(f"the text is too short for windows of {window} characters")
        self.window = window

    @property
    def vocab(self) -> int:
        return len(self.chars)

    def one_hot(self, ids: np.ndarray) -> np.ndarray:
        """(T, B) indices → (T, B, vocab) one-hot inputs."""
        return np.eye(self.vocab)[ids]

    def starts(self, rng: np.random.Generator, size: int) -> np.ndarray:
        """``size`` random training offsets: the chunks of one batch."""
        return rng.integers(0, len(self.train_ids) - self.window - 1, size=size)

    def chunks(self, starts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """x (window, B, vocab) and next-character labels (window, B) of the chunks at ``starts`` (B,)."""
        idx = starts[None, :] + np.arange(self.window)[:, None]
        return self.one_hot(self.train_ids[idx]), self.train_ids[idx + 1]

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """x (window, B, vocab) and next-character labels (window, B), from random training offsets."""
        return self.chunks(self.starts(rng, size))

    def gradients(self, k: ModuleType, params: dict, head: dict, starts: np.ndarray) -> Gradient:
        """(Error, cell gradients, head gradients) of the chunks at ``starts`` (B,), summed over every
        character: the softmax head on every step.  Pure, so a Dask worker can run it for a shard."""
        x, labels = self.chunks(starts)
        out = k.forward(x, params)
        E, da, gh = k.softmax_ce_loss(out[0], labels, head)
        return E, k.backward(da, out[-1]), gh


def sample(
    k: ModuleType,
    problem: TextProblem,
    params: dict,
    head: dict,
    rng: np.random.Generator,
    prime: str = "PROSPERO:\n",
    length: int = 200,
    temperature: float = 0.8,
) -> str:
    """Generate ``length`` characters after ``prime``, one step at a time with the state carried."""
    prime = "".join(ch for ch in prime if ch in problem.index) or problem.chars[0]
    init: dict[str, np.ndarray] = {}
    out = k.forward(problem.one_hot(np.array([[problem.index[ch]] for ch in prime])), params)
    text = []
    for _ in range(length):
        init = {f"{s}0": out[j][-1] for j, s in enumerate(k.RETURNS) if s in k.STATES}  # the output may not be a state
        logits = np.log(k.predict_proba(out[0][-1:], head)[0, 0] + 1e-12) / temperature
        prob = np.exp(logits - logits.max())
        ch = int(rng.choice(problem.vocab, p=prob / prob.sum()))
        text.append(problem.chars[ch])
        out = k.forward(problem.one_hot(np.array([[ch]])), params, **init)
    return prime + "".join(text)


def text_loss(k: ModuleType, problem: TextProblem, params: dict, head: dict, ids: np.ndarray) -> float:
    """Mean cross-entropy per character (nats) over ``ids``, in chunks of the training window."""
    n = (len(ids) - 1) // problem.window
    idx = np.arange(n)[None, :] * problem.window + np.arange(problem.window)[:, None]
    out = k.forward(problem.one_hot(ids[idx]), params)
    E, _, _ = k.softmax_ce_loss(out[0], ids[idx + 1], head)
    return E / idx.size


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
    """Train the character model: ``steps_per_epoch`` batches of random chunks per epoch (``gradients`` as
    for :func:`train`)."""
    first, params, head, opt, rng = _begin(k, config, problem.vocab, problem.vocab, start)
    grads = gradients or (lambda p, h, starts: problem.gradients(k, p, h, starts))
    history = History()

    def epoch(e: int) -> float:
        total = 0.0
        for _ in range(steps_per_epoch):
            starts = problem.starts(rng, config.batch)
            E, g, gh = grads(params, head, starts)
            _update(opt, params, head, g, gh)
            total += E / (problem.window * len(starts))
        return total / steps_per_epoch

    def after(e: int, loss: float) -> None:
        if on_epoch is not None:
            on_epoch(e, loss)
        if on_sample is not None and (e % sample_every == 0 or e == config.epochs):
            on_sample(e, sample(k, problem, params, head, np.random.default_rng(e - 1)))

    _epochs(config, first, (params, head, opt, rng), epoch, history, after, checkpoint, checkpoint_every)
    history.test_rmse = text_loss(k, problem, params, head, problem.test_ids)  # nats per character
    history.baseline_rmse = float(np.log(problem.vocab))  # a uniform guess over the characters
    return history, params, head


def figure(history: History, title: str) -> object:
    """The run's figure (a matplotlib Figure): the loss curve over whole epochs, and for the sunspots the
    held-out prediction against the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = range(1, len(history.losses) + 1)
    if history.test_years is None:  # the character model: the loss curve alone
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(epochs, history.losses, label="training")
        ax.axhline(history.test_rmse, color="gray", linestyle="--", label="held-out (end)")
        ax.set(xlabel="epoch", ylabel="cross-entropy (nats per character)", title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        fig.tight_layout()
        return fig
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.semilogy(epochs, history.losses)
    ax1.set(xlabel="epoch", ylabel="training loss (½ squared error per window)", title="loss")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.plot(history.test_years, history.test_truth, label="truth")
    ax2.plot(history.test_years, history.test_pred, label=f"model (RMSE {history.test_rmse:.1f})")
    ax2.set(xlabel="year", ylabel="sunspot number", title=f"held-out years (naive RMSE {history.baseline_rmse:.1f})")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot(history: History, path: str | Path, title: str) -> None:
    """The run's :func:`figure` as PNG, PDF or SVG by the suffix (needs matplotlib: the ``plot`` extra), marked
    as ours in its metadata, written atomically."""
    import io

    import matplotlib.pyplot as plt

    from .files import write_atomic

    fig = figure(history, title)
    fmt = Path(path).suffix.lower().lstrip(".")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100, metadata={"Software" if fmt == "png" else "Creator": PLOT_MARK})
    plt.close(fig)
    write_atomic(path, buf.getvalue())
