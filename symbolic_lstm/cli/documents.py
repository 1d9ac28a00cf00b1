"""``derive`` (the LaTeX derivation) and ``graph`` (the computation graph as a picture)."""

from __future__ import annotations

from pathlib import Path

import click

from ..engine.cell import Cell
from .common import CELL, FilePath, emit_output, loss_option, main


@main.command(short_help="print the LaTeX derivation of dError/d(target), stage by stage")
@click.argument("targets", nargs=-1, metavar="[TARGET]...")
@CELL
@click.option(
    "--unroll",
    "-T",
    type=click.IntRange(min=1, max=200),
    default=None,
    help="Also print one row per step, t = T…1 (at most 200 rows: ~8 s, 2.4 MB of LaTeX; the rows repeat one "
    "rule, which the proof checks for every T).",
)
@loss_option()
@click.option("--standalone", is_flag=True, help="A complete LaTeX document (compiles with pdflatex).")
@click.option(
    "--head",
    type=click.Choice(["softmax-ce"]),
    default=None,
    help="Also derive a loss head: softmax cross-entropy over z = W_y a + b_y.",
)
@click.option(
    "--output",
    "-o",
    type=FilePath(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file (atomically) instead of standard output.",
)
def derive(
    targets: tuple[str, ...],
    cell: Cell,
    unroll: int | None,
    loss: str,
    standalone: bool,
    head: str | None,
    output: Path | None,
) -> None:
    """Print the LaTeX derivation of dError/dTARGET (all default targets when none is given).

    TARGET is a weight or bias (W_f, b_f, …), a<t-1> (a_prev), c<t-1> (c_prev), x<t> (x), a<0> (a0),
    c<0> (c0), or any node of the cell (sum_f, Gamma_f, c, a …).
    """
    from ..document.emit_latex import DerivationDocument, target_aliases
    from ..document.emit_latex import targets as all_targets

    known = all_targets(cell)
    aliases = target_aliases(cell)
    keys = []
    for t in targets:
        key = aliases.get(t, t)
        if key not in known:
            raise click.BadParameter(
                f"{t!r} is not a target of cell {cell.name!r}. Choose from: {', '.join(known)} "
                f"(also written {', '.join(aliases)})",
                param_hint="TARGET",
            )
        keys.append(key)
    doc = DerivationDocument(cell, mode=loss, unroll=unroll)  # type: ignore[arg-type]
    text = doc.standalone(keys) if standalone else doc.body(keys)
    if head is not None:
        from ..engine.heads import latex as head_latex

        section = "\n\\subsection*{Softmax cross-entropy head}\n" + head_latex()
        text = text.replace("\\end{document}", section + "\\end{document}") if standalone else text + section
    emit_output(text, output)


@main.command(short_help="draw the computation graph: stages, forks, backward edges with their partials")
@CELL
@click.option(
    "--unroll", "-T", type=click.IntRange(min=1, max=50), default=None, help="Draw T steps (default: one step t)."
)
@loss_option()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["dot", "svg", "png"]),
    default="dot",
    show_default=True,
    help="svg and png need Graphviz's dot program.",
)
@click.option(
    "--output",
    "-o",
    type=FilePath(dir_okay=False, writable=True, path_type=Path),
    default=None,
    help="Write to this file (atomically) instead of standard output (required for png).",
)
def graph(cell: Cell, unroll: int | None, loss: str, fmt: str, output: Path | None) -> None:
    """Draw the computation graph as the article does: functional stages as nodes, forks marked, backward
    edges (dashed) labelled with the local partials the engine derived."""
    from ..document.emit_dot import GraphvizMissingError, graph_dot, render

    text = graph_dot(cell, unroll, loss)  # type: ignore[arg-type]
    if fmt == "dot":
        emit_output(text, output)
        return
    if fmt == "png" and output is None:
        raise click.BadParameter("PNG is binary: give a file with -o FILE.png", param_hint="--output")
    try:
        data = render(text, fmt)
    except GraphvizMissingError as e:
        raise click.UsageError(str(e)) from None
    emit_output(data, output)
