"""Connecting to a Dask cluster: a local one (processes forked here) or a scheduler's address, with clear errors
for an address that is not one; and which workers a client has."""

from __future__ import annotations

from typing import Any

#: How long to wait for a scheduler that does not answer (seconds): then a clear error, not a hang.
CONNECT_TIMEOUT = 5.0
#: How many times one step is retried after losing a worker (its tasks are recomputed elsewhere).
RETRIES = 3


def require_dask() -> Any:
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
    distributed = require_dask()
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
                host="127.0.0.1",  # scheduler and workers: this machine only
                dashboard_address="127.0.0.1:0",  # any free port, this machine only (unauthenticated)
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
    _check_address(scheduler)
    _identify(scheduler, timeout)
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


def _check_address(address: str) -> None:
    """ValueError naming what is wrong with a scheduler address before anything connects: ``tcp://HOST:PORT``
    (or ``HOST:PORT``; other Dask protocols pass), with a port from 1 to 65535."""
    from urllib.parse import urlsplit

    if "://" not in address and ":" not in address:
        raise ValueError(f"a scheduler is addressed as tcp://HOST:PORT, got {address!r}")
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    if parts.scheme not in ("tcp", "tls", "ws", "wss"):
        return  # inproc://, ucx:// …: Dask's own to judge
    try:
        port = parts.port
    except ValueError:  # urllib's own words: "Port out of range 0-65535", "Port could not be cast …"
        port = -1
    if port is None or not 1 <= port <= 65535 or not parts.hostname:
        raise ValueError(
            f"{address!r} is no scheduler address: expected tcp://HOST:PORT with a port from 1 to 65535 "
            "(`dask scheduler` prints its own, tcp://HOST:8786 by default)"
        )


def _identify(address: str, timeout: float) -> None:
    """Ask ``address`` who it is, in at most ``timeout`` seconds (a Dask client would wait a minute and more for
    something that accepts the connection and never answers, and leave a traceback behind); ValueError
    naming the address and what answered, unless a Dask scheduler did."""
    import asyncio

    from distributed.comm import connect as dask_connect

    async def ask() -> object:
        comm = await dask_connect(address, timeout=timeout)
        try:
            await comm.write({"op": "identity", "reply": True})
            return await comm.read()
        finally:
            comm.abort()

    hint = "start one with `dask scheduler` and workers with `dask worker ADDRESS`"
    try:
        answer = asyncio.run(asyncio.wait_for(ask(), timeout))
    except (TimeoutError, asyncio.TimeoutError):
        raise ValueError(
            f"no Dask scheduler answered at {address} within {timeout:g} s (nothing listens there, or what does "
            f"never answered Dask's handshake); {hint}"
        ) from None
    except Exception as e:  # an address Dask cannot use, whatever the reason: one line
        why = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ValueError(f"cannot reach a Dask scheduler at {address}: {why}; {hint}") from None
    kind = answer.get("type") if isinstance(answer, dict) else None
    if kind != "Scheduler":
        raise ValueError(
            f"{address} answered, but as a Dask {kind or 'peer of unknown kind'}, not a scheduler; give the address "
            "`dask scheduler` prints (tcp://HOST:8786)"
        )


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
    distributed = require_dask()

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
