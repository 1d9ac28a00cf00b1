"""Every n: the symbolic-size rules one cell's proof cites (:mod:`.rules`), decided or read from the cache.

:func:`obligations_of` names what a cell cites — each linear stage's rules (one proof per distinct rule), each
elementwise and mean operand pattern, the loss — and the stages whose kind has no symbolic-size rule, of which the
proof's last line then says that the width rests on the sizes checked; :func:`prove_sizes` decides them (or reads
the time each was proved from the cache) into a :class:`SizesReport`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

from ..engine.cell import Cell
from ..engine.derivation import StepDerivation
from .rules import LinearObligation, LossObligation, Rule, UnitObligation, pattern_of


def obligations_of(cell: Cell, derivation: StepDerivation) -> tuple[list[Rule], list[str]]:
    """The symbolic-size obligations ``cell``'s proof cites (each once), and its stages no rule covers (a kind
    with no symbolic-size rule: its every-n claim rests on the sizes checked)."""
    found: dict[str, Rule] = {}
    patterns: set[tuple[str, tuple[int, int, int]]] = set()
    uncovered: list[str] = []

    def add(ob: Rule) -> None:
        found.setdefault(ob.name + "\x00" + ob.key, ob)

    for st in cell.stages:
        rule = getattr(st, "rule", None)
        if rule == "linear":
            add(LinearObligation(derivation.rules[st.name], st))  # type: ignore[arg-type]  # each stage's own rules: one key if they agree
        elif rule in ("elementwise", "mean"):
            patterns.add((rule, pattern_of(cell, st)))  # type: ignore[arg-type]
        else:
            uncovered.append(f"{st.name} ({type(st).__name__}: no symbolic-size rule)")
    for rule, pattern in sorted(patterns):
        add(UnitObligation(rule, pattern))
    add(LossObligation())
    return list(found.values()), uncovered


# -- the cache, and the report --------------------------------------------------------------------------------


class Cache(Protocol):
    """Where decided obligations are remembered: ``get(key)`` the time one was proved (or None), ``put(key, …)``."""

    def get(self, key: str) -> str | None: ...

    def put(self, key: str, name: str, when: str) -> None: ...


@dataclass(frozen=True)
class SizeLine:
    """One symbolic-size obligation's verdict: ``cached`` the time it was proved before (None: decided now, in
    ``seconds``)."""

    name: str
    statement: str
    ok: bool
    differs: tuple[str, ...] = ()
    cached: str | None = None
    seconds: float = 0.0

    def __str__(self) -> str:
        mark = "✓" if self.ok else "✗"
        if not self.ok:
            how = f"differs: {', '.join(self.differs)}"
        elif self.cached:
            how = f"cached: proved {self.cached}"
        else:
            how = f"proved now ({self.seconds:.1f} s)"
        return f"{mark} {self.name} — {self.statement} — {how}"


class SizesReport(list):
    """The symbolic-size obligations of one cell's proof (a list of :class:`SizeLine`) and the stages they do not
    cover."""

    uncovered: list[str]

    def __init__(self, lines: Iterable[SizeLine] = (), uncovered: Iterable[str] = ()) -> None:
        super().__init__(lines)
        self.uncovered = list(uncovered)

    @property
    def ok(self) -> bool:
        return all(line.ok for line in self)

    def __str__(self) -> str:
        return "\n".join(map(str, self))

    def _repr_markdown_(self) -> str:
        """Jupyter: one line per rule, then which stages no rule covers."""
        rest = [f"* not covered: {', '.join(self.uncovered)}"] if self.uncovered else []
        return "\n".join([*(f"* {line}" for line in self), *rest])


def now() -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime())


def prove_sizes(cell: Cell, derivation: StepDerivation | None = None, cache: Cache | None = None) -> SizesReport:
    """Decide every symbolic-size obligation ``cell`` cites, or read it from ``cache`` (keyed by what the engine
    produced): a proved one is remembered there, a failed one never.  ``derivation``: the engine's for ``cell``
    (default: the one the lemma uses, of the cell with its exact stand-ins)."""
    if derivation is None:
        from .exact import for_proof
        from .obligations import derivation_of

        cell = for_proof(cell)
        derivation = derivation_of(cell)
    obligations, uncovered = obligations_of(cell, derivation)
    lines = []
    for ob in obligations:
        key = ob.key
        when = cache.get(key) if cache is not None else None
        if when is not None:
            lines.append(SizeLine(ob.name, ob.statement, True, cached=when))
            continue
        start = time.perf_counter()
        verdict = ob.decide()
        lines.append(SizeLine(ob.name, ob.statement, verdict.ok, verdict.differs, None, time.perf_counter() - start))
        if verdict.ok and cache is not None:
            cache.put(key, ob.name, now())
    return SizesReport(lines, uncovered)
