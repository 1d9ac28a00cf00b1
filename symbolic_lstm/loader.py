"""Import generated kernel modules: only from the package's ``generated/`` folder or a folder the user names."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

from .paths import generated_dir


def available(directory: str | Path | None = None) -> list[str]:
    """Names of the generated modules in ``directory`` (default: the package's ``generated/``)."""
    folder = Path(directory) if directory is not None else generated_dir()
    return sorted(p.stem for p in folder.glob("*.py") if p.stem.isidentifier() and not p.stem.startswith("_"))


def load(name: str = "lstm", directory: str | Path | None = None) -> ModuleType:
    """Import the generated module ``<directory>/<name>.py`` and return it.

    Raises:
        ValueError: ``name`` is not an identifier, or no such generated module exists.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"module name must be a Python identifier such as 'lstm', got {name!r}")
    folder = Path(directory) if directory is not None else generated_dir()
    path = folder / f"{name}.py"
    if not path.is_file():
        raise ValueError(
            f"no generated module {name!r} in {folder} (found: {', '.join(available(folder)) or 'none'}); "
            f"run: symbolic-lstm generate --cell {name}" + (f" --out {folder}" if directory is not None else "")
        )
    spec = importlib.util.spec_from_file_location(f"symbolic_lstm.generated.{name}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
