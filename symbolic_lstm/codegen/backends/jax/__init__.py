"""The JAX backend: forward and backward each one ``lax.scan`` over the steps, compiled by XLA once per shape, the
compile time independent of T; see :mod:`.plan`.  Needs the ``[jax]`` extra."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator

from ...backend import ExpressionBackend


class JaxBackend(ExpressionBackend):
    name = "jax"
    suffix = "_jax"
    templates = "jax"
    trains = True
    tensors = "dlpack"
    keeps_dtype = True  # float32 in, float32 out; float64 computed in float64 (x64 on for the call)
    summary = "<cell>_jax.py, lax.scan loops compiled by XLA once per shape (needs jax)"
    imports = ("jax", "jaxlib")
    needs = "jax: pip install 'symbolic-lstm[jax]' (or pip install jax); the NumPy module needs nothing but NumPy"

    def line_by_line(self) -> contextlib.AbstractContextManager[None]:
        """Without ``jit``: the module's Python lines run as Python, not traced once into XLA."""
        if "jax" not in sys.modules:  # a JAX module that never ran has nothing compiled to turn off
            return contextlib.nullcontext()
        import jax

        return jax.disable_jit()

    @contextlib.contextmanager
    def importing(self) -> Iterator[None]:
        """A module of this backend cannot be smoke-run without JAX: say what to install."""
        try:
            import jax  # noqa: F401
        except ImportError:
            from ...lines import CodegenError

            raise CodegenError(f"the jax backend's modules import {self.needs}") from None
        yield
