"""Training problems: one-step-ahead forecast of a yearly series through a linear read-out of a<T>
(many-to-one), and a character-level language model through the softmax head on every step; each computes
a batch's gradients with the generated kernels (pure, so a Dask worker holding the problem can run a shard).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from types import ModuleType

import numpy as np

from .data import TEXTS, Series, load_series, load_text

#: (Error summed over the batch, the cell's gradients, the head's gradients): what one batch contributes.
Gradient = tuple[float, dict, dict]
#: gradients(params, head, selection) -> Gradient: the batch's sum, in this process or over Dask workers
#: (:class:`symbolic_lstm.distributed.DataParallel`); ``selection`` names the batch's sequences.
Gradients = Callable[[dict, dict, np.ndarray], Gradient]


class NonFiniteOutputsError(ArithmeticError):
    """The cell's forward pass gave NaN or infinite outputs (training diverged): ``what`` names them.  Raised
    before any loss or read-out sees them, so the training loop stops at this step and says so, as it does
    for a loss, gradient or parameter that is not finite."""

    def __init__(self, what: str) -> None:
        super().__init__(what)
        self.what = what


def forward(k: ModuleType, x: np.ndarray, params: dict, **init: np.ndarray) -> tuple:
    """``k.forward(x, params, **init)``, refused with :class:`NonFiniteOutputsError` where an output (every
    returned sequence but the cache) is not finite."""
    out = k.forward(x, params, **init)
    names = getattr(k, "RETURNS", ())
    for j, value in enumerate(out[:-1]):
        arr = np.asarray(value)
        if not np.isfinite(arr).all():
            name = names[j] if j < len(names) else f"output {j}"
            bad = arr.size - int(np.count_nonzero(np.isfinite(arr)))
            raise NonFiniteOutputsError(f"the cell's output {name} ({bad} of {arr.size} values)")
    return out


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
        if self.n_train < 1:
            raise ValueError(
                f"holdout = {holdout!r} holds out all {n} windows of {window} years: none is left to train on"
            )
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
        out = forward(k, self.x[:, idx], params)
        E, da, gh = k.linear_mse_loss(out[0], self.y[idx], head, "many-to-one")
        return E, _backward(k, da, out, params), _numpy(gh)

    n_inputs = 1  # one number per year in, one predicted

    def selections(self, rng: np.random.Generator, size: int, steps: int) -> Iterator[np.ndarray]:
        """One epoch's batches: every training window once, in random order (``steps`` is not used)."""
        return self.batches(rng, size)

    def epoch_loss(self, errors: list[tuple[float, np.ndarray]], steps: int) -> float:
        """The epoch's mean loss per window from each batch's (summed Error, selection)."""
        return sum(E for E, _ in errors) / self.n_train


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
            raise ValueError(
                f"the text is too short for windows of {window} characters with holdout = {holdout!r} "
                f"({len(self.train_ids)} characters to train on, {len(self.test_ids)} held out)"
            )
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
        out = forward(k, x, params)
        E, da, gh = k.softmax_ce_loss(out[0], labels, head)
        return E, _backward(k, da, out, params), _numpy(gh)

    @property
    def n_inputs(self) -> int:
        """One-hot characters in, a distribution over them out."""
        return self.vocab

    def selections(self, rng: np.random.Generator, size: int, steps: int) -> Iterator[np.ndarray]:
        """One epoch's batches: ``steps`` batches of random chunks."""
        for _ in range(steps):
            yield self.starts(rng, size)

    def epoch_loss(self, errors: list[tuple[float, np.ndarray]], steps: int) -> float:
        """The epoch's mean loss per character (nats) from each batch's (summed Error, selection)."""
        return sum(E / (self.window * len(starts)) for E, starts in errors) / steps


def load_problem(data: str, window: int, holdout: float) -> Problem | TextProblem:
    """The shipped dataset ``data`` as a training problem (what a Dask worker loads once for a whole run)."""
    if data in TEXTS:
        return TextProblem(load_text(data), window, holdout)
    return Problem(load_series(data), window, holdout)


def evaluate(k: ModuleType, problem: Problem, params: dict, head: dict) -> tuple[float, float, np.ndarray]:
    """Held-out RMSE of the model and of the naive forecast, in the data's units; and the predictions."""
    test = slice(problem.n_train, None)
    out = forward(k, problem.x[:, test], params)
    pred = np.asarray(k.predict(out[0][-1:], head))[0]  # (N_test, 1)
    truth = problem.y[test]
    rmse = float(np.sqrt(np.mean((pred - truth) ** 2))) * problem.scale
    base = float(np.sqrt(np.mean((problem.last[test] - truth) ** 2))) * problem.scale
    return rmse, base, pred[:, 0] * problem.scale


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
    out = forward(k, problem.one_hot(np.array([[problem.index[ch]] for ch in prime])), params)
    text = []
    for _ in range(length):
        init = {f"{s}0": out[j][-1] for j, s in enumerate(k.RETURNS) if s in k.STATES}  # the output may not be a state
        logits = np.log(np.asarray(k.predict_proba(out[0][-1:], head))[0, 0] + 1e-12) / temperature
        prob = np.exp(logits - logits.max())
        ch = int(rng.choice(problem.vocab, p=prob / prob.sum()))
        text.append(problem.chars[ch])
        out = forward(k, problem.one_hot(np.array([[ch]])), params, **init)
    return prime + "".join(text)


def text_loss(k: ModuleType, problem: TextProblem, params: dict, head: dict, ids: np.ndarray) -> float:
    """Mean cross-entropy per character (nats) over ``ids``, in chunks of the training window."""
    n = (len(ids) - 1) // problem.window
    idx = np.arange(n)[None, :] * problem.window + np.arange(problem.window)[:, None]
    out = forward(k, problem.one_hot(ids[idx]), params)
    E, _, _ = k.softmax_ce_loss(out[0], ids[idx + 1], head)
    return E / idx.size


def _backward(k: ModuleType, da: object, out: tuple, params: dict) -> dict:
    """The cell's gradients from ``da``; NaN everywhere when ``da`` is not finite (the loss diverged: the
    kernels' backward would refuse it, and the training loop stops at this step and says so)."""
    if not np.isfinite(np.asarray(da)).all():
        return {n: np.full(np.shape(v), np.nan) for n, v in params.items()}
    return _numpy(k.backward(da, out[-1]))


def _numpy(arrays: dict) -> dict[str, np.ndarray]:
    """A module's gradients as NumPy arrays (the JAX module returns JAX arrays; NumPy's are returned as they are),
    so the optimiser's arithmetic is NumPy's whatever the module."""
    return {name: np.asarray(v) for name, v in arrays.items()}
