"""More than one machine: data-parallel training and the proof's obligations on Dask (``dask.distributed``).

Needs the ``[distributed]`` extra (``pip install "symbolic-lstm[distributed]"``); nothing else imports this
module, so without it everything runs in one process as before.

Data-parallel training, one optimiser step::

    client: (params, head) ─▶ worker i: forward + backward on shard i ─┐
                                                                        ├─ pairwise sums ─▶ client: update
                              worker j: forward + backward on shard j ─┘   (a fixed tree)

* The kernels travel as source text (:class:`KernelSource`): a worker runs the cell's generated NumPy module
  without finding it in its own install, so user cells work on any cluster that has NumPy.
* The data is put on the workers once, by tasks (:meth:`DataParallel.hold`, a Dask array's own graph, or a
  worker loading a shipped dataset), never re-sent per step.  Tasks have lineage: when a worker dies, Dask
  recomputes what it held on another, and the step is retried, so the run finishes with the parameters an
  uninterrupted run would have had — the shards and their sums are the same whichever worker computes them.
* The gradients are summed in a fixed binary tree over the shards: the result does not depend on which
  worker finishes first, and equals the single-process batch gradient to round-off.
"""

from __future__ import annotations

import hashlib
import itertools
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from .train.optimiser import Optimizer, update
from .train.problems import Gradient

#: How long to wait for a scheduler that does not answer (seconds): then a clear error, not a hang.
CONNECT_TIMEOUT = 5.0
#: How many times one step is retried after losing a worker (its tasks are recomputed elsewhere).
RETRIES = 3
LOSSES = ("softmax_ce", "linear_mse")


def _dask() -> Any:
    try:
        import distributed
    except ImportError:
        raise ImportError(
            "Dask is not installed: pip install 'symbolic-lstm[distributed]' (dask[distributed])"
        ) from None
    return distributed


def connect(workers: int | None = None, scheduler: str | None = None, timeout: float = CONNECT_TIMEOUT) -> Any:
    """A Dask client: a local cluster of ``workers`` processes (one thread each), or the cluster whose
    scheduler listens at ``scheduler`` (``tcp://HOST:PORT``).  Close it when done (it is a context manager).

    Raises:
        ImportError: the ``[distributed]`` extra is not installed.
        ValueError: neither or both given, ``workers`` < 1, or a scheduler that does not answer within
            ``timeout`` seconds (named), or one without workers.
    """
    if (workers is None) == (scheduler is None):
        raise ValueError("give the number of local workers or a scheduler's address, not both or neither")
    distributed = _dask()
    if scheduler is None:
        if not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be a positive number of processes, got {workers!r}")
        import logging
        import signal

        # Ctrl-C reaches every process of the terminal's group: the workers must leave it to this one, which
        # saves and closes the cluster (else each prints a KeyboardInterrupt traceback).  Workers started now
        # inherit the ignored signal; the plugin covers those a nanny restarts later.
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            # the client owns this cluster: closing it stops the workers
            client = distributed.Client(
                n_workers=workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=":0",  # any free port (client.dashboard_link says which)
                silence_logs=logging.ERROR,
                set_as_default=False,
            )
        finally:
            signal.signal(signal.SIGINT, previous)
        client.register_plugin(_local_worker_plugin(), name="symbolic-lstm-local-worker")
        # the client's view of the workers (scheduler_info) is refreshed periodically: on a loaded machine it
        # can still list none right after start — wait until every worker has registered and been seen
        client.wait_for_workers(workers, timeout=max(timeout, 120.0))
        return client
    if "://" not in scheduler and ":" not in scheduler:
        raise ValueError(f"a scheduler is addressed as tcp://HOST:PORT, got {scheduler!r}")
    try:
        client = distributed.Client(scheduler, timeout=timeout, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as e:
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(
            f"no Dask scheduler answered at {scheduler} within {timeout:g} s ({why}); start one with "
            "`dask scheduler` and workers with `dask worker ADDRESS`"
        ) from None
    try:
        client.wait_for_workers(1, timeout=timeout)
    except (OSError, TimeoutError) as e:
        client.close()
        raise ValueError(
            f"the Dask scheduler at {scheduler} has no workers ({e}); start some with `dask worker`"
        ) from None
    return client


def _ignore_interrupts() -> None:
    import signal
    import threading

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, signal.SIG_IGN)


def _not_a_closed_peer(record: Any) -> bool:
    """False for a worker's log record of a transfer cut short because the other worker closed the connection
    (``CommClosedError``): what closing a local cluster mid-step does, and what Dask recovers from by fetching
    elsewhere or recomputing — the death of a worker is reported by its nanny and the scheduler all the same."""
    from distributed.comm.core import CommClosedError

    error = record.exc_info[1] if record.exc_info else None
    return not isinstance(error, CommClosedError)


def _local_worker_plugin() -> Any:
    """A worker plugin (run again on every restarted worker) for a local cluster's workers: SIGINT is for the
    client, and a transfer from a peer that closed its end is not an error to print (Ctrl-C closes the cluster
    while shards may be fetching the parameters from each other)."""
    distributed = _dask()

    class LocalWorker(distributed.WorkerPlugin):
        def setup(self, worker: Any) -> None:
            import logging

            _ignore_interrupts()
            log = logging.getLogger("distributed.worker")
            if _not_a_closed_peer not in log.filters:
                log.addFilter(_not_a_closed_peer)

    return LocalWorker()


def workers_of(client: Any) -> list[str]:
    """The addresses of the client's workers, sorted (shard i is placed on worker i mod n)."""
    return sorted(client.scheduler_info()["workers"])


# ---- the kernels, sent as source --------------------------------------------------------------------------

_LOADED: dict[str, ModuleType] = {}


@dataclass(frozen=True)
class KernelSource:
    """A generated NumPy module as text: what a worker needs to run the cell's kernels (NumPy only)."""

    name: str
    digest: str
    source: str

    @classmethod
    def of(cls, module: ModuleType) -> KernelSource:
        """The source of a generated module (a ``load``-ed or imported one, or one a worker built from text)."""
        if isinstance(getattr(module, "__kernel_source__", None), KernelSource):
            return module.__kernel_source__
        file = getattr(module, "__file__", None)
        if not file or not Path(file).is_file() or not hasattr(module, "backward"):
            raise TypeError(f"expected a generated kernel module with a source file, got {module!r}")
        text = Path(file).read_text(encoding="utf-8")
        return cls(getattr(module, "CELL", Path(file).stem), hashlib.sha256(text.encode()).hexdigest()[:16], text)

    def module(self) -> ModuleType:
        """The module, built from the text once per process and kept (keyed by the text's digest)."""
        found = _LOADED.get(self.digest)
        if found is None:
            found = ModuleType(f"symbolic_lstm_kernels_{self.name}_{self.digest}")
            found.__file__ = f"<symbolic-lstm kernels: {self.name} {self.digest}>"
            exec(compile(self.source, found.__file__, "exec"), found.__dict__)  # our generated code, as text
            found.__kernel_source__ = self  # type: ignore[attr-defined]
            _LOADED[self.digest] = found
        return found


# ---- what a worker runs -----------------------------------------------------------------------------------


def _identity(value: Any) -> Any:
    return value


def _shard(kernels: KernelSource, data: Any, weights: tuple[dict, dict], work: Callable) -> Gradient:
    """One shard's forward and backward: ``work(kernels, data, params, head)``; the parameters' gradients
    only (those of the inputs and initial states are per sequence: nothing to sum, nothing to send back)."""
    params, head = weights
    E, g, gh = work(kernels.module(), data, params, head)
    return float(E), {n: g[n] for n in params}, gh


def _add(a: Gradient, b: Gradient) -> Gradient:
    """The sum of two shards' (Error, cell gradients, head gradients); new arrays, inputs untouched."""
    return a[0] + b[0], {n: a[1][n] + b[1][n] for n in a[1]}, {n: a[2][n] + b[2][n] for n in a[2]}


@dataclass(frozen=True)
class HeadLoss:
    """A shard's work for batches of (x, y) arrays: the cell, then one of the module's heads, then BPTT.

    ``loss`` is "softmax_ce" or "linear_mse" (the module's ``<loss>_loss(a, y, head, mode)``), or a function
    ``loss(module, a, y, head) -> (Error, ∂Error/∂a, head gradients)`` (sent to the workers by cloudpickle).
    """

    loss: str | Callable = "softmax_ce"
    mode: str = "many-to-many"

    def __post_init__(self) -> None:
        if isinstance(self.loss, str) and self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)} or a function, got {self.loss!r}")
        if not isinstance(self.loss, str) and not callable(self.loss):
            raise TypeError(f"loss must be a name or a function, got {type(self.loss).__name__}")
        if self.mode not in ("many-to-many", "many-to-one"):
            raise ValueError(f"mode must be 'many-to-many' or 'many-to-one', got {self.mode!r}")

    @property
    def y_axis(self) -> int:
        """The batch axis of the targets: (T, B, …) scores every step, (B, …) only the last."""
        return 1 if self.mode == "many-to-many" else 0

    def __call__(self, k: ModuleType, data: tuple, params: dict, head: dict) -> Gradient:
        x, y = data
        out = k.forward(x, params)
        if isinstance(self.loss, str):
            E, da, gh = getattr(k, f"{self.loss}_loss")(out[0], y, head, self.mode)
        else:
            E, da, gh = self.loss(k, out[0], y, head)
        return float(E), k.backward(da, out[-1]), gh


@dataclass(frozen=True)
class Select:
    """A shard's work on a problem a worker holds whole: the sequences ``selection`` of it."""

    selection: np.ndarray

    def __call__(self, k: ModuleType, problem: Any, params: dict, head: dict) -> Gradient:
        return problem.gradients(k, params, head, self.selection)


@dataclass(frozen=True)
class Idle:
    """A shard that does no work: zero gradients shaped like the parameters.  A step of these costs what
    every step costs beyond its compute (bench/distributed.py times it)."""

    def __call__(self, k: ModuleType, data: Any, params: dict, head: dict) -> Gradient:
        return 0.0, {n: np.zeros_like(v) for n, v in params.items()}, {n: np.zeros_like(v) for n, v in head.items()}


# ---- the client's side ------------------------------------------------------------------------------------


class DataParallel:
    """Data-parallel gradients of a generated module on a Dask cluster.

    Args:
        client: a ``dask.distributed.Client`` (see :func:`connect`).
        kernels: the generated NumPy module (``symbolic_lstm.load("lstm")``, or one generated for your cell).
        loss: "softmax_ce", "linear_mse" or a function (see :class:`HeadLoss`), for :meth:`hold`-ed batches.
        mode: "many-to-many" (targets (T, B, …)) or "many-to-one" (targets (B, …), the last step scored).

    Shards: every batch is split along its batch axis into one shard per worker (fewer when it has fewer
    sequences), shard i held on worker i; each step sends the parameters once to every worker.
    """

    def __init__(
        self, client: Any, kernels: ModuleType, loss: str | Callable = "softmax_ce", mode: str = "many-to-many"
    ) -> None:
        _dask()
        self.client = client
        self.loss = HeadLoss(loss, mode)
        self.source = KernelSource.of(kernels)
        self.workers = workers_of(client)
        if not self.workers:
            raise ValueError("the Dask cluster has no workers")
        self._kernels = self._held(self.source, None)
        self.steps = 0

    @property
    def n_workers(self) -> int:
        return len(self.workers)

    def _held(self, value: Any, shard: int | None) -> Any:
        """A future of ``value`` kept on worker ``shard`` mod n (anywhere for None).  A task, not a scatter:
        Dask can recompute it on another worker if this one dies."""
        if shard is None:
            return self.client.submit(_identity, value, pure=False)
        worker = self.workers[shard % self.n_workers]
        return self.client.submit(_identity, value, pure=False, workers=[worker], allow_other_workers=True)

    def load(self, loader: Callable, *args: Any) -> list[Any]:
        """Run ``loader(*args)`` once on every worker (a dataset each worker keeps for the whole run); one
        future per worker, for :meth:`step` with :class:`Select` work."""
        return [
            self.client.submit(loader, *args, pure=False, workers=[w], allow_other_workers=True) for w in self.workers
        ]

    def hold(self, x: Any, y: Any) -> list[Any]:
        """Put one batch on the cluster, split into shards along the batch axis; the futures of its shards.

        ``x`` (T, B, n_x) and ``y`` ((T, B, …) many-to-many, (B, …) many-to-one): NumPy arrays (split into one
        shard per worker), or Dask arrays (their chunks along B are the shards, computed where Dask puts them).
        """
        if hasattr(x, "dask") and hasattr(x, "to_delayed"):
            return self._hold_dask(x, y)
        x, y = np.asarray(x), np.asarray(y)
        if x.ndim != 3:
            raise ValueError(f"x must have shape (T, B, n_x), got {x.shape}")
        ax = self.loss.y_axis
        if y.ndim <= ax or y.shape[ax] != x.shape[1]:
            want = "(T, B, …)" if ax == 1 else "(B, …)"
            raise ValueError(f"y must have shape {want} with B = {x.shape[1]} ({self.loss.mode}), got {y.shape}")
        parts = np.array_split(np.arange(x.shape[1]), min(self.n_workers, x.shape[1]))
        return [self._held((x[:, p], np.take(y, p, axis=ax)), i) for i, p in enumerate(parts) if len(p)]

    def _hold_dask(self, x: Any, y: Any) -> list[Any]:
        import dask

        ax = self.loss.y_axis
        if x.ndim != 3 or y.ndim <= ax or y.shape[ax] != x.shape[1]:
            raise ValueError(f"x must be (T, B, n_x) and y share its B on axis {ax}; got {x.shape} and {y.shape}")
        x = x.rechunk({0: -1, 2: -1})
        y = y.rechunk({i: (x.chunks[1] if i == ax else -1) for i in range(y.ndim)})
        xs = x.to_delayed().reshape(-1)
        ys = np.moveaxis(y.to_delayed(), ax, 0).reshape(len(xs), -1)[:, 0]
        pairs = [dask.delayed(tuple)([a, b]) for a, b in zip(xs, ys, strict=True)]
        return list(self.client.compute(pairs))

    def step(self, params: dict, head: dict, shards: Sequence[tuple[Any, Callable]]) -> Gradient:
        """(Error, cell gradients, head gradients) summed over ``shards`` = [(data future, work)], each
        computed where its data is; the sum is a binary tree of tasks.  A step that loses a worker is retried
        (up to RETRIES times) once Dask has recomputed what it held."""
        distributed = _dask()
        lost = (distributed.client.FutureCancelledError, distributed.scheduler.KilledWorker, OSError)
        for attempt in itertools.count():
            try:
                # a task, not a scatter: a scatter racing a dying worker can hang or fail, and has no lineage
                weights = self._held((params, head), None)
                parts = [
                    self.client.submit(_shard, self._kernels, data, weights, work, pure=False) for data, work in shards
                ]
                result = self.client.gather(_tree_sum(self.client, parts))
                self.steps += 1
                return result
            except lost:
                if attempt >= RETRIES:
                    raise
            except KeyboardInterrupt:
                _quiet_abandoned_gathers()
                raise
        raise AssertionError("unreachable")

    def gradients(self, params: dict, head: dict, batch: Sequence[Any]) -> Gradient:
        """The summed gradients of a :meth:`hold`-ed batch."""
        return self.step(params, head, [(f, self.loss) for f in batch])

    def select(self, held: list[Any]) -> Callable[[dict, dict, np.ndarray], Gradient]:
        """``gradients(params, head, selection)`` for a problem every worker holds (:meth:`load`): the
        selection is split into one shard per worker, in order (what ``train.train(gradients=…)`` takes)."""

        def gradients(params: dict, head: dict, selection: np.ndarray) -> Gradient:
            parts = np.array_split(np.asarray(selection), min(len(held), len(selection)))
            return self.step(params, head, [(held[i], Select(p)) for i, p in enumerate(parts) if len(p)])

        return gradients

    def fit(
        self,
        params: dict,
        head: dict,
        batches: Iterable[tuple[Any, Any]],
        optimizer: Optimizer,
        epochs: int = 1,
        on_step: Callable[[int, float], None] | None = None,
    ) -> list[float]:
        """Train on ``batches`` of (x, y) for ``epochs`` passes; params and head are updated in place.

        The batches are put on the cluster once, as they are first read (a generator is read once), and kept
        for the later epochs.  Returns the summed Error of every epoch.  ``on_step(step, E)`` after each step.
        """
        if epochs < 1:
            raise ValueError(f"epochs must be at least 1, got {epochs}")
        held: list[list[Any]] = []
        losses = []
        for epoch in range(epochs):
            total = 0.0
            source = (self.hold(x, y) for x, y in batches) if epoch == 0 else iter(held)
            for batch in source:
                if epoch == 0:
                    held.append(batch)
                E, g, gh = self.gradients(params, head, batch)
                update(optimizer, params, head, g, gh)
                total += E
                if on_step is not None:
                    on_step(self.steps, E)
            if not held:
                raise ValueError("batches is empty: give at least one (x, y) batch")
            losses.append(total)
        return losses


def fit(
    client: Any,
    kernels: ModuleType,
    params: dict,
    head: dict,
    batches: Iterable[tuple[Any, Any]],
    optimizer: Optimizer,
    *,
    loss: str | Callable = "softmax_ce",
    mode: str = "many-to-many",
    epochs: int = 1,
    on_step: Callable[[int, float], None] | None = None,
) -> list[float]:
    """Train ``kernels``' cell data-parallel on ``client``'s workers: ``batches`` of (x, y) — NumPy or Dask
    arrays, x (T, B, n_x) — for ``epochs`` passes; ``params`` and ``head`` are updated in place by
    ``optimizer`` once per batch from the gradients summed over its shards.  The summed Error of every epoch.
    (:meth:`DataParallel.fit`.)"""
    return DataParallel(client, kernels, loss, mode).fit(params, head, batches, optimizer, epochs, on_step)


def gradients(
    client: Any,
    kernels: ModuleType,
    params: dict,
    head: dict,
    x: Any,
    y: Any,
    *,
    loss: str | Callable = "softmax_ce",
    mode: str = "many-to-many",
) -> Gradient:
    """(Error, cell gradients, head gradients) of the batch (x, y), summed over shards on ``client``'s
    workers: what one process's forward, loss and backward give, to round-off."""
    parallel = DataParallel(client, kernels, loss, mode)
    return parallel.gradients(params, head, parallel.hold(x, y))


def _abandoned_gather(record: Any) -> bool:
    error = record.exc_info[1] if record.exc_info else None
    return type(error).__name__ != "AllExit"


def _quiet_abandoned_gathers() -> None:
    """A gather cut short by Ctrl-C leaves a task in Dask's event loop that fails with AllExit when the client
    closes, and asyncio logs it as "Task exception was never retrieved": expected, and not the user's concern."""
    import logging

    log = logging.getLogger("asyncio")
    if _abandoned_gather not in log.filters:
        log.addFilter(_abandoned_gather)


def _tree_sum(client: Any, parts: list[Any]) -> Any:
    """One future: the pairwise sums of ``parts``, level by level (fixed order, so a fixed result)."""
    if not parts:
        raise ValueError("no shards to sum")
    while len(parts) > 1:
        pairs = [client.submit(_add, a, b, pure=False) for a, b in zip(parts[::2], parts[1::2], strict=False)]
        parts = pairs + parts[len(pairs) * 2 :]
    return parts[0]


# ---- the proof's obligations ------------------------------------------------------------------------------


class DaskExecutor:
    """A proof's executor (:class:`symbolic_lstm.proof.Executor`) on a Dask cluster: one task per obligation."""

    def __init__(self, client: Any) -> None:
        self.client = client

    def map(self, check: Callable, context: Any, jobs: Sequence[Any], progress: Callable | None = None) -> dict:
        return prove_on(self.client, check, context, jobs, progress)


def prove_on(client: Any, check: Callable, context: Any, jobs: Sequence[Any], progress: Callable | None = None) -> dict:
    """``dict(check(job, context) for job in jobs)``, one Dask task per obligation (a gradient entry: its
    direct differentiation and comparison at every point and loss mode).  The context — the unrolled Error
    and the engine's gradients, SymPy expressions — is sent once and copied between workers as they need it.
    ``progress(done, total, gradient)`` is called as each task's verdict arrives."""
    _dask()
    shared = client.submit(_identity, context, pure=False)  # workers fetch it from each other
    futures = [client.submit(check, job, shared, pure=False) for job in jobs]
    if progress is None:
        return dict(client.gather(futures))
    out: dict = {}
    pending = list(futures)
    while pending:  # poll (as_completed wants a default client; ours is not one)
        done = [f for f in pending if f.done()]
        if not done:
            time.sleep(0.05)
            continue
        for key, verdict in client.gather(done):
            out[key] = verdict
            progress(len(out), len(futures), key[0])
        decided = {id(f) for f in done}
        pending = [f for f in pending if id(f) not in decided]
    return out
