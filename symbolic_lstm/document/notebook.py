"""What Jupyter shows: typeset stages, the graph as a picture, the generated backward beside its derivation.

Every object here follows IPython's ``_repr_*_`` protocol, so nothing imports IPython: a notebook displays
them, a terminal prints their text.  With the derivation (``DerivationDocument._repr_markdown_``), the check
and proof results (``_repr_html_``) and the training history (``_repr_png_``) they make the notebook a place to
follow the article: ``examples/article.ipynb``.

* :func:`stages` — the cell's functional stages as aligned math;
* :func:`graph` — the computation graph: SVG through Graphviz's ``dot`` where installed, else the DOT text
  with the install hint;
* :func:`backward_listing` — the generated module's backward loop, each statement next to the derivation
  step it implements (the comment the generator wrote from the engine).
"""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType

import sympy as sp

from ..engine.cell import Cell
from ..engine.cells import as_cell
from ..engine.stages import Linear, Stage
from .emit_latex import html_safe
from .printer_latex import ArticleLatexPrinter

__all__ = ["Graph", "Listing", "Stages", "backward_listing", "graph", "stages"]


@dataclass(frozen=True)
class _StageLatex:
    """A stage's right-hand side in the article's notation (its :class:`~..engine.stages.StageOps` in LaTeX)."""

    p: ArticleLatexPrinter
    timed: Callable[[str], sp.Symbol]

    def product(self, st: Linear) -> str:
        ops = ", ".join(self.p.doprint(self.timed(k)) for k in st.inputs)
        rhs = r"%s \left[%s\right]" % (self.p.doprint(sp.Symbol(st.weight)), ops)
        return rhs + (f" + {self.p.doprint(sp.Symbol(st.bias))}" if st.bias else "")

    def unitwise(self, st: Stage, expr: sp.Expr) -> str:
        return self.p.doprint(expr.xreplace({sp.Symbol(r): self.timed(r) for r in st.reads}))

    def mean(self, st: Stage, value: str) -> str:
        return r"\frac{1}{n_a} \sum_{i=1}^{n_a} \left(%s\right)_i" % value


@dataclass(frozen=True)
class Stages:
    """A cell's functional stages, one per line, in the article's notation."""

    cell: Cell

    def latex(self) -> str:
        """The stages as the body of an ``aligned`` block (``name^{<t>} &= …`` lines)."""
        p = ArticleLatexPrinter(self.cell)
        cell = self.cell

        def timed(name: str) -> sp.Symbol:
            state = cell.state_of_prev(name)
            if name in cell.vectors:
                return sp.Symbol(name)
            return sp.Symbol(f"{state}<t-1>" if state else f"{name}<t>")

        ops = _StageLatex(p, timed)
        lines = [f"{p.doprint(timed(st.name))} &= {st.compose(ops)}" for st in cell.stages]
        return " \\\\\n".join(lines)

    def _repr_markdown_(self) -> str:
        head = f"**{self.cell.name}**" + (f": {html.escape(self.cell.description)}" if self.cell.description else "")
        return f"{head}\n\n$$\\begin{{aligned}}\n{html_safe(self.latex())}\n\\end{{aligned}}$$\n"

    def __str__(self) -> str:
        return self.latex()


def stages(cell: str | Cell) -> Stages:
    """The cell's functional stages, typeset in Jupyter (``stages("lstm")``)."""
    return Stages(as_cell(cell))


@dataclass(frozen=True)
class Graph:
    """The computation graph: ``dot`` (DOT text, as ``symbolic-lstm graph`` writes it); in Jupyter a picture
    through Graphviz where it is installed, its backward branches numbered and their local partials listed
    beneath (``legend``), so no long label crosses the lines of a picture scaled to the column."""

    dot: str
    numbered: str = ""  # the same graph with numbered partials (empty: draw ``dot`` as it is)
    legend: tuple[str, ...] = ()

    def svg(self) -> str | None:
        """The picture as SVG text that fits a notebook's column, or None when Graphviz's ``dot`` is not
        installed: laid out by the forward stages alone, left to right or top to bottom, whichever is narrower
        (one step of the LSTM: 723 pt, under 1 000 px, top to bottom, its labels at their size), and scaled to
        the cell's width (``width="100%"``, never beyond its natural size; the viewBox keeps the proportions)."""
        from .emit_dot import GraphvizMissingError, render

        dot = self.numbered or self.dot
        try:
            drawings = [
                render(dot.replace("rankdir=LR;", f"rankdir={way};", 1), "svg").decode() for way in ("LR", "TB")
            ]
        except GraphvizMissingError:
            return None
        text = min(drawings, key=lambda svg: _size(svg)[0])
        text = text[text.index("<svg") :]  # without the XML prologue and doctype
        width, _ = _size(text)
        return re.sub(
            r'^<svg width="[^"]*" height="[^"]*"',
            f'<svg width="100%" style="max-width: {width:g}pt; height: auto"',
            text,
        )

    def _repr_svg_(self) -> str | None:
        return self.svg()

    def _repr_mimebundle_(self, include: object = None, exclude: object = None) -> dict[str, str]:
        """SVG where Graphviz draws it; otherwise the DOT text with the install hint (never both, so a
        front end that ranks Markdown above SVG still shows the picture)."""
        svg = self.svg()
        if svg is not None:
            bundle = {"image/svg+xml": svg, "text/plain": "<computation graph (SVG)>"}
            if self.legend:
                items = "".join(f"<li>{html.escape(entry)}</li>" for entry in self.legend)
                bundle["text/html"] = (
                    f"<div>{svg}</div><p>Dashed: backward branches, each numbered; its local partial:</p>"
                    f"<ol style='columns: 2; font-size: smaller'>{items}</ol>"
                )
            return bundle
        from .emit_dot import INSTALL_HINT

        return {"text/markdown": f"{INSTALL_HINT}\n\n```dot\n{self.dot}\n```\n", "text/plain": self.dot}

    def __str__(self) -> str:
        return self.dot


def _size(svg: str) -> tuple[float, float]:
    """The natural (width, height) of Graphviz's SVG, in points."""
    found = re.search(r'<svg width="([\d.]+)pt" height="([\d.]+)pt"', svg)
    return (float(found.group(1)), float(found.group(2))) if found else (0.0, 0.0)


def graph(cell: str | Cell, unroll: int | None = None, loss: str = "many-to-many") -> Graph:
    """The graph ``symbolic-lstm graph`` draws, as a displayable object."""
    from .emit_dot import graph_dot, graph_with_legend

    cell = as_cell(cell)
    numbered, legend = graph_with_legend(cell, unroll, loss)  # type: ignore[arg-type]
    return Graph(graph_dot(cell, unroll, loss), numbered, tuple(legend))  # type: ignore[arg-type]


@dataclass(frozen=True)
class Listing:
    """Generated statements and the derivation step each implements."""

    title: str
    rows: tuple[tuple[str, str], ...]  # (code, derivation step or "")

    def _repr_html_(self) -> str:
        cells = "".join(
            "<tr><td style='text-align:left'><code>%s</code></td><td style='text-align:left'>%s</td></tr>"
            % (html.escape(code), html.escape(step))
            for code, step in self.rows
        )
        return (
            f"<p><b>{html.escape(self.title)}</b></p><table><thead><tr><th style='text-align:left'>generated "
            f"NumPy</th><th style='text-align:left'>derivation step</th></tr></thead><tbody>{cells}</tbody></table>"
        )

    def __str__(self) -> str:
        width = max((len(code) for code, _ in self.rows), default=0)
        return "\n".join(f"{code:<{width}}  # {step}" if step else code for code, step in self.rows)


def backward_listing(module: ModuleType | str) -> Listing:
    """The backward loop of a generated module (or of the built-in cell named), statement by statement with
    the derivation step each came from — read from the module's own source, as it runs."""
    if isinstance(module, str):
        from ..codegen.loader import load

        module = load(module, warn_stale=False)
    from ..runtime.run_code import source_of

    text = source_of(module)  # what ran
    body = text[text.index("    for t in range(T - 1, -1, -1):") :].splitlines()[1:]
    end = next(i for i, line in enumerate(body) if line.strip() and not line.startswith(" " * 8))  # the loop's end
    rows = []
    for line in body[:end]:
        code, _, step = line.strip().partition("  # ")
        if code:
            rows.append((code, step))
    return Listing(f"backward of {module.CELL}: one step t, from t = T down to 1", tuple(rows))
