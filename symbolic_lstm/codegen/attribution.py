"""Where a refused module first goes wrong: its statements run one by one beside the judge's values.

When the smoke run finds a module's forward pass or gradients wrong, the gradients alone say only where the
error comes *out* (every gradient downstream of it is wrong too).  This module finds where it goes *in*: it runs
the module's own ``forward`` and ``backward`` on a small problem under a line tracer, and after every printed
statement compares each variable the statement changed that names a quantity of the derivation — a node ``v``
(v<t>), its δ ``delta_v`` (∂Error/∂v<t>) or a carry ``d<s>_next`` (∂Error/∂s<t-1> through step t) — with the
judge's value of that quantity: the interpreter's forward values and its complex-step derivative with respect to
every node at every step (:meth:`symbolic_lstm.check.complex_step.ComplexStep.node_gradients`), which share nothing
with the printed code.  The first statement, in the order the module runs them, whose result differs is where the
error enters: everything it read agreed.

A statement is one line or a run of lines the backend prints for one stage
(:meth:`~symbolic_lstm.codegen.backend.Backend.statements`); the tracer finds them in the module's text.  JAX
modules run with ``jax.disable_jit()`` so that their scan bodies run as Python with values, not tracers.
"""

from __future__ import annotations

import ast
import contextlib
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType, ModuleType
from typing import Any

import numpy as np

from ..check.complex_step import ComplexStep
from ..check.gradcheck import draw_inputs, further_widths
from ..engine.cell import Cell
from .backend import Backend, Statement

#: A statement's value is wrong when its relative difference from the judge's exceeds this (the problem is small
#: and benign: a right statement agrees to ~1e-14).
TOLERANCE = 1e-8
#: (T, B, n_x, n_a) of the attribution problem.
SHAPE = (3, 2, 3, 4)


@dataclass(frozen=True)
class Difference:
    """The first statement whose result differs from the judge's."""

    statements: tuple[tuple[int, str], ...]  # (line in the module's text, 1-based; first line as printed) of each
    # statement that wrote the value in that step, in the order they ran
    quantity: str  # what the variable holds, in the article's notation: "n<t>", "δn<t>", "δc<t-1>"
    step: int  # 1-based
    steps: int
    error: float

    def __str__(self) -> str:
        lines = " and ".join(f"line {line}: {code!r}" for line, code in self.statements)
        return (
            f"the first value that differs from the cell's own is {self.quantity} at step {self.step} of "
            f"{self.steps}, computed by {lines} (relative difference {self.error:.1e})"
        )


def first_difference(cell: Cell, module: ModuleType, path: str, text: str, backend: Backend) -> Difference | None:
    """Run ``module`` (``backend``'s, imported from ``path``, whose text is ``text``) under the tracer, its lines run
    one by one (:meth:`~.backend.Backend.line_by_line`): the first statement whose
    result differs from the judge's, or None (the error enters outside the per-step statements, or the module
    does not run)."""
    blocks = _blocks(text, backend.statements(cell))
    if not blocks:
        return None
    T, B, n_x, n_a = SHAPE
    if cell.square:
        n_x = n_a
    rng = np.random.default_rng(7)
    p = {
        name: cell.vector_init.get(name, 0.0) + rng.uniform(-0.5, 0.5, size=shape)
        for name, shape in cell.param_shapes(n_x, n_a, further_widths(cell, n_x, n_a)).items()
    }
    xs = draw_inputs(cell, T, B, n_x, n_a, rng)
    x = xs[cell.inputs[0]]
    init = {f"{s}0": 0.5 * rng.normal(size=(B, n_a)) for s in cell.states}
    y = rng.normal(size=(T, B, n_a))
    judge = ComplexStep(cell)
    with np.errstate(all="ignore"):
        forward = judge.reference.run(xs, p, init)[0]
        deltas = judge.node_gradients({**p, **xs, **init}, y, "many-to-many", {})
    if not all(np.isfinite(v).all() for env in forward for v in env.values()):
        return None
    tracer = _Tracer(path, blocks, _phases(text), _watched(cell), text.splitlines())
    try:
        with backend.line_by_line(), tracer.running():
            out = module.forward(x, p, **init, **{i: xs[i] for i in cell.inputs[1:]})
            _, da = module.mse_loss(out[0], y)
            module.backward(da, out[-1])
    except Exception:  # the module does not even run here: the caller's message says enough
        return None
    # a variable may be built by several statements in one step (δa<t-1>: an elementwise branch, then the products
    # back): it is judged once per step, at its last write, and the statements that wrote it in that step named
    writes: dict[tuple[str, int, str], list[tuple[int, _Block, Any]]] = {}
    for order, (block, phase, name, count, value) in enumerate(tracer.results):
        if tracer.runs[block] != T:  # not a per-step line (an initialisation before the loop, say)
            continue
        t = count if phase == "forward" else T - 1 - count
        writes.setdefault((phase, t, name), []).append((order, block, value))
    # a value that vanishes (δm<T>: nothing reads the stabiliser after the last step) is the round-off of the terms
    # that cancel in it on both sides: compared on the scale of the step's values, not its own
    scale = {
        (phase, t): max(
            float(np.max(np.abs(v), initial=0.0)) for v in (forward if phase == "forward" else deltas)[t].values()
        )
        for phase in ("forward", "backward")
        for t in range(T)
    }
    for (phase, t, name), found in sorted(writes.items(), key=lambda kv: kv[1][-1][0]):
        quantity, want = _judged(cell, name, phase, forward[t], deltas[t])
        if want is None:
            continue
        error = _relative(np.asarray(found[-1][2], dtype=np.float64), want, scale[(phase, t)])
        if error > TOLERANCE:
            blocks = list(dict.fromkeys(block for _, block, _ in found))
            return Difference(tuple((b.line, b.code) for b in blocks), quantity, t + 1, T, error)
    return None


@dataclass(frozen=True)
class _Block:
    line: int  # first line, 1-based
    code: str
    statement: bool = True  # printed from a stage; False: a line of the template's own


def _strip(line: str) -> str:
    return line.split("  # ", 1)[0].strip()


def _blocks(text: str, statements: list[Statement]) -> dict[int, _Block]:
    """Every module line that belongs to a statement, mapped to its statement (runs of statements printed for one
    stage are one statement), found as contiguous runs of the module's lines."""
    runs: list[list[str]] = []
    last = None
    for st in statements:
        if runs and st.stage == last:
            runs[-1].append(st.code)
        else:
            runs.append([st.code])
        last = st.stage
    lines = [_strip(ln) for ln in text.splitlines()]
    out: dict[int, _Block] = {}

    def place(part: list[str]) -> bool:
        n, found = len(part), False
        for i in range(len(lines) - n + 1):
            if lines[i : i + n] == part and not any(j in out for j in range(i + 1, i + n + 1)):
                block = _Block(i + 1, part[0])
                out.update({j: block for j in range(i + 1, i + n + 1)})
                found = True
        return found

    for run in runs:  # a run of one stage's statements printed apart (a forward and a δ line) splits in pieces
        i = 0
        while i < len(run):
            i = next((j for j in range(len(run), i, -1) if place(run[i:j])), i + 1)
    return out


def _computes(code: str) -> bool:
    """Whether a line assigns a value it computes (arithmetic, or a call into np / xp) rather than a view."""
    try:
        tree = ast.parse(code)
    except SyntaxError:  # a line of a longer statement (an if, a def): not an assignment
        return False
    if len(tree.body) != 1 or not isinstance(tree.body[0], ast.Assign):
        return False
    skip = {id(n) for node in ast.walk(tree) if isinstance(node, ast.Subscript) for n in ast.walk(node.slice)}
    for node in ast.walk(tree.body[0].value):
        if id(node) in skip:
            continue
        if isinstance(node, ast.BinOp | ast.UnaryOp):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            if isinstance(node.func.value, ast.Name) and node.func.value.id in ("np", "xp"):
                return True
    return False


def _phases(text: str) -> dict[int, str]:
    """Each line of a top-level function whose name says forward or backward, mapped to that phase."""
    out: dict[int, str] = {}
    for node in ast.parse(text).body:
        if isinstance(node, ast.FunctionDef):
            phase = "backward" if "backward" in node.name else "forward" if "forward" in node.name else None
            if phase:
                out.update({ln: phase for ln in range(node.lineno, (node.end_lineno or node.lineno) + 1)})
    return out


def _watched(cell: Cell) -> set[str]:
    nodes = [st.name for st in cell.stages]
    return {*nodes, *(f"delta_{v}" for v in (*nodes, *cell.leaves)), *(f"d{s}_next" for s in cell.states)}


def _judged(cell: Cell, name: str, phase: str, values: dict, deltas: dict) -> tuple[str, np.ndarray | None]:
    """What the variable ``name`` holds after a statement of ``phase``, and the judge's value of it."""
    if phase == "forward":
        return f"{name}<t>", values.get(name) if name in (st.name for st in cell.stages) else None
    if name.startswith("delta_") and name[len("delta_") :] in deltas:
        return f"δ{name[len('delta_') :]}<t>", deltas[name[len("delta_") :]]
    for s in cell.states:
        if name == f"d{s}_next":
            return f"δ{s}<t-1> (through step t)", deltas[f"{s}_prev"]
    return name, None


def _relative(value: np.ndarray, want: np.ndarray, step_scale: float) -> float:
    """The largest relative difference, entries compared on the scale of the value (1e-6 of its largest entry)
    or of the step (1e-12 of its largest value), whichever is larger."""
    try:
        value, want = np.broadcast_arrays(value, np.asarray(want, dtype=np.float64))
    except ValueError:
        return float("inf")
    if not np.isfinite(value).all():
        return float("inf")
    floor = max(1e-6 * float(np.max(np.abs(want), initial=0.0)), 1e-12 * step_scale, np.finfo(np.float64).tiny)
    return float(np.max(np.abs(value - want) / np.maximum(np.abs(value) + np.abs(want), floor), initial=0.0))


class _Tracer:
    """Records, after every run of a statement's lines, the watched variables it changed (copies).

    A line the template wrote itself (no stage's statement) counts where it changes a watched array in place
    (``np.multiply(…, out=dc_next)``) or binds it to a value it computes (``dc_next = Gamma_f*delta_c``), not where
    it binds a name to a buffer (``c = _c_seq[t + 1]``), which only names where the next statement will write.
    """

    def __init__(
        self, path: str, blocks: dict[int, _Block], phases: dict[int, str], watched: set[str], lines: list[str]
    ) -> None:
        self.path = path
        self.blocks = blocks
        self.phases = phases
        self.watched = watched
        self.lines = lines
        self.results: list[tuple[_Block, str, str, int, Any]] = []
        self.counts: dict[tuple[_Block, str], int] = {}
        self.runs: dict[_Block, int] = {}
        self.open: dict[int, tuple[_Block, dict[str, tuple[int, np.ndarray]]]] = {}  # frame id → running block

    def _snapshot(self, frame: FrameType) -> dict[str, tuple[int, np.ndarray]]:
        out = {}
        for name, value in frame.f_locals.items():
            if name in self.watched:
                with contextlib.suppress(Exception):
                    out[name] = (id(value), np.array(value, dtype=np.float64))
        return out

    def _block(self, line: int) -> _Block | None:
        if line in self.blocks:
            return self.blocks[line]
        if line not in self.phases or not 0 < line <= len(self.lines):
            return None
        code = _strip(self.lines[line - 1])
        return self.blocks.setdefault(line, _Block(line, code, statement=_computes(code)))

    def _close(self, frame: FrameType) -> None:
        block, before = self.open.pop(id(frame))
        phase = self.phases.get(block.line)
        if phase is None:
            return
        self.runs[block] = self.runs.get(block, 0) + 1
        for name, (ident, value) in self._snapshot(frame).items():
            old_id, old = before.get(name, (None, None))
            if not block.statement and ident != old_id:
                continue
            if old is None or old.shape != value.shape or not np.array_equal(old, value, equal_nan=True):
                key = (block, name)
                count = self.counts.get(key, 0)
                self.counts[key] = count + 1
                self.results.append((block, phase, name, count, value))

    def _local(self, frame: FrameType, event: str, arg: object) -> Any:
        if event not in ("line", "return"):
            return self._local
        block = self._block(frame.f_lineno) if event == "line" else None
        current = self.open.get(id(frame))
        if current is not None and current[0] is not block:
            self._close(frame)
            current = None
        if block is not None and current is None:
            self.open[id(frame)] = (block, self._snapshot(frame))
        return self._local

    def _global(self, frame: FrameType, event: str, arg: object) -> Any:
        return self._local if frame.f_code.co_filename == self.path else None

    @contextlib.contextmanager
    def running(self) -> Iterator[None]:
        old = sys.gettrace()
        sys.settrace(self._global)
        try:
            yield
        finally:
            sys.settrace(old)
