"""The client's side of data-parallel training: data held on the workers once, each step's shards and their sum in
a fixed tree, retried on a lost worker; ``fit`` and ``gradients`` for a problem of one's own."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterable, Sequence
from types import ModuleType
from typing import Any

import numpy as np

from ..train.optimiser import Optimizer, update
from ..train.problems import Gradient
from .cluster import RETRIES, require_dask, workers_of
from .tasks import HeadLoss, KernelSource, Select, add_gradients, identity, missing_imports, shard_gradient

# ---- the client's side ------------------------------------------------------------------------------------


def _check_imports(client: Any, kernels: ModuleType) -> None:
    """A ValueError naming the workers that cannot import what ``kernels``' backend needs (JAX), before any
    work: not a failed task in the middle of a run."""
    from ..codegen.backends import BACKENDS, DEFAULT

    backend = BACKENDS.get(getattr(kernels, "BACKEND", DEFAULT))  # every module says it; older NumPy ones did not
    if backend is None or not backend.imports:
        return
    missing = {w: m for w, m in client.run(missing_imports, backend.imports).items() if m}
    if missing:
        names = sorted({name for m in missing.values() for name in m})
        raise ValueError(
            f"the {backend.name} backend's module imports {', '.join(names)}, which the Dask worker(s) at "
            f"{', '.join(sorted(missing))} cannot import: install it there ({backend.needs}), or train with the "
            "NumPy module"
        )


class DataParallel:
    """Data-parallel gradients of a generated module on a Dask cluster.

    Args:
        client: a ``dask.distributed.Client`` (see :func:`connect`).
        kernels: the generated module (``symbolic_lstm.load("lstm")``, or one generated for your cell): NumPy's,
            or another backend's (``load("lstm_jax")``) where every worker can import what it imports.
        loss: "softmax_ce", "linear_mse" or a function (see :class:`HeadLoss`), for :meth:`hold`-ed batches.
        mode: "many-to-many" (targets (T, B, …)) or "many-to-one" (targets (B, …), the last step scored).

    Shards: every batch is split along its batch axis into one shard per worker (fewer when it has fewer
    sequences), shard i held on worker i; each step sends the parameters once to every worker.
    """

    def __init__(
        self, client: Any, kernels: ModuleType, loss: str | Callable = "softmax_ce", mode: str = "many-to-many"
    ) -> None:
        require_dask()
        self.client = client
        self.loss = HeadLoss(loss, mode)
        self.source = KernelSource.of(kernels)
        self.workers = workers_of(client)
        if not self.workers:
            raise ValueError("the Dask cluster has no workers")
        _check_imports(client, kernels)
        self._kernels = self._held(self.source, None)
        self.steps = 0

    @property
    def n_workers(self) -> int:
        return len(self.workers)

    def _held(self, value: Any, shard: int | None) -> Any:
        """A future of ``value`` kept on worker ``shard`` mod n (anywhere for None).  A task, not a scatter:
        Dask can recompute it on another worker if this one dies."""
        if shard is None:
            return self.client.submit(identity, value, pure=False)
        worker = self.workers[shard % self.n_workers]
        return self.client.submit(identity, value, pure=False, workers=[worker], allow_other_workers=True)

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
        distributed = require_dask()
        lost = (distributed.client.FutureCancelledError, distributed.scheduler.KilledWorker, OSError)
        for attempt in itertools.count():
            try:
                # a task, not a scatter: a scatter racing a dying worker can hang or fail, and has no lineage
                weights = self._held((params, head), None)
                parts = [
                    self.client.submit(shard_gradient, self._kernels, data, weights, work, pure=False)
                    for data, work in shards
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
        pairs = [client.submit(add_gradients, a, b, pure=False) for a, b in zip(parts[::2], parts[1::2], strict=False)]
        parts = pairs + parts[len(pairs) * 2 :]
    return parts[0]
