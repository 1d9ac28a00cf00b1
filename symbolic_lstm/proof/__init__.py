"""The symbolic proof that the engine's backward is the derivative of the unrolled Error.

* :mod:`.net` — both sides over a tiny unrolled net: ``sympy.diff`` of the Error, and BPTT driven by the engine;
* :mod:`.exact`, :mod:`.points` — identity decided exactly, at random rational points;
* :mod:`.obligations` — the obligations of one proof, decided in processes (:func:`prove`, :func:`prove_all`);
* :mod:`.comparison` — how each identity is decided (points, seed, exact);
* :mod:`.step` — the one-step lemma and induction over time: a proof for every T;
* :mod:`.rules`, :mod:`.sizes`, :mod:`.indices` — each stage kind's rule at symbolic sizes: a proof for every n;
* :mod:`.cache` — the rules proved before (JSON, keyed by a hash of the rule).
"""

from __future__ import annotations

import importlib

__all__ = ["ProofLine", "ProofReport", "prove", "prove_all"]


def __getattr__(name: str) -> object:
    """The proof's public names, imported on first use: ``from symbolic_lstm.proof import prove`` loads the proof,
    importing :mod:`.comparison` (the command line does, at start-up) loads nothing else."""
    if name in __all__:
        return getattr(importlib.import_module(".obligations", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
