"""The symbolic proof that the engine's backward is the derivative of the unrolled Error.

* :mod:`.net` — both sides over a tiny unrolled net: ``sympy.diff`` of the Error, and BPTT driven by the engine;
* :mod:`.exact`, :mod:`.points` — identity decided exactly, at random rational points;
* :mod:`.obligations` — the obligations of one proof, decided in processes (:func:`prove`, :func:`prove_all`);
* :mod:`.step` — the one-step lemma and induction over time: a proof for every T.
"""

from __future__ import annotations

from .obligations import ProofLine, ProofReport, prove, prove_all

__all__ = ["ProofLine", "ProofReport", "prove", "prove_all"]
