"""Stage 4c: the computation graph as a picture (Graphviz DOT), drawn as the article draws it.

Functional stages are nodes (boxes for the linear sums W [..] + b, ellipses for elementwise stages),
forks are marked (a double outline and "fork" in the label: their backward branches are added), solid
arrows run forward, and dashed arrows run backward, each labelled with its local partial as the engine
derived it (∂c<t>/∂Γ_f<t> = c<t-1> …).  With ``unroll=T`` the step is drawn T times, the states carried
from each step into the next, and the Error of every scored step.
"""

from __future__ import annotations

import shutil
import subprocess
import unicodedata

import sympy as sp

from ..codegen.lines import CommentPrinter, stage_text, uni, uni_time
from ..engine.cell import Cell
from ..engine.derivation import LOSS_MODES, LossMode, derive
from ..engine.notation import ERROR, Partial, node

FORMATS = ("dot", "svg", "png")


#: What to install for pictures (SVG, PNG): said where one cannot be drawn.
INSTALL_HINT = (
    "Drawing the graph needs Graphviz's dot program, which is not on PATH "
    "(Debian/Ubuntu: apt install graphviz; macOS: brew install graphviz); here is its DOT text."
)


class GraphvizMissingError(RuntimeError):
    """Graphviz's ``dot`` program is needed to draw SVG or PNG and is not on PATH."""


def _text(expr: sp.Expr, shared: tuple[str, ...]) -> str:
    """A local partial as edge-label text: Γ_f<t>·(1 - Γ_f<t>), â<t> for a target; ``shared`` untimed."""

    def name(s: str) -> str:
        if s in shared:
            return s
        if s.endswith("_hat"):
            return f"{s[:-4]}\u0302<t>"
        return uni_time(s)

    text = CommentPrinter().doprint(expr.xreplace({s: sp.Symbol(name(s.name)) for s in expr.free_symbols}))
    return unicodedata.normalize("NFC", text)


def _quote(s: str) -> str:
    """A DOT string: quotes and backslashes escaped, line breaks as DOT's ``\\n``."""
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def graph_dot(cell: Cell, unroll: int | None = None, mode: LossMode = "many-to-many") -> str:
    """DOT text of one step of ``cell`` (``unroll=None``) or of ``unroll`` steps, for ``mode``'s Error."""
    return graph_with_legend(cell, unroll, mode, numbered=False)[0]


def graph_with_legend(
    cell: Cell, unroll: int | None = None, mode: LossMode = "many-to-many", *, numbered: bool = True
) -> tuple[str, list[str]]:
    """(DOT text, legend): as :func:`graph_dot`, but with ``numbered`` every backward branch is labelled by a
    number — (1), (2) … — and its local partial is the legend's entry of that number, so that no long label
    crosses the lines of a picture squeezed into a notebook's column."""
    if mode not in LOSS_MODES:
        raise ValueError(f"loss mode must be one of {', '.join(LOSS_MODES)}, got {mode!r}")
    if unroll is not None and (isinstance(unroll, bool) or not isinstance(unroll, int) or unroll < 1):
        raise ValueError(f"unroll must be a positive integer or None, got {unroll!r}")
    d = derive(cell)
    g = d.graph
    steps = [None] if unroll is None else list(range(1, unroll + 1))

    def when(t: int | None, off: int = 0) -> str:
        if t is None:
            return "t" if off == 0 else f"t{off:+d}"
        return str(t + off)

    def ident(name: str, t: int | None) -> str:
        return f"{name}@{when(t)}"

    def state_id(state: str, t: int | None, off: int) -> str:
        """The node holding ``state`` at step t+off: a stage output, or the initial / carried-in value."""
        if t is not None and t + off >= 1:
            return ident(state, t + off)
        return f"{state}@in" if t is None else f"{state}@0"

    legend: list[str] = []

    def partial(text: str) -> str:
        """A backward branch's label: the partial itself, or its number in the legend."""
        if not numbered:
            return text
        legend.append(text)
        return f"({len(legend)})"

    lines = [
        f"// Computation graph of cell {cell.name}, drawn by symbolic-lstm from the derivation engine.",
        "// Solid: forward stages.  Dashed: backward branches, labelled with their local partials.",
        f"digraph {_quote(cell.name)} {{",
        "  rankdir=LR;",
        *(["  nodesep=0.12;"] if numbered else []),
        '  node [fontname="Helvetica", fontsize=11' + (', margin="0.06,0.03"];' if numbered else "];"),
        '  edge [fontname="Helvetica", fontsize=9];',
    ]
    declared: set[str] = set()

    def declare(nid: str, label: str, **attrs: str) -> None:
        if nid in declared:
            return
        declared.add(nid)
        if numbered:  # a column-wide picture: a long right-hand side goes on two lines, the labels keep their size
            label = _two_lines(label)
        extra = "".join(f", {k}={_quote(v) if k != 'peripheries' else v}" for k, v in attrs.items())
        lines.append(f"  {_quote(nid)} [label={_quote(label)}{extra}];")

    def edge(a: str, b: str, **attrs: str) -> None:
        if numbered and attrs.get("style") == "dashed":
            # the picture's layout follows the forward stages alone, top to bottom as in the article; a number
            # sits beside its branch (xlabel) instead of taking a place of its own in the layout
            attrs = {**attrs, "constraint": "false"}
            if "label" in attrs:
                attrs["xlabel"] = attrs.pop("label")
        extra = ", ".join(f"{k}={_quote(v)}" for k, v in attrs.items())
        lines.append(f"  {_quote(a)} -> {_quote(b)}" + (f" [{extra}]" if extra else "") + ";")

    # states entering the first (or the symbolic) step
    for s in cell.states:
        declare(state_id(s, steps[0], -1), f"{uni(s)}<{when(steps[0], -1)}>", shape="circle", style="dashed")
    for p in cell.vectors:
        declare(f"{p}@param", uni(p), shape="note")
    for t in steps:
        lines.append(f"  subgraph {_quote(f'cluster_{when(t)}')} {{")
        lines.append(f"    label={_quote(f'step {when(t)}')}; style=rounded; color=gray60;")
        for i in cell.inputs:
            declare(ident(i, t), f"{uni(i)}<{when(t)}>", shape="plaintext")
        for st in cell.stages:
            fork = g.is_fork(st.name)
            head = f"{uni(st.name)}<{when(t)}>" + ("  (fork)" if fork else "")
            text = f"{head}\n= {stage_text(st, cell.vectors)}"
            if st.expressions:
                declare(ident(st.name, t), text, shape="ellipse", peripheries="2" if fork else "1")
            else:  # a product
                declare(ident(st.name, t), text, shape="box")
        scored = mode == "many-to-many" or t is None or t == steps[-1]
        if scored:
            declare(f"Error@{when(t)}", f"Error<{when(t)}>", shape="doubleoctagon")
        lines.append("  }")

        def source(name: str, t: int | None = t) -> str:
            state = cell.state_of_prev(name)
            if state is not None:
                return state_id(state, t, -1)
            if name in cell.vectors:
                return f"{name}@param"
            return ident(name, t)

        for st in cell.stages:
            for r in st.reads:
                edge(source(r), ident(st.name, t))
                local = Partial(node(st.name), node(r))
                if st.expressions:
                    wrt = uni(r) if r in cell.vectors else uni_time(r)
                    label = f"∂{uni_time(st.name)}/∂{wrt} = {_text(d.partials[local], cell.vectors)}"
                else:  # a product: the columns of W over r
                    label = f"∂{uni_time(st.name)}/∂{uni_time(r)} = {st.weight}^({uni(r)})"
                edge(
                    ident(st.name, t),
                    source(r),
                    style="dashed",
                    color="firebrick",
                    fontcolor="firebrick",
                    label=partial(label),
                )
        if scored:
            out = cell.output
            edge(ident(out, t), f"Error@{when(t)}")
            value = d.partials[Partial(ERROR, node(out))]
            label = f"∂Error<t>/∂{uni_time(out)} = {_text(value, cell.vectors)}"
            edge(
                f"Error@{when(t)}",
                ident(out, t),
                style="dashed",
                color="firebrick",
                fontcolor="firebrick",
                label=partial(label),
            )
    # states leaving the last (or the symbolic) step
    if unroll is None:
        for s in cell.states:
            declare(f"{s}@out", f"{uni(s)}<t> → step t+1", shape="box" if numbered else "circle", style="dashed")
            edge(ident(s, None), f"{s}@out")
            edge(
                f"{s}@out",
                ident(s, None),
                style="dashed",
                color="firebrick",
                fontcolor="firebrick",
                label=partial(f"∂E<t+1>/∂{uni(s)}<t>"),
            )
    lines.append("}")
    return "\n".join(lines) + "\n", legend


def _two_lines(label: str) -> str:
    """A node label whose last line is long (a stage's right-hand side) broken before its last top-level
    " + ", and "→ step t+1" on a line of its own: narrower nodes, the same text and size."""
    head, sep, last = label.rpartition("\n")
    if "→ step" in last:
        return label.replace(" → step", "\n→ step")
    if len(last) > 24 and " + " in last:
        left, _, right = last.rpartition(" + ")
        if left.count("(") == left.count(")") and left.count("[") == left.count("]"):
            last = f"{left}\n+ {right}"
    return f"{head}{sep}{last}"


def render(dot_text: str, fmt: str) -> bytes:
    """SVG or PNG bytes from DOT text, through Graphviz's ``dot`` (GraphvizMissingError when it is absent)."""
    if fmt not in ("svg", "png"):
        raise ValueError(f"format must be svg or png here, got {fmt!r}")
    exe = shutil.which("dot")
    if exe is None:
        raise GraphvizMissingError(
            "drawing SVG or PNG needs Graphviz's dot program, which is not on PATH "
            "(Debian/Ubuntu: apt install graphviz; macOS: brew install graphviz); --format dot needs nothing"
        )
    done = subprocess.run([exe, f"-T{fmt}"], input=dot_text.encode(), capture_output=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"dot failed: {done.stderr.decode(errors='replace').strip()}")
    return done.stdout
