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

One job a module: :mod:`.cluster` (connect), :mod:`.tasks` (what a worker runs), :mod:`.data_parallel`
(the client's side of training), :mod:`.proofs` (the proof's executor).
"""

from __future__ import annotations

from .cluster import CONNECT_TIMEOUT, RETRIES, connect, workers_of
from .data_parallel import DataParallel, fit, gradients
from .proofs import DaskExecutor, prove_on
from .tasks import LOSSES, HeadLoss, KernelSource

__all__ = [
    "CONNECT_TIMEOUT", "LOSSES", "RETRIES", "DaskExecutor", "DataParallel", "HeadLoss", "KernelSource", "connect",
    "fit", "gradients", "prove_on", "workers_of",
]  # fmt: skip
