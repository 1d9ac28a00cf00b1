"""What a worker runs: the kernels sent as source, one shard's forward and backward, the pairwise sums."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..runtime.run_code import run_module, source_of
from ..train.problems import Gradient, forward

LOSSES = ("softmax_ce", "linear_mse")


# ---- the kernels, sent as source --------------------------------------------------------------------------

_LOADED: dict[str, ModuleType] = {}


@dataclass(frozen=True)
class KernelSource:
    """A generated module as text: what a worker needs to run the cell's kernels (NumPy's, or another backend's
    when the workers can import what that backend's modules import: :func:`missing_imports`)."""

    name: str
    digest: str
    source: str

    @classmethod
    def of(cls, module: ModuleType) -> KernelSource:
        """The source of a generated module (a ``load``-ed or imported one, or one a worker built from text)."""
        if isinstance(getattr(module, "__kernel_source__", None), KernelSource):
            return module.__kernel_source__
        if not hasattr(module, "backward"):
            raise TypeError(f"expected a generated kernel module with a source file, got {module!r}")
        text = source_of(module)  # the verified text that ran, never the path read again
        name = getattr(module, "CELL", Path(str(getattr(module, "__file__", "kernels"))).stem)
        return cls(name, hashlib.sha256(text.encode()).hexdigest()[:16], text)

    def module(self) -> ModuleType:
        """The module, built from the text once per process and kept (keyed by the text's digest)."""
        found = _LOADED.get(self.digest)
        if found is None:
            # the text the client verified and sent: run as every module is (run_code), never from a path
            found = run_module(
                self.source, f"symbolic_lstm_kernels_{self.name}_{self.digest}",
                f"<symbolic-lstm kernels: {self.name} {self.digest}>",
            )  # fmt: skip
            found.__kernel_source__ = self  # type: ignore[attr-defined]
            _LOADED[self.digest] = found
        return found


# ---- what a worker runs -----------------------------------------------------------------------------------


def identity(value: Any) -> Any:
    return value


def missing_imports(names: tuple[str, ...]) -> list[str]:
    """Which of the modules ``names`` this process cannot import (run on every worker before any work)."""
    import importlib.util

    return [name for name in names if importlib.util.find_spec(name) is None]


def shard_gradient(kernels: KernelSource, data: Any, weights: tuple[dict, dict], work: Callable) -> Gradient:
    """One shard's forward and backward: ``work(kernels, data, params, head)``; the parameters' gradients
    only (those of the inputs and initial states are per sequence: nothing to sum, nothing to send back), as
    NumPy arrays whatever the module computes in (a JAX module's arrays are turned back here)."""
    params, head = weights
    E, g, gh = work(kernels.module(), data, params, head)
    return float(E), {n: np.asarray(g[n]) for n in params}, {n: np.asarray(v) for n, v in gh.items()}


def add_gradients(a: Gradient, b: Gradient) -> Gradient:
    """The sum of two shards' (Error, cell gradients, head gradients); new arrays, inputs untouched."""
    return a[0] + b[0], {n: a[1][n] + b[1][n] for n in a[1]}, {n: a[2][n] + b[2][n] for n in a[2]}


@dataclass(frozen=True)
class HeadLoss:
    """A shard's work for batches of (x, y) arrays: the cell, then one of the module's heads, then BPTT.

    ``loss`` is "softmax_ce" or "linear_mse" (the module's ``<loss>_loss(a, y, head, mode)``), or a function
    ``loss(module, a, y, head) -> (Error, ∂Error/∂a, head gradients)`` (sent to the workers by cloudpickle).
    """

    loss: str | Callable = "softmax_ce"
    mode: str = "many-to-many"

    def __post_init__(self) -> None:
        if isinstance(self.loss, str) and self.loss not in LOSSES:
            raise ValueError(f"loss must be one of {', '.join(LOSSES)} or a function, got {self.loss!r}")
        if not isinstance(self.loss, str) and not callable(self.loss):
            raise TypeError(f"loss must be a name or a function, got {type(self.loss).__name__}")
        if self.mode not in ("many-to-many", "many-to-one"):
            raise ValueError(f"mode must be 'many-to-many' or 'many-to-one', got {self.mode!r}")

    @property
    def y_axis(self) -> int:
        """The batch axis of the targets: (T, B, …) scores every step, (B, …) only the last."""
        return 1 if self.mode == "many-to-many" else 0

    def __call__(self, k: ModuleType, data: tuple, params: dict, head: dict) -> Gradient:
        x, y = data
        out = forward(k, x, params)  # outputs not finite: NonFiniteOutputsError, a divergence the loop names
        if isinstance(self.loss, str):
            E, da, gh = getattr(k, f"{self.loss}_loss")(out[0], y, head, self.mode)
        else:
            E, da, gh = self.loss(k, out[0], y, head)
        return float(E), k.backward(da, out[-1]), gh


@dataclass(frozen=True)
class Select:
    """A shard's work on a problem a worker holds whole: the sequences ``selection`` of it."""

    selection: np.ndarray

    def __call__(self, k: ModuleType, problem: Any, params: dict, head: dict) -> Gradient:
        return problem.gradients(k, params, head, self.selection)


@dataclass(frozen=True)
class Idle:
    """A shard that does no work: zero gradients shaped like the parameters.  A step of these costs what
    every step costs beyond its compute (bench/distributed.py times it)."""

    def __call__(self, k: ModuleType, data: Any, params: dict, head: dict) -> Gradient:
        return 0.0, {n: np.zeros_like(v) for n, v in params.items()}, {n: np.zeros_like(v) for n, v in head.items()}
