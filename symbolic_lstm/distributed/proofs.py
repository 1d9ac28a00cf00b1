"""The proof's obligations on a Dask cluster: one task per gradient entry."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from .cluster import require_dask
from .tasks import identity

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
    require_dask()
    shared = client.submit(identity, context, pure=False)  # workers fetch it from each other
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
