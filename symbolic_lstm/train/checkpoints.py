"""Checkpoints: ``.npz`` files holding every parameter, the optimiser's state, the epoch, the settings and the state
of the random generator that draws the batches, so a resumed run is the uninterrupted run, bit for bit.
Written atomically; read with ``allow_pickle=False``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .optimiser import Optimizer


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


#: (epoch, params, head, optimiser state, batch generator state or None): where a resumed run starts.
Start = tuple[int, dict, dict, dict, "dict | None"]


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

    from ..files import write_atomic

    arrays = {f"p/{k}": v for k, v in params.items()} | {f"head/{k}": v for k, v in head.items()}
    arrays |= {f"opt/{k}": v for k, v in opt.state().items()}
    meta = {"config": asdict(config), "epoch": epoch, "rng": None if rng is None else rng.bit_generator.state}
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


class CheckpointLockedError(ValueError):
    """Another run is writing the same checkpoint file (its lock names the process)."""


@contextmanager
def checkpoint_lock(path: str | Path) -> Iterator[list[Path]]:
    """Hold ``<path>.lock`` while a run writes ``path``: a second run with the same checkpoint is refused
    (CheckpointLockedError naming the process that holds it) instead of both writing and the last one winning.
    The lock is an OS file lock (``flock``), released even when the holder is killed; once it is held, the
    temporary files a killed writer left beside ``path`` are removed — yielded, so a caller can say so.
    Where there are no file locks (Windows), nothing is locked."""
    import os
    import socket
    import time

    from ..files import clean_temporaries

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield clean_temporaries(path)
        return
    path = Path(path)
    target = Path(os.path.realpath(path))
    lock = target.with_name(target.name + ".lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "a process that wrote nothing yet"
            raise CheckpointLockedError(
                f"{path} is being written by another run ({holder}); wait for it to end, or choose another "
                "checkpoint file"
            ) from None
        os.ftruncate(fd, 0)
        started = time.strftime("%Y-%m-%d %H:%M:%S")
        os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}, since {started}".encode())
        try:
            yield clean_temporaries(target)
        finally:
            try:
                os.unlink(lock)  # still held: no one can have taken it meanwhile
            except OSError:
                pass
    finally:
        os.close(fd)


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
