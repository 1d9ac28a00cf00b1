"""Stage 4: a long derivation laid over lines that fit the page.

SymPy prints an expression as one string, and a chain rule through a layer-normalised cell is thousands of
points wide.  :func:`layout` breaks an equation where a reader would: between the branches of a sum (a
fork's ``+``), between the factors of a long product, and inside a parenthesised sum or a Σ over units, whose
delimiters become ``\\Big(`` … ``\\Big)`` so that they may span lines.  Anything that fits is printed exactly
as SymPy's printer prints it.  Widths are estimated from the TeX (a fraction is as wide as its wider part,
sub- and superscripts are small, commands are one glyph); ``test_latex_fits_the_page`` checks the estimate
against pdflatex's own overfull-box report for every built-in cell.
"""

from __future__ import annotations

import re

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

from ..engine.functions import UNIT_INDICES, UnitSum

#: Estimated width of a line of the standalone document, in glyphs of the estimate (landscape, 1.5 cm margins).
LINE = 100.0
#: The same for a notebook's or a web page's column of ~900 px (MathJax at Jupyter's font size).
COLUMN = 62.0

_SPACES = {r"\quad": 2.0, r"\qquad": 4.0, r"\,": 0.2, r"\;": 0.3, r"\!": 0.0, r"\ ": 0.3}
_ZERO = {r"\left", r"\right", r"\Big", r"\big", r"\Bigg", r"\limits", r"\displaystyle", r"\mathsf"}
_WRAPPERS = {r"\mathrm", r"\operatorname", r"\hat", r"\tilde", r"\bar", r"\mathbf", r"\text", r"\mathit"}


def width(tex: str) -> float:
    """Typeset width of ``tex`` estimated in glyphs."""
    return _Scanner(tex).run()


class _Scanner:
    def __init__(self, tex: str) -> None:
        self.s, self.i = tex, 0

    def group(self) -> float:
        """One argument: a {…} group or a single token."""
        while self.i < len(self.s) and self.s[self.i] == " ":
            self.i += 1
        if self.i < len(self.s) and self.s[self.i] == "{":
            depth, start = 0, self.i
            while self.i < len(self.s):
                depth += {"{": 1, "}": -1}.get(self.s[self.i], 0)
                self.i += 1
                if depth == 0:
                    break
            return _Scanner(self.s[start + 1 : self.i - 1]).run()
        return self.token()

    def token(self) -> float:
        s = self.s
        if self.i >= len(s):
            return 0.0
        c = s[self.i]
        if c == "\\":
            m = re.compile(r"\\([A-Za-z]+|.)").match(s, self.i)
            assert m is not None
            self.i = m.end()
            cmd = m.group(0)
            if cmd == r"\frac":
                return max(self.group(), self.group())
            if cmd in _WRAPPERS:
                return self.group()
            if cmd == r"\sqrt":
                return self.group() + 1.0
            if cmd in _SPACES:
                return _SPACES[cmd]
            if cmd in _ZERO:
                return 0.0
            if cmd in (r"\sum", r"\prod"):
                return 1.6
            return 1.0
        self.i += 1
        if c in "^_":
            return 0.7 * self.group()
        if c in "{} ":
            return 0.0
        if c in "+-=<>":
            return 1.8  # the operator and its spacing
        if c in ",;":
            return 0.6
        return 1.0

    def run(self) -> float:
        total = 0.0
        while self.i < len(self.s):
            total += self.token()
        return total


def fragments(expr: sp.Expr, p: sp.printing.latex.LatexPrinter, room: float) -> list[str]:
    """``expr`` as TeX pieces between which a line may break; one piece when it fits in ``room``."""
    whole = p.doprint(expr)
    if width(whole) <= room:
        return [whole]
    if isinstance(expr, sp.Add) and len(expr.args) > 1:
        out: list[str] = []
        for k, term in enumerate(expr.args):
            negative = term.could_extract_minus_sign()
            pieces = fragments(-term if negative else term, p, room)
            pieces[0] = ("- " if negative else ("+ " if k else "")) + pieces[0]
            out += pieces
        return out
    if isinstance(expr, sp.Mul) and len(expr.args) > 1:
        coeff, rest = expr.as_coeff_Mul()
        if coeff == -1:
            pieces = fragments(rest, p, room)
            pieces[0] = "-" + pieces[0]
            return pieces
        out = []
        for f in expr.args:
            if isinstance(f, sp.Add):
                inner = fragments(f, p, room)
                if len(inner) == 1:  # it fits: SymPy's own parentheses
                    out.append(p.parenthesize(f, PRECEDENCE["Mul"]))
                    continue
                inner[0] = r"\Big(" + inner[0]  # split over lines: delimiters that may span them
                inner[-1] = inner[-1] + r"\Big)"
                out += inner
            elif isinstance(f, UnitSum | sp.Mul):  # a product inside a product needs no parentheses
                out += fragments(f, p, room)
            else:
                out.append(p.parenthesize(f, PRECEDENCE["Mul"]))
        return out
    if isinstance(expr, UnitSum):
        depth = getattr(p, "unit_depth", 0)
        idx = UNIT_INDICES[min(depth, len(UNIT_INDICES) - 1)]
        p.unit_depth = depth + 1  # type: ignore[attr-defined]
        try:
            inner = fragments(expr.args[0], p, room)
        finally:
            p.unit_depth = depth  # type: ignore[attr-defined]
        inner[0] = r"\sum_{%s=1}^{n_a} \Big(" % idx + inner[0]
        inner[-1] = inner[-1] + r"\Big)_{%s}" % idx
        return inner
    return [whole]


def fill(pieces: list[str], first: float, rest: float) -> list[str]:
    """Greedy lines of ``pieces``: the first line ``first`` wide, the others ``rest``."""
    lines: list[str] = []
    cur = ""
    for piece in pieces:
        room = first if not lines else rest
        if cur and width(cur) + width(piece) + 0.3 > room:
            lines.append(cur)
            cur = piece
        else:
            cur = f"{cur} {piece}" if cur else piece
    return [*lines, cur] if cur else lines


def layout(
    lhs: str,
    expr: sp.Expr,
    p: sp.printing.latex.LatexPrinter,
    open_: str = "",
    close: str = "",
    line: float = LINE,
) -> str:
    """``lhs &= open_ expr close`` for an align environment, continued on ``&\\quad`` lines where wider than
    ``line`` glyphs (:data:`LINE` for the page, :data:`COLUMN` for a notebook).

    ``open_``/``close`` wrap the whole right-hand side (``\\sum_t \\Big[`` … ``\\Big]``), across lines.
    """
    return layout_parts(lhs, [(open_, expr, close)], p, line)


def layout_parts(
    lhs: str, parts: list[tuple[str, sp.Expr, str]], p: sp.printing.latex.LatexPrinter, line: float = LINE
) -> str:
    """``lhs &= part₁ + part₂ + …`` where each part, (prefix, expression, suffix), starts a line of its own (a
    fork's branches, the rows of an unrolled sum) and is broken further where wider than ``line``."""
    room = line - width(lhs) - 2
    lines: list[str] = []
    for k, (pre, e, post) in enumerate(parts):
        negative = k > 0 and not pre and e.could_extract_minus_sign()
        pieces = fragments(-e if negative else e, p, room - 4)
        pieces[0] = ("- " if negative else "+ " if k else "") + pre + pieces[0]
        pieces[-1] = pieces[-1] + post
        lines += fill(pieces, room, room - 2)
    return f"{lhs} &= " + " \\\\\n&\\quad ".join(lines)
