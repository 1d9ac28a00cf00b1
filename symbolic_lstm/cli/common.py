"""What every ``symbolic-lstm`` command shares: the group, the options several commands take (--cell, --backend,
--seed, --loss, Dask's), options gathered into the small dataclasses a command takes, the kernels of a cell,
and writing outputs (atomically, never over a file that is not ours)."""

from __future__ import annotations

import dataclasses
import functools
import math
import os
import stat
import warnings
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import click

from ..codegen.backends import BACKENDS, DEFAULT, Backend
from ..engine.cell import Cell
from ..engine.cells import BUILTIN, get_cell
from ..engine.derivation import LOSS_MODES
from ..runtime.files import write_atomic
from ..runtime.version import __version__


class CellParam(click.ParamType):
    """A built-in cell name or ``path/to/file.py:NAME``."""

    name = "cell"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Cell:
        if isinstance(value, Cell):
            return value
        try:
            return get_cell(str(value))
        except ValueError as e:
            self.fail(str(e), param, ctx)


class PositiveNumber(click.FloatRange):
    """A finite number above 0 (click's FloatRange lets ``nan`` and ``inf`` through: a learning rate or a
    tolerance of either is no setting a run can keep)."""

    name = "positive number"

    def __init__(self) -> None:
        super().__init__(min=0, min_open=True)

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> float:
        number = super().convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value!r} is not a finite number; expected one above 0", param, ctx)
        return number


class FilePath(click.Path):
    """click's Path, refusing a NUL byte as a usage error (the OS cannot take one: ``os.stat`` raises a
    ValueError click does not catch)."""

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> object:
        if isinstance(value, (str, bytes)) and ("\x00" in value if isinstance(value, str) else b"\x00" in value):
            self.fail(f"{value!r} holds a NUL byte, which no file name can", param, ctx)
        return super().convert(value, param, ctx)


#: A seed of NumPy's generators: a whole number from 0 (NumPy refuses negative seeds).
SEED = click.IntRange(min=0)


def same_file(a: str | os.PathLike[str], b: str | os.PathLike[str]) -> bool:
    """Whether two paths name one file, however spelled (``..``, symbolic links, hard links), existing or not."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:  # one does not exist yet: the names are compared
        pass
    return os.path.realpath(a) == os.path.realpath(b)


CELL = click.option(
    "--cell",
    type=CellParam(),
    default="lstm",
    show_default=True,
    help=f"Cell to work on: built-in {', '.join(sorted(BUILTIN))}, or path/to/file.py:NAME.",
)


def backend_option(help: str, offered: Callable[[Backend], bool] = lambda b: True) -> Callable[[Callable], Callable]:
    """--backend NAME, among the backends ``offered``: the command is given the :class:`Backend` itself (the name
    becomes the object here, at the edge; nothing past the command line compares backend names)."""

    def to_backend(ctx: click.Context, param: click.Parameter, value: str) -> Backend:
        return BACKENDS[value]

    return click.option(
        "--backend",
        type=click.Choice([name for name, b in BACKENDS.items() if offered(b)]),
        default=DEFAULT,
        show_default=True,
        callback=to_backend,
        help=help,
    )


def seed_option(help: str | None = None) -> Callable[[Callable], Callable]:
    """--seed N: a seed of NumPy's generators (0 by default)."""
    return click.option("--seed", type=SEED, default=0, show_default=True, help=help)


def loss_option(*more: str, default: str = "many-to-many") -> Callable[[Callable], Callable]:
    """--loss: many-to-many or many-to-one (and ``more`` choices: prove's ``both``)."""
    return click.option("--loss", type=click.Choice([*LOSS_MODES, *more]), default=default, show_default=True)


def gathered(cls: type, name: str) -> Callable[[Callable], Callable]:
    """Hand the command its options named like ``cls``'s fields as one ``cls`` (the argument ``name``), so a
    command with many options takes a few small dataclasses instead of a parameter each.  Put it right above the
    function (below the options it gathers)."""
    fields = [f.name for f in dataclasses.fields(cls)]

    def decorate(f: Callable) -> Callable:
        @functools.wraps(f)
        def command(*args: object, **kwargs: object) -> object:
            kwargs[name] = cls(**{n: kwargs.pop(n) for n in fields})
            return f(*args, **kwargs)

        return command

    return decorate


@dataclasses.dataclass(frozen=True)
class Dask:
    """Where the work runs: a local Dask cluster of ``workers`` processes, the scheduler at ``scheduler``, or
    neither (this process)."""

    workers: int | None
    scheduler: str | None

    def client(self) -> object | None:
        return dask_client(self.workers, self.scheduler)

    def where(self, client: object) -> str:
        return where(client, self.scheduler)


#: The most local worker processes --workers starts (each is a Python process; more is a typo, not a cluster).
MOST_WORKERS = 512


def dask_options(what: str) -> Callable[[Callable], Callable]:
    """--workers N / --scheduler ADDRESS: run ``what`` on Dask (the [distributed] extra); the command is given
    them as one :class:`Dask` (the argument ``dask``)."""

    def decorate(f: Callable) -> Callable:
        f = gathered(Dask, "dask")(f)
        f = click.option(
            "--scheduler",
            metavar="ADDRESS",
            default=None,
            help=f"{what} on the Dask cluster whose scheduler is at ADDRESS (tcp://HOST:PORT).",
        )(f)
        return click.option(
            "--workers",
            type=click.IntRange(min=1, max=MOST_WORKERS),
            default=None,
            metavar="N",
            help=f"{what} on a local Dask cluster of N worker processes (pip install -e '.[distributed]').",
        )(f)

    return decorate


def dask_client(workers: int | None, scheduler: str | None) -> object | None:
    """The Dask client --workers / --scheduler ask for (None for neither); a usage error naming the address
    when nothing answers there, or the extra to install."""
    if workers is None and scheduler is None:
        return None
    if workers is not None and scheduler is not None:
        raise click.UsageError("give --workers N (a local cluster) or --scheduler ADDRESS (an existing one), not both")
    try:
        from ..distributed import connect

        return connect(workers=workers, scheduler=scheduler)
    except ImportError:
        raise click.UsageError(
            f"{'--workers' if workers else '--scheduler'} needs Dask: pip install 'symbolic-lstm[distributed]'"
        ) from None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--scheduler" if scheduler else "--workers") from None


def where(client: object, scheduler: str | None) -> str:
    """How many workers a client has, and where: for the run's first lines."""
    from ..distributed import workers_of

    n = len(workers_of(client))
    where = f"the cluster at {scheduler}" if scheduler else "a local cluster"
    import importlib.util

    # without bokeh, Dask's dashboard page only says to install it
    link = getattr(client, "dashboard_link", None) if importlib.util.find_spec("bokeh") else None
    return f"{n} Dask worker{'s' if n != 1 else ''} ({where}" + (f"; dashboard {link})" if link else ")")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="symbolic-lstm")
def main() -> None:
    """Backpropagation through an LSTM, derived by the chain rule over its functional stages.

    Exit codes: 0 success; 1 a proof line or a gradient check failed, a stale module, or an output that could
    not be written at the end of a run; 2 a usage error; 3 check --stale found a module it cannot judge.
    """
    from ..runtime.threads import threads_for

    try:
        threads_for(1, 1, 1)  # SYMBOLIC_LSTM_THREADS, if set, must be a thread count: said before any work
    except ValueError as e:
        raise click.UsageError(str(e)) from None


def kernels_of(cell: Cell, directory: Path | None, backend: Backend | str = DEFAULT) -> ModuleType:
    """The cell's generated module (NumPy unless ``backend`` says): from ``directory``, the package (built-in
    cells) or, for a user cell, the user cache, where it is generated on first use (said on standard error)."""
    from ..codegen import CodegenError
    from ..codegen.loader import CacheRepairedWarning, cache_dir, module_for
    from ..runtime.trust import UntrustedPathError

    try:
        with warnings.catch_warnings(record=True) as said:
            warnings.simplefilter("always", CacheRepairedWarning)
            found = module_for(cell, directory, backend)
    except ModuleNotFoundError as e:  # the backend's modules import what is not installed (jax)
        raise click.UsageError(str(e)) from None
    except UntrustedPathError as e:
        raise click.UsageError(str(e)) from None
    except CodegenError as e:
        raise click.BadParameter(str(e), param_hint="--cell") from None
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--dir" if directory is not None else "--cell") from None
    except OSError as e:
        raise click.UsageError(
            f"cannot write the kernels of {cell.spec} into {cache_dir()}: {e.strerror}; "
            "set XDG_CACHE_HOME to a writable folder"
        ) from None
    for w in said:
        if issubclass(w.category, CacheRepairedWarning):
            click.echo(f"warning: {w.message}", err=True)
        else:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if found.generated and not said:
        click.echo(f"generated the kernels of {cell.spec} into {found.path} (first use, kept for next time)", err=True)
    return found.module


def emit_output(text: str | bytes, output: Path | None) -> None:
    """Write ``text`` (or a drawing's bytes) to ``output`` atomically, or to standard output."""
    if output is None:
        text = text.decode("utf-8") if isinstance(text, bytes) else text
        click.echo(text, nl=not text.endswith("\n"))
    else:
        if str(output) in ("", "."):
            raise click.BadParameter("expected a file name, got an empty one", param_hint="--output")
        try:
            write_atomic(output, text)
        except OSError as e:
            raise click.BadParameter(f"cannot write {output}: {e.strerror}", param_hint="--output") from None
        click.echo(f"wrote {output}", err=True)


def output_file(path: Path, option: str, force: bool, ours: Callable[[Path], bool], what: str) -> None:
    """Fail now, as a usage error, for an output file that cannot be written later or is someone else's."""
    if str(path) in ("", "."):
        raise click.BadParameter("expected a file name, got an empty one", param_hint=option)
    if path.is_dir():
        raise click.BadParameter(f"{path} is a folder; expected a file name", param_hint=option)
    folder = path.parent
    if not folder.is_dir():
        raise click.BadParameter(f"cannot write {path}: the folder {folder} does not exist", param_hint=option)
    if not os.access(folder, os.W_OK):
        raise click.BadParameter(f"cannot write {path}: the folder {folder} is not writable", param_hint=option)
    if path.exists() and not force and not path.stat().st_mode & stat.S_IWUSR:
        raise click.BadParameter(
            f"{path} is read-only (mode {stat.S_IMODE(path.stat().st_mode):04o}); use --force to replace it anyway, "
            "or choose another name",
            param_hint=option,
        )
    if path.exists() and not force and not ours(path):
        raise click.BadParameter(
            f"{path} exists and is not {what}; use --force to overwrite it, or choose another name", param_hint=option
        )
