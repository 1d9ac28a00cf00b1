"""Checkpoints: ``.npz`` files holding every parameter, the optimiser's state, the epoch, the settings and the state
of the random generator that draws the batches, so a resumed run is the uninterrupted run, bit for bit.
Written atomically; read with ``allow_pickle=False``."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
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

        for name, low in (("window", 1), ("hidden", 1), ("epochs", 1), ("batch", 1), ("seed", 0)):
            whole(name, low)
        for name, high in LIMITS.items():
            if getattr(self, name) > high:
                raise ValueError(f"its setting {name} = {getattr(self, name)!r} is above {high}, the most train takes")
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


#: The most ``train`` takes of a setting (its options say the same): a checkpoint beyond is damaged.
LIMITS = {"window": 1000, "hidden": 4096}


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

    from ..runtime.files import write_atomic

    arrays = {f"p/{k}": v for k, v in params.items()} | {f"head/{k}": v for k, v in head.items()}
    arrays |= {f"opt/{k}": v for k, v in opt.state().items()}
    meta = {"config": asdict(config), "epoch": epoch, "rng": None if rng is None else rng.bit_generator.state}
    meta["digests"] = _digests(arrays, meta)
    arrays["meta"] = np.array(json.dumps(meta))
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_atomic(path, buf.getvalue())


def _array_digest(a: np.ndarray) -> str:
    """SHA-256 (first 16 hex digits) of an array's dtype, shape and bytes."""
    a = np.ascontiguousarray(a)
    return hashlib.sha256(f"{a.dtype.str}{a.shape}".encode() + a.tobytes()).hexdigest()[:16]


def _value_digest(value: object) -> str:
    """SHA-256 (first 16 hex digits) of a setting as JSON writes it (so 2 and 2.0, "2" and 2 differ)."""
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:16]


def _digests(arrays: dict[str, np.ndarray], meta: dict) -> dict[str, str]:
    """A digest for every field a checkpoint holds — each array, each setting, the epoch, the generator's
    state — so a field removed, retyped or with one bit flipped is named when the file is read."""
    out = {key: _array_digest(v) for key, v in arrays.items()}
    out |= {f"config/{k}": _value_digest(v) for k, v in meta["config"].items()}
    out |= {"epoch": _value_digest(meta["epoch"]), "rng": _value_digest(meta["rng"])}
    return out


def _check_digests(arrays: dict[str, np.ndarray], meta: dict) -> None:
    """ValueError naming the first field that is missing, extra, or not what was written (by its digest).
    A checkpoint without digests (written before they were kept, or by hand) is judged by its values alone."""
    recorded = meta.get("digests")
    if recorded is None:
        return
    if not isinstance(recorded, dict) or not all(isinstance(v, str) for v in recorded.values()):
        raise ValueError("its digests are damaged")
    config = meta.get("config")
    if not isinstance(config, dict):
        raise ValueError("its settings are damaged")
    now = _digests(arrays, meta)  # what this file's fields digest to now, as save_checkpoint computed them
    for key in sorted(set(recorded) | set(now)):
        what = "setting" if key.startswith("config/") else "field" if key in ("epoch", "rng") else "array"
        name = key.removeprefix("config/")
        if key not in now:
            raise ValueError(f"its {what} {name} is missing (it was written with the checkpoint)")
        if key not in recorded:
            raise ValueError(f"its {what} {name} was not written with the checkpoint")
        if now[key] != recorded[key]:
            raise ValueError(f"its {what} {name} is not what was written (its digest differs: a flipped bit, an edit)")


class CheckpointLockedError(ValueError):
    """Another run is writing the same checkpoint file (its lock names the process)."""


@contextmanager
def checkpoint_lock(path: str | Path) -> Iterator[list[Path]]:
    """Hold ``<path>.lock`` while a run writes ``path``: a second run with the same checkpoint is refused
    (CheckpointLockedError naming the process that holds it) instead of both writing and the last one winning.
    The lock is an OS file lock (``flock``), released even when the holder is killed; once it is held, the
    temporary files a killed writer left beside ``path`` are removed — yielded, so a caller can say so.
    Where there are no file locks (Windows), nothing is locked."""
    import errno
    import os
    import socket
    import stat
    import time

    from ..runtime.files import clean_temporaries, target

    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        yield clean_temporaries(path)
        return
    path = Path(path)
    real = target(path)
    lock = real.with_name(real.name + ".lock")
    flags = os.O_RDWR | os.O_CREAT | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_CLOEXEC", 0)
    for _attempt in range(100):
        try:  # never through a link: root would create or lock whatever it points to
            fd = os.open(lock, flags, 0o666)
        except OSError as e:
            if e.errno in (errno.ELOOP, getattr(errno, "EMLINK", errno.ELOOP)):
                raise CheckpointLockedError(
                    f"{lock} is a symbolic link, not the lock file a run makes; remove it (or choose another "
                    "checkpoint file)"
                ) from None
            raise
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            os.close(fd)
            raise CheckpointLockedError(f"{lock} is not a regular file; remove it (or choose another checkpoint file)")
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.read(fd, 200).decode("utf-8", "replace").strip() or "a process that wrote nothing yet"
            os.close(fd)
            raise CheckpointLockedError(
                f"{path} is being written by another run ({holder}); wait for it to end, or choose another "
                "checkpoint file"
            ) from None
        if _still_there(fd, lock):
            break
        # the run that held it ended and unlinked it between our open and our lock: the file we locked is no
        # longer the lock anyone else sees, so holding it would let a second writer in — take the one there now
        os.close(fd)
    else:
        raise CheckpointLockedError(f"{lock} keeps being replaced while this run takes it; is another run starting?")
    try:
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


#: The .npy header readers of the format versions ``np.savez`` writes.
HEADERS = {(1, 0): np.lib.format.read_array_header_1_0, (2, 0): np.lib.format.read_array_header_2_0}


def _read_npz(path: str | Path) -> dict[str, np.ndarray]:
    """Every array of the ``.npz`` archive at ``path``, each header checked against the bytes the archive
    really holds before anything is allocated (a header declaring 10¹¹ elements is damage, not a MemoryError).

    Raises:
        ValueError: not an .npz archive (a lone .npy renamed, a truncated file), or a damaged member.
        OSError: the file cannot be read.
    """
    import os
    import zipfile

    try:
        archive = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        with open(path, "rb") as f:
            lone = f.read(6) == b"\x93NUMPY"
        raise ValueError(
            "it holds a single array, not an .npz archive" if lone else "it is not an .npz archive"
        ) from None
    arrays = {}
    size = os.path.getsize(path)
    with archive:
        for info in archive.infolist():
            key = info.filename.removesuffix(".npy")
            try:
                # np.savez stores, never compresses: the array's bytes are in the file, so no member can hold
                # more than the file does (sizes in the zip directory are the writer's word, not the file's)
                if info.compress_type != zipfile.ZIP_STORED:
                    raise ValueError("it is compressed, and checkpoints are not")
                if info.file_size != info.compress_size or info.compress_size > size:
                    raise ValueError(f"its sizes ({info.file_size} bytes) do not fit a file of {size}")
                with archive.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    if version not in HEADERS:
                        raise ValueError(f"format version {version}, which checkpoints are not written in")
                    shape, _fortran, dtype = HEADERS[version](f, max_header_size=10_000)
                    if dtype.hasobject:
                        raise ValueError("it holds Python objects")
                    declared = int(np.prod(shape, dtype=object)) * dtype.itemsize
                    if declared > info.file_size - f.tell():
                        raise ValueError(f"its header declares {declared} bytes of {info.file_size}")
                    arrays[key] = np.lib.format.read_array(archive.open(info), allow_pickle=False)
            except (ValueError, EOFError, OSError, zipfile.BadZipFile, MemoryError) as e:
                why = str(e) if isinstance(e, ValueError) else f"{type(e).__name__}: {e}"
                raise ValueError(f"its array {key!r} is damaged ({why})") from None
    return arrays


def _still_there(fd: int, lock: Path) -> bool:
    """Whether the open file ``fd`` is still the file named ``lock`` (not one unlinked since it was opened)."""
    import os

    try:
        named = os.stat(lock, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (named.st_dev, named.st_ino)


def load_checkpoint(path: str | Path) -> tuple[Config, Start]:
    """The settings and the starting point stored in a checkpoint; ValueError naming what is wrong if the file
    is not one (not an .npz archive, or one without the settings ``train --checkpoint`` writes) or no run
    could have written it (a setting, the epoch, the optimiser's state or the batch generator's damaged)."""
    try:
        arrays = _read_npz(path)
    except (OSError, ValueError) as e:
        why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ValueError(
            f"{path} is not a symbolic-lstm checkpoint ({why}); train --checkpoint FILE.npz writes one"
        ) from None
    try:
        meta = json.loads(str(arrays.pop("meta")))
        settings, epoch, rng = meta["config"], meta["epoch"], meta["rng"]
        if not isinstance(settings, dict):
            raise TypeError("settings")
    except (KeyError, ValueError, TypeError, AttributeError) as e:
        raise ValueError(
            f"{path} is an .npz archive but not a symbolic-lstm checkpoint (its settings are missing or damaged: "
            f"{type(e).__name__}{' ' + str(e) if isinstance(e, KeyError) else ''})"
        ) from None
    try:
        unknown = sorted(set(settings) - {f.name for f in fields(Config)})
        if unknown:
            raise ValueError(f"its setting {unknown[0]} is not one train keeps")
        config = Config(**settings)
        config.check()
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch <= config.epochs:
            raise ValueError(f"its epoch {epoch!r} is not a whole number from 0 to its {config.epochs} epochs")
        _check_rng(rng)
        _check_digests(arrays, meta)
    except ValueError as e:
        raise ValueError(f"{path} is a damaged symbolic-lstm checkpoint: {e}") from None
    pick = {
        pre: {k[len(pre) + 1 :]: v for k, v in arrays.items() if k.startswith(pre + "/")}
        for pre in ("p", "head", "opt")
    }
    return config, (epoch, pick["p"], pick["head"], pick["opt"], rng)


def _check_rng(rng: object) -> None:
    """ValueError naming the field of the batch generator's state (``meta["rng"]``) no generator could have:
    each is set and read back, so a value NumPy would round or wrap (1.5, −1, 2²⁰⁰) is refused, not taken."""
    if not isinstance(rng, dict):
        raise ValueError(f"the state of its batch generator (rng) is {type(rng).__name__}, not a generator's state")
    if rng.get("bit_generator") != "PCG64":
        raise ValueError(f"its batch generator rng.bit_generator = {rng.get('bit_generator')!r} is not 'PCG64'")
    inner = rng.get("state")
    if not isinstance(inner, dict):
        raise ValueError("its batch generator's rng.state is missing or damaged")
    fields = {"state.state": (inner.get("state"), 2**128), "state.inc": (inner.get("inc"), 2**128)}
    fields |= {"has_uint32": (rng.get("has_uint32"), 2), "uinteger": (rng.get("uinteger"), 2**32)}
    for name, (value, end) in fields.items():
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value < end:
            raise ValueError(f"its batch generator's rng.{name} = {value!r} is not a whole number in [0, {end})")
    if inner["inc"] % 2 == 0:
        raise ValueError(f"its batch generator's rng.state.inc = {inner['inc']} is even; a PCG64 increment is odd")
    bits = np.random.PCG64()
    try:
        bits.state = rng
    except (TypeError, ValueError, KeyError, OverflowError) as e:
        raise ValueError(f"the state of its batch generator (rng) is damaged ({e})") from None
    if bits.state != rng:  # an increment NumPy makes odd, a field it ignores
        raise ValueError("the state of its batch generator (rng) is not one a generator can be in")


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
    _check_optimiser(path, config, state, names)
    if rng is not None:  # None: a start made in code, whose batches are drawn afresh from the seed
        try:
            _check_rng(rng)
        except ValueError as e:
            raise ValueError(f"{path}: {e}") from None


def _check_optimiser(path: str | Path, config: Config, state: dict, names: dict[str, tuple[int, ...]]) -> None:
    """ValueError naming the optimiser field (``opt/t``, ``opt/m/…``, ``opt/v/…``) that is missing, extra or
    damaged: a resumed run must continue with the very moments and step count it stopped with."""
    if "t" not in state:
        raise ValueError(f"{path}: the optimiser's step count opt/t is missing")
    t = state["t"]
    if t.shape != () or t.dtype.kind not in "iu" or int(t) < 0:
        raise ValueError(f"{path}: the optimiser's step count opt/t is damaged ({t!r})")
    moments = config.optimizer == "adam" and int(t) > 0  # Adam keeps m and v from its first step on; SGD none
    want = {f"{m}/{n}" for m in ("m", "v") for n in names} if moments else set()
    have = set(state) - {"t"}
    if want - have:
        raise ValueError(
            f"{path}: the optimiser's state is missing {', '.join('opt/' + k for k in sorted(want - have))} "
            f"({config.optimizer} after {int(t)} steps keeps both moments of every parameter)"
        )
    if have - want:
        raise ValueError(
            f"{path}: the optimiser's state holds {', '.join('opt/' + k for k in sorted(have - want))}, which "
            f"{config.optimizer} after {int(t)} steps does not keep"
        )
    for key in sorted(want):
        v, name = state[key], key.partition("/")[2]
        if v.dtype != np.float64 or v.shape != names[name] or not np.isfinite(v).all():
            raise ValueError(
                f"{path}: the optimiser's state opt/{key} is damaged ({v.dtype}, shape {v.shape}; expected "
                f"finite float64 of shape {names[name]})"
            )
        if key.startswith("v/") and (v < 0).any():
            raise ValueError(f"{path}: the optimiser's state opt/{key} holds negative second moments")


def is_checkpoint(path: str | Path) -> bool:
    """Whether ``path`` is a checkpoint ``train --checkpoint`` wrote (which a new run may overwrite)."""
    try:
        load_checkpoint(path)
    except ValueError:
        return False
    return True
