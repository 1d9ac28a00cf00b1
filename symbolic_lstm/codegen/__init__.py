"""Code generation: a cell's derivation printed as a module, by one of the registered backends.

The way through, one module each (see the README's "How the pieces fit"):

* :mod:`.schedule` — backend-neutral plan: product groups by operand, buffers, statement order (plain data);
* :mod:`.lines` — what every backend shares: statements with their derivation step, comments in the
  article's notation, the Jinja2 environment, name checks, the module API;
* :mod:`.printer_numpy` — SymPy's NumPy printer with the few rules kernels need (backends subclass it;
  the judge prints nothing, with it or any other printer);
* :mod:`.backend` — what a backend is; :mod:`.backends` — every backend by name (``BACKENDS``);
* :mod:`.smoke` and :mod:`.pipeline` — render → smoke-run → atomic write;
* :mod:`.loader` and :mod:`.stale` — the modules written: found, read once and verified, judged fresh, loaded.
"""

from __future__ import annotations

from .lines import CodegenError

__all__ = ["CodegenError"]
