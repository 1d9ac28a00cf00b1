"""The ``symbolic-lstm`` command: derive (LaTeX), prove (symbolic), generate (kernels), check (numeric), graph,
train — one module per group of commands, sharing :mod:`.common`.

Usage errors (unknown target, cell, option value) exit with code 2 and list the valid choices; a failed
proof or gradient check exits with 1.
"""

from __future__ import annotations

from . import documents, kernels, proving, training  # noqa: F401  (each registers its commands on main)
from .common import main
from .proving import ProofProgress

__all__ = ["ProofProgress", "main"]
