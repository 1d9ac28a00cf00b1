"""The array-API backend: kernels written against the Python array API standard, for whatever arrays they are
given (NumPy, PyTorch, CuPy, JAX) through ``array_api_compat.array_namespace``; see :mod:`.plan`."""

from __future__ import annotations

import contextlib
import sys
import types
from collections.abc import Iterator

from ...backend import ExpressionBackend


class ArrayApiBackend(ExpressionBackend):
    name = "array-api"
    summary = "<cell>_array_api.py, runs on NumPy, PyTorch, CuPy, JAX arrays (needs array-api-compat)"
    suffix = "_array_api"
    templates = "array_api"
    imports = ("array_api_compat",)
    needs = (
        "array-api-compat: pip install 'symbolic-lstm[array-api]' (or pip install array-api-compat); "
        "the NumPy module needs nothing but NumPy"
    )

    @contextlib.contextmanager
    def importing(self) -> Iterator[None]:
        """Where array-api-compat is not installed, stand NumPy (≥ 2, which implements the array API standard)
        in for it while the smoke run imports the module, so that one can be checked all the same."""
        import numpy as np

        try:
            import array_api_compat  # noqa: F401
        except ImportError:
            if int(np.__version__.split(".")[0]) < 2:  # pragma: no cover - NumPy 1.x lacks the standard's names
                yield
                return
            shim = types.ModuleType("array_api_compat")
            shim.array_namespace = lambda *arrays: np  # type: ignore[attr-defined]
            shim.device = lambda x: "cpu"  # type: ignore[attr-defined]
            sys.modules["array_api_compat"] = shim
            try:
                yield
            finally:
                sys.modules.pop("array_api_compat", None)
        else:
            yield
