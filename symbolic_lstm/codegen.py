"""What every code backend shares: names and comments in the article's notation, the Jinja2 environment,
the seed partials ∂Error<t>/∂v, and the error a backend raises for a cell it cannot print.

Backends (:mod:`symbolic_lstm.emit_numpy`, :mod:`symbolic_lstm.emit_array_api`) print the same
:class:`~symbolic_lstm.schedule.Schedule`; nothing here decides what a kernel computes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import jinja2
import sympy as sp

from .notation import ERROR, Partial, node
from .paths import templates_dir


class CodegenError(ValueError):
    """The cell uses a structure a kernel backend does not support, or its printed code failed to run
    (the message names the stage)."""


@dataclass(frozen=True)
class Line:
    """One generated statement, the derivation step it implements, an optional ``if`` guard, and the stage
    (node) whose expression it prints ("" for structure the template adds)."""

    code: str
    comment: str = ""
    guard: str = ""
    stage: str = ""


def emit_lines(lines: list[Line], indent: int) -> str:
    """Statements as code indented by ``indent`` spaces, each with its comment; consecutive lines with the same
    guard go under one ``if guard:`` (a guard ``"cond  # note"`` puts the note after the colon; ``"else"``
    continues the previous guard)."""
    pad, out, prev = " " * indent, [], ""
    for ln in lines:
        code = ln.code + (f"  # {ln.comment}" if ln.comment else "")
        if ln.guard:
            cond, _, note = ln.guard.partition("  # ")
            if ln.guard != prev:
                out.append(pad + ("else:" if cond == "else" else f"if {cond}:") + (f"  # {note}" if note else ""))
            out.append(pad + "    " + code)
        else:
            out.append(pad + code)
        prev = ln.guard
    return "\n".join(out)


def seed(v: str) -> Partial:
    """∂Error<t>/∂v: the loss's own branch into ``v``."""
    return Partial(ERROR, node(v))


def is_seed(p: Partial) -> bool:
    return p.num == ERROR


def matrix_symbol(name: str) -> sp.MatrixSymbol:
    """A matrix stand-in for a code name in the linear stages' matrix-calculus rules."""
    return sp.MatrixSymbol(name, sp.Symbol("r"), sp.Symbol("k"))


_GREEK = {"Gamma": "Γ", "delta": "δ", "sigma": "σ"}


def uni(name: str) -> str:
    """Unicode form of a node name for comments: Gamma_f → Γ_f, c_tilde → c~, a_prev → a<t-1>."""
    if name.endswith("_prev"):
        return name[: -len("_prev")]
    if name.endswith("_tilde"):
        return name[: -len("_tilde")] + "~"
    head, _, tail = name.partition("_")
    return _GREEK.get(head, head) + (f"_{tail}" if tail else "")


def uni_time(name: str) -> str:
    return f"{uni(name)}<t-1>" if name.endswith("_prev") else f"{uni(name)}<t>"


def uni_expr(expr: sp.Expr, shared: tuple[str, ...] = ()) -> str:
    """Comment text of a stage's expression; ``shared`` names (unit parameters) carry no time index."""
    return CommentPrinter().doprint(
        expr.xreplace({s: sp.Symbol(s.name if s.name in shared else uni_time(s.name)) for s in expr.free_symbols})
    )


class CommentPrinter(sp.printing.str.StrPrinter):
    """Compact text for comments: ∂c<t>/∂Γ_f<t>, δc<t+1>, σ(…), products with '·'; chain order kept."""

    def __init__(self) -> None:
        super().__init__({"order": "none"})

    def _print_Partial(self, expr: Partial) -> str:
        num, den = self._print(expr.num), self._print(expr.den)
        return f"∂{num}/∂{den}"

    def _print_Symbol(self, expr: sp.Symbol) -> str:
        name = expr.name
        delta = name.startswith("delta_")
        base = name[6:] if delta else name
        stem, lt, time = base.partition("<")
        text = ("E" if stem == "Error" else uni(stem)) + (lt + time if lt else "")
        return ("δ" if delta else "") + text

    def _print_Mul(self, expr: sp.Mul) -> str:
        return re.sub(r"(?<!\*)\*(?!\*)", "·", super()._print_Mul(expr))

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        if expr.exp == 2:
            return self.parenthesize(expr.base, 60, strict=True) + "²"
        return super()._print_Pow(expr, rational)

    def _print_sigmoid(self, expr: sp.Expr) -> str:
        return f"σ({self._print(expr.args[0])})"

    def _print_UnitSum(self, expr: sp.Expr) -> str:
        return f"Σ_i({self._print(expr.args[0])})"

    def _print_rsqrt(self, expr: sp.Expr) -> str:
        return f"1/√({self._print(expr.args[0])})"

    def _print_Heaviside(self, expr: sp.Expr) -> str:
        return f"H({self._print(expr.args[0])})"

    def _print_Max(self, expr: sp.Expr) -> str:
        return f"max({', '.join(self._print(a) for a in expr.args)})"

    def _print_Min(self, expr: sp.Expr) -> str:
        return f"min({', '.join(self._print(a) for a in expr.args)})"


def template_env() -> jinja2.Environment:
    """The Jinja2 environment every backend renders with: strict, whitespace-exact, the comment filters."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir())),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
    )
    env.filters["uni"] = uni
    env.filters["uni_time"] = uni_time
    env.filters["emit"] = emit_lines
    return env
