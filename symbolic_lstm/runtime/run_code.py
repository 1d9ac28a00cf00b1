"""Run code from bytes already read and verified: never import by path.

:func:`symbolic_lstm.runtime.trust.read_code` reads a file once and checks it on its descriptors; :func:`run_module`
compiles and runs exactly those bytes as a fresh module.  The text is decoded as UTF-8 and compiled as text,
so no encoding declaration inside it is ever obeyed, and it is registered with :mod:`linecache` under the
module's file name, so a traceback shows the lines that ran (not whatever the path holds now).
:func:`source_of` gives the text back — what ran — to whoever shows or ships the module's source.
"""

from __future__ import annotations

import linecache
import sys
from pathlib import Path
from types import ModuleType

#: The attribute a module run here keeps its verified text in.
SOURCE = "__symbolic_lstm_source__"


def run_module(data: bytes | str, name: str, filename: str | Path, *, register: bool = False) -> ModuleType:
    """A new module ``name`` made by running ``data`` (its ``__file__`` is ``filename``, for tracebacks).

    ``register``: the module is in ``sys.modules`` while it runs (dataclasses and pickling look it up), and
    taken out after.

    Raises:
        ValueError: ``data`` is not UTF-8 text (no module symbolic-lstm writes, nor a cell file, is anything else).
        SyntaxError and whatever the code itself raises.
    """
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"{filename} is not UTF-8 text (byte {e.start}): not Python symbolic-lstm runs") from None
    else:
        text = data
    filename = str(filename)
    code = compile(text, filename, "exec", dont_inherit=True)
    module = ModuleType(name)
    module.__file__ = filename
    setattr(module, SOURCE, text)
    linecache.cache[filename] = (len(text), None, text.splitlines(keepends=True), filename)
    if register:
        sys.modules[name] = module
    try:
        exec(code, module.__dict__)
    finally:
        if register:
            sys.modules.pop(name, None)
    return module


def source_of(module: ModuleType) -> str:
    """The text ``module`` was run from: the verified bytes :func:`run_module` ran, or (for a module Python
    imported itself) its file's text."""
    text = getattr(module, SOURCE, None)
    if isinstance(text, str):
        return text
    file = getattr(module, "__file__", None)
    if not file or not Path(file).is_file():
        raise TypeError(f"expected a generated kernel module with a source, got {module!r}")
    return Path(file).read_text(encoding="utf-8")
