"""Stage 4a: the derivation, printed as LaTeX in the article's notation.

For each target (a weight, a bias, a<t-1>, c<t-1>, x<t>, a<0>, c<0>, or any node of the cell) it prints
(a) the chain of partials stage by stage, forks shown as sums; (b) each factor evaluated; (c) the closed
form; (d) with an unroll length T, one row per time step t = T … 1 with the boundary conditions applied
(nothing flows back from step T+1; many-to-one: ∂Error<t>/∂a<t> = 0 for t < T).

Time indices come from :class:`~symbolic_lstm.engine.timeline.Timeline` (the derivation unrolled over t, t+1).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import sympy as sp

from ..engine.cell import Cell
from ..engine.derivation import LOSS_MODES, LossMode, derive
from ..engine.notation import Partial, future, node
from ..engine.timeline import Timeline
from .latex_layout import COLUMN, LINE, layout, layout_parts
from .latex_theorems import every_t, lengths_section
from .printer_latex import ArticleLatexPrinter

TargetKind = Literal["param", "leaf", "initial", "node"]


@dataclass(frozen=True)
class Target:
    """Something to differentiate the Error with respect to.

    ``key`` is the CLI name (``W_f``, ``a_prev``, ``a0``, ``c`` …); ``node`` the step-local node or
    parameter it refers to (``a0`` → ``a_prev`` at t = 1).
    """

    key: str
    kind: TargetKind
    node: str


def targets(cell: Cell) -> dict[str, Target]:
    """All targets of ``cell``, the default ones (the issue's list) first, then every other node."""
    out: dict[str, Target] = {}
    for st in cell.linear_stages:
        out[st.weight] = Target(st.weight, "param", st.weight)
    for st in cell.linear_stages:
        if st.bias is not None:
            out[st.bias] = Target(st.bias, "param", st.bias)
    for name in cell.vectors:
        out[name] = Target(name, "param", name)
    for leaf in cell.leaves:
        out[leaf] = Target(leaf, "leaf", leaf)
    for s in cell.states:
        out[f"{s}0"] = Target(f"{s}0", "initial", f"{s}_prev")
    for st in cell.stages:
        out.setdefault(st.name, Target(st.name, "node", st.name))
    return out


def default_targets(cell: Cell) -> list[str]:
    return [k for k, t in targets(cell).items() if t.kind != "node"]


def target_aliases(cell: Cell) -> dict[str, str]:
    """Other spellings users type: ``a<t-1>``, ``a^{<t-1>}``, ``x<t>``, ``a<0>`` …"""
    alias: dict[str, str] = {}
    for s in cell.states:
        for form in (f"{s}<t-1>", f"{s}^{{<t-1>}}", f"{s}^<t-1>"):
            alias[form] = f"{s}_prev"
        for form in (f"{s}<0>", f"{s}^{{<0>}}", f"{s}^<0>", f"{s}_0"):
            alias[form] = f"{s}0"
    for i in cell.inputs:
        for form in (f"{i}<t>", f"{i}^{{<t>}}", f"{i}^<t>"):
            alias[form] = i
    return alias


class DerivationDocument:
    """LaTeX derivations of targets of one cell, for one loss mode and optional unroll length."""

    def __init__(self, cell: Cell, mode: LossMode = "many-to-many", unroll: int | None = None) -> None:
        if mode not in LOSS_MODES:
            raise ValueError(f"loss mode must be one of {', '.join(LOSS_MODES)}, got {mode!r}")
        if unroll is not None and unroll < 1:
            raise ValueError(f"unroll length must be a positive integer, got {unroll}")
        self.cell, self.mode, self.unroll = cell, mode, unroll
        self.line = LINE  # glyphs a line may take: the page's; markdown() breaks for a notebook's column
        self.d = derive(cell)
        self.printer = ArticleLatexPrinter(cell)
        self._targets = targets(cell)

    def tex(self, e: sp.Expr) -> str:
        return self.printer.doprint(e)

    # -- per-target pieces ----------------------------------------------------------------------
    def step_chain(self, target: Target) -> sp.Expr:
        """The target's gradient at one step, as the full chain (step-local)."""
        if target.kind == "param":
            return self.d.param_chain(target.node, full=True)
        return self.d.full[target.node]

    def lhs(self, target: Target, t: str = "t") -> str:
        err = r"\partial \mathrm{Error}"
        if target.kind == "param":
            return r"\frac{%s}{\partial %s}" % (err, self.tex(sp.Symbol(target.node)))
        if target.kind == "initial":
            return r"\frac{%s}{\partial %s^{<0>}}" % (err, self.cell.latex_name(target.node))
        shown = Timeline(self.d, None if t == "t" else int(t)).symbol(node(target.node))
        return r"\frac{%s}{\partial %s}" % (err, self.tex(shown))

    def forms(self, key: str) -> tuple[sp.Expr, sp.Expr, dict[sp.Expr, sp.Expr]]:
        """(chain of partials, closed form, each partial's value) of one step's term, in display symbols."""
        target = self._targets[key]
        tl = Timeline(self.d, 1 if target.kind == "initial" else None, self.unroll, self.mode)
        chain = tl.chain(self.step_chain(target))
        return chain, chain.xreplace(tl.values).doit(), tl.values

    def rows(self, key: str) -> list[tuple[int, sp.Expr, sp.Expr]]:
        """(t, chain, closed form) for t = T … 1 with the boundary conditions applied (needs ``unroll``)."""
        if self.unroll is None:
            raise ValueError("rows need an unroll length")
        target = self._targets[key]
        steps = [1] if target.kind == "initial" else list(range(self.unroll, 0, -1))
        out = []
        for t in steps:
            tl = Timeline(self.d, t, self.unroll, self.mode)
            c = tl.chain(self.step_chain(target))
            out.append((t, c, c.xreplace(tl.values).doit()))
        return out

    def blocks(self, key: str) -> list[tuple[str, ...]]:
        """The pieces of one target's section, to be rendered as LaTeX (:meth:`section`) or Markdown
        (:meth:`markdown`): ("title", math), ("comment", text), ("para", title, text), ("math", align body),
        ("note", text with $…$)."""
        target = self._targets[key]
        chain, closed, values = self.forms(key)
        tl = Timeline(self.d, values=values)
        summed = target.kind == "param"
        total = r"\sum_{t=1}^{T} " if summed else ""
        where = {
            "param": "summed over the steps that share it",
            "leaf": "at step t",
            "initial": "the a^{<t-1>} gradient at t = 1".replace("a", self.cell.states[0]),
            "node": "at step t, all branches of its fork added",
        }[target.kind]
        out: list[tuple[str, ...]] = [
            ("title", self.lhs(target).replace(r"\frac{", "{", 1).replace("}{", "}/{", 1)),
            ("comment", f"target {key} ({where}); cell {self.cell.name}; loss {self.mode}"),
            ("para", "(a) Chain rule through the stages", "Forks appear as sums of their branches."),
            ("math", self._equation(self.lhs(target), total, chain, summed)),
            ("para", "(b) Each factor evaluated", ""),
            (
                "math",
                " \\\\\n".join(
                    layout(self.tex(p), v, self.printer, line=self.line) for p, v in self._factors(chain, tl.values)
                ),
            ),
            ("para", "(c) Closed form", ""),
            ("math", self._equation(self.lhs(target), total, closed, summed)),
        ]
        out += [("note", n) for n in self._notes(target)]
        if self.unroll is not None:
            out += self._rows(target)
        return out

    def section(self, key: str) -> str:
        """One target's derivation as LaTeX (for a document: ``\\subsection*``, ``\\paragraph``, ``align*``)."""
        lines = []
        for kind, *rest in self.blocks(key):
            if kind == "title":
                lines.append(r"\subsection*{$%s$}" % rest[0])
            elif kind == "comment":
                lines.append(r"% " + rest[0])
            elif kind == "para" and not rest[0]:
                lines.append(rest[1])
            elif kind == "para":
                lines.append(r"\paragraph{%s}%s" % (rest[0], f" {rest[1]}" if rest[1] else ""))
            elif kind == "math":
                lines += [r"\begin{align*}", rest[0], r"\end{align*}"]
            else:
                lines.append(r"\noindent " + rest[0] + "\n")
        return "\n".join(lines)

    def markdown(self, keys: Sequence[str] | None = None) -> str:
        """The derivations as Markdown with ``$$…$$`` math that MathJax and KaTeX render (Jupyter): aligned
        blocks, no ``\\paragraph``, no preamble, long lines broken as the PDF breaks them, for a ~900 px column
        (:data:`~symbolic_lstm.document.latex_layout.COLUMN`) rather than the landscape page."""
        keys = list(keys) if keys else default_targets(self.cell)
        import copy
        import html

        narrow = copy.copy(self)
        narrow.line = COLUMN  # a ~900 px column, not the landscape page
        out: list[str] = [
            f"**{self.cell.name}**: {html.escape(self.cell.description)}"
            if self.cell.description
            else f"**{self.cell.name}**",
            f"loss {self.mode}" + (f", unrolled over $T = {self.unroll}$ steps" if self.unroll else ""),
        ]
        for key in keys:
            for kind, *rest in narrow.blocks(key):
                if kind == "title":
                    out.append(f"#### ${html_safe(rest[0])}$")
                elif kind == "para":
                    out.append(html_safe(" ".join(x for x in (f"**{rest[0]}**" if rest[0] else "", rest[1]) if x)))
                elif kind == "math":
                    out.append("$$\\begin{aligned}\n" + html_safe(rest[0]) + "\n\\end{aligned}$$")
                elif kind == "note":
                    out.append(html_safe(rest[0].strip()))
        return "\n\n".join(out) + "\n"

    def _repr_markdown_(self) -> str:
        """Jupyter shows the document as typeset math (every default target, or those of :meth:`show`)."""
        return self.markdown(getattr(self, "_shown", None))

    def show(self, *keys: str) -> DerivationDocument:
        """The same document, displaying only ``keys`` in Jupyter (``doc.show("W_f")``)."""
        import copy

        view = copy.copy(self)
        view._shown = list(keys) or None  # type: ignore[attr-defined]
        return view

    def _equation(self, lhs: str, total: str, expr: sp.Expr, summed: bool) -> str:
        """``lhs &= expr``, a fork's branches one per line, anything wider than the page broken across lines
        (:mod:`symbolic_lstm.document.latex_layout`)."""
        if summed:
            return layout(lhs, expr, self.printer, total + r"\Big[", r"\Big]", self.line)
        if not expr.is_Add:
            return layout(lhs, expr, self.printer, line=self.line)
        return layout_parts(lhs, [("", term, "") for term in expr.args], self.printer, self.line)  # a branch a line

    def _factors(self, chain: sp.Expr, values: dict[sp.Expr, sp.Expr]) -> list[tuple[sp.Expr, sp.Expr]]:
        seen: list[sp.Expr] = []
        for e in sp.preorder_traversal(chain):
            if isinstance(e, Partial) and e in values and e not in seen:
                seen.append(e)
        return [(p, values[p]) for p in seen]

    def _notes(self, target: Target) -> list[str]:
        notes = []
        for st in self.cell.linear_stages:
            ops = ", ".join(f"${self.tex(Timeline(self.d).symbol(node(k)))}$" for k in st.inputs)
            if target.kind == "param" and target.node == st.weight:
                notes.append(
                    r"Here $\left[\dots\right]$ is the concatenation of %s: with a batch of rows, the product is "
                    r"$\left(\delta %s\right)^{\mathsf{T}} \left[\dots\right]$ (an outer product per row)."
                    % (ops, self.tex(Timeline(self.d).symbol(node(st.name))))
                )
            if target.kind in ("leaf", "initial") and target.node in st.inputs:
                notes.append(
                    r"$%s$ denotes the columns of $%s$ that multiply $%s$; the product is $\delta %s\, %s$."
                    % (
                        self.tex(sp.Symbol(f"{st.weight}|{target.node}", commutative=False)),
                        self.tex(sp.Symbol(st.weight)),
                        self.tex(Timeline(self.d).symbol(node(target.node))),
                        self.tex(Timeline(self.d).symbol(node(st.name))),
                        self.tex(sp.Symbol(f"{st.weight}|{target.node}", commutative=False)),
                    )
                )
        if self.mode == "many-to-one":
            out = self.cell.latex_name(self.cell.output)
            notes.append(
                r"Many-to-one: only $%s^{<T>}$ is scored, so "
                r"$\frac{\partial \mathrm{Error}^{<t>}}{\partial %s^{<t>}} = 0$ for $t < T$." % (out, out)
            )
        return list(dict.fromkeys(notes))

    def _rows(self, target: Target) -> list[str]:
        T = self.unroll
        assert T is not None
        rows = self.rows(target.key)
        steps = [t for t, _, _ in rows]
        chains, closed, bc = [c for _, c, _ in rows], [e for _, _, e in rows], []
        summed = target.kind == "param"
        if summed:  # one row per step, each in its brackets, each starting a line
            head = ""
            body, body_closed = (
                layout_parts(self.lhs(target), [(r"\Big[", r, r"\Big]") for r in rows], self.printer, self.line)
                for rows in (chains, closed)
            )
        else:
            head = ""
            body, body_closed = (
                "\\\\\n".join(
                    self._equation(self.lhs(target, str(t)), "", r, False) for t, r in zip(steps, rows, strict=True)
                )
                for rows in (chains, closed)
            )
        for s in self.cell.states:
            # what the next step would send back, shown at t = T: its δ (or ∂Error/∂state) is zero
            shown = Timeline(self.d, T).chain(future(s))
            bc.append(r"$%s = 0$" % self.tex(shown.args[0] if shown.is_Mul else shown))
        text = "One row per step, $t = %s$; boundary conditions: %s%s." % (
            ", ".join(map(str, steps)),
            ", ".join(bc),
            "; many-to-one: the Error of steps $t < T$ is 0" if self.mode == "many-to-one" else "",
        )
        return [
            ("para", r"(d) Unrolled over $T = %d$ steps" % T, text),
            ("math", head + body),
            ("para", "", "and evaluated:"),
            ("math", head + body_closed),
        ]

    # -- whole documents -----------------------------------------------------------------------
    def body(self, keys: Sequence[str] | None = None) -> str:
        keys = list(keys) if keys else default_targets(self.cell)
        intro = [
            r"% Derivations generated by symbolic-lstm from the cell definition; do not edit by hand.",
            r"% cell: " + self.cell.name + f" ({self.cell.description})" if self.cell.description else "",
            r"% loss: " + self.mode + r", Error^{<t>} = 1/2 (a_hat^{<t>} - a^{<t>})^2",
        ]
        return "\n".join([line for line in intro if line] + ["", *[self.section(k) + "\n" for k in keys]])

    def standalone(self, keys: Sequence[str] | None = None) -> str:
        title = f"Backpropagation through the {self.cell.name} cell ({self.mode})".replace("_", r"\_")
        return "\n".join(
            [
                r"\documentclass[10pt]{article}",
                r"\usepackage[landscape,margin=1.5cm]{geometry}",
                r"\usepackage{amsmath,amssymb}",
                r"\allowdisplaybreaks",
                r"\setlength{\parindent}{0pt}",
                r"\title{%s}" % title,
                r"\date{}",
                r"\begin{document}",
                r"\maketitle",
                self.body(keys),
                every_t(self.cell),
                lengths_section(self.cell),
                r"\end{document}",
                "",
            ]
        )


def html_safe(tex: str) -> str:
    """``<`` and ``>`` as ``\\lt``/``\\gt``, which MathJax and KaTeX know and an HTML sanitizer cannot mistake
    for a tag (``a^{<t>}`` in a notebook's Markdown)."""
    return tex.replace("<", r"\lt ").replace(">", r"\gt ")
