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
    cell_digest: str | None = None  # Cell.digest of the cell trained (None: a checkpoint from before it was kept)

    def check(self) -> None:
        """ValueError naming the first setting that no run could have had (a damaged or hand-edited file)."""
        from .data import DATASETS

        def whole(name: str, low: int) -> None:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"its setting {name} = {value!r} is not a whole number of at least {low}")

        for name, low in (("window", 1), ("hidden", 1), ("epochs", 1), ("batch", 1)):
            whole(name, low)
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"its setting seed = {self.seed!r} is not a whole number")
        if not isinstance(self.cell, str) or not self.cell:
            raise ValueError(f"its setting cell = {self.cell!r} does not name a cell")
        if self.data not in DATASETS:
            raise ValueError(f"its setting data = {self.data!r} is not one of {', '.join(DATASETS)}")
        if self.optimizer not in ("adam", "sgd"):
            raise ValueError(f"its setting optimizer = {self.optimizer!r} is not 'adam' or 'sgd'")
        for name in ("lr", "clip", "holdout"):
            value = getattr(self, name)
            if name == "clip" and value is None:
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value < float("inf"):
                raise ValueError(f"its setting {name} = {value!r} is not a positive number")
        if not self.holdout < 1:
            raise ValueError(f"its setting holdout = {self.holdout!r} is not below 1")
        if self.cell_digest is not None and not isinstance(self.cell_digest, str):
            raise ValueError(f"its setting cell_digest = {self.cell_digest!r} is not a digest")


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

    from ..files import clean_temporaries, target

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield clean_temporaries(path)
        return
    path = Path(path)
    real = target(path)
    lock = real.with_name(real.name + ".lock")
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
            yield clean_temporaries(real)
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
        epoch = meta["epoch"]
        rng = meta.get("rng")
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{path} is an .npz archive but not a symbolic-lstm checkpoint (its settings are missing or damaged: "
            f"{type(e).__name__})"
        ) from None
    try:
        config.check()
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= config.epochs:
            raise ValueError(f"its epoch {epoch!r} is not a whole number from 0 to its {config.epochs} epochs")
        if rng is not None and not isinstance(rng, dict):
            raise ValueError("the state of its batch generator is damaged")
    except ValueError as e:
        raise ValueError(f"{path} is a damaged symbolic-lstm checkpoint: {e}") from None
    pick = {
        pre: {k[len(pre) + 1 :]: v for k, v in arrays.items() if k.startswith(pre + "/")}
        for pre in ("p", "head", "opt")
    }
    return config, (epoch, pick["p"], pick["head"], pick["opt"], rng)


def check_start(path: str | Path, k: object, config: Config, n_x: int, n_y: int, start: Start) -> None:
    """ValueError naming what in a checkpoint's arrays does not fit the run it resumes with the module ``k``
    (the cell's parameters: names, shapes, float64, finite; the read-out's; the optimiser's moments)."""
    _, params, head, state, rng = start
    want = {n: np.shape(v) for n, v in k.init_params(n_x, config.hidden, seed=0).items()}  # type: ignore[attr-defined]
    missing, extra = sorted(set(want) - set(params)), sorted(set(params) - set(want))
    if missing or extra:
        raise ValueError(
            f"{path} holds the parameters {sorted(params)}, but cell {config.cell} has {sorted(want)}"
            + (f" (missing: {', '.join(missing)})" if missing else "")
            + (f" (not the cell's: {', '.join(extra)})" if extra else "")
            + "; was the cell edited since? resume with the cell it was trained with"
        )
    heads = {"W_y": (n_y, config.hidden), "b_y": (n_y,)}
    for kind, arrays, shapes in (("parameter", params, want), ("read-out parameter", head, heads)):
        if set(arrays) != set(shapes):
            raise ValueError(f"{path} holds the read-out {sorted(arrays)}, expected {sorted(shapes)}")
        for name, v in arrays.items():
            if v.shape != shapes[name]:
                raise ValueError(
                    f"{path}: the {kind} {name} has shape {v.shape}, but hidden = {config.hidden} on {config.data} "
                    f"needs {shapes[name]}"
                )
            if v.dtype != np.float64:
                raise ValueError(f"{path}: the {kind} {name} is {v.dtype}; checkpoints hold float64")
            if not np.isfinite(v).all():
                raise ValueError(f"{path}: the {kind} {name} holds NaN or infinite values")
    names = {f"p/{n}": want[n] for n in want} | {f"head/{n}": heads[n] for n in heads}
    for key, v in state.items():
        if key == "t":
            if v.shape != () or v.dtype.kind not in "iu" or int(v) < 0:
                raise ValueError(f"{path}: the optimiser's step count is damaged ({v!r})")
            continue
        moment, _, name = key.partition("/")
        if moment not in ("m", "v") or name not in names or v.shape != names[name] or not np.isfinite(v).all():
            raise ValueError(f"{path}: the optimiser's state {key!r} is damaged or does not fit the parameters")
    if rng is not None:
        try:
            np.random.default_rng(0).bit_generator.state = rng
        except (TypeError, ValueError, KeyError):
            raise ValueError(f"{path}: the state of its batch generator is damaged") from None


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint ``train --checkpoint`` wrote (which a new run may overwrite)."""
    try:
        load_checkpoint(path)
    except ValueError:
        return False
    return True
