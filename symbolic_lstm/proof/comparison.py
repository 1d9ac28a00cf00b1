"""How every identity of a proof is decided, in a module of its own: the command line gathers its options into
one before any proof machinery is imported."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Comparison:
    """How every identity of a proof is decided: at ``points`` random rational points drawn from ``seed``, and
    with ``exact`` also expanded to 0 (slow) — what :func:`prove` and :func:`~.step.prove_step` take as keywords."""

    points: int = 3
    seed: int = 0
    exact: bool = False

    def keywords(self) -> dict[str, object]:
        return {"points": self.points, "seed": self.seed, "exact": self.exact}
