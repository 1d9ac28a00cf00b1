"""The symbols the derivation is written in.

Inside one step the engine uses *step-local* symbols named like the code variables they become:
``Gamma_f`` (a node's value at step t), ``c_prev`` (state c at t−1), ``delta_c`` (δc<t>, the total
derivative of the Error with respect to c<t> where c forks), ``a_next`` … and :class:`Partial`, an
unevaluated local partial ∂num/∂den.  :mod:`symbolic_lstm.document.emit_latex` translates them to the article's
time-indexed notation; the code backends (:mod:`symbolic_lstm.codegen`) print them as code.
"""

from __future__ import annotations

import sympy as sp

#: The Error of one step (the article's Error<t> = ½(â<t> − a<t>)²).
ERROR = sp.Symbol("Error")


class Partial(sp.Expr):
    """∂num/∂den kept unevaluated: one local partial of the chain rule.

    Non-commutative, so a product of partials keeps the order of the chain it was written in
    (∂c/∂Γ_f · ∂Γ_f/∂sum_f · ∂sum_f/∂W_f) instead of SymPy's canonical order.
    """

    is_commutative = False

    def __new__(cls, num: sp.Expr, den: sp.Expr) -> Partial:
        return sp.Expr.__new__(cls, sp.sympify(num), sp.sympify(den))

    @property
    def num(self) -> sp.Expr:
        return self.args[0]

    @property
    def den(self) -> sp.Expr:
        return self.args[1]


def node(name: str) -> sp.Symbol:
    """Value of a node at the current step."""
    return sp.Symbol(name)


def delta(name: str) -> sp.Symbol:
    """δname: dError/dname at the current step, all branches of its fork added."""
    return sp.Symbol(f"delta_{name}")


def future(state: str) -> sp.Symbol:
    """∂E<t+1…>/∂state<t>: the gradient reaching ``state`` from the next step (0 after the last step)."""
    return sp.Symbol(f"d{state}_next")


def target(output: str) -> sp.Symbol:
    """The target value the loss compares ``output`` with (the article's â)."""
    return sp.Symbol(f"{output}_hat")


def is_partial(e: sp.Basic) -> bool:
    return isinstance(e, Partial)


def latex_symbol(name: str) -> str:
    """A node or parameter name as LaTeX: Greek letters as SymPy spells them, a name of several letters as a
    word, not a product of letters (``sum_f`` → ``\\mathrm{sum}_{f}``, ``W_in`` → ``W_{\\mathrm{in}}``),
    ``c_tilde`` → ``\\tilde{c}``."""
    head, _, tail = name.partition("_")
    if tail in ("tilde", "hat", "bar"):
        return r"\%s{%s}" % (tail, latex_symbol(head))

    def word(part: str) -> str:
        printed = sp.latex(sp.Symbol(part))
        return printed if printed.startswith("\\") or len(part) == 1 or not part.isalpha() else r"\mathrm{%s}" % part

    if not tail:
        return word(head) if head.isalpha() else sp.latex(sp.Symbol(name))
    return "%s_{%s}" % (word(head), word(tail) if tail.isalpha() else tail.replace("_", ","))


def one_line(text: str) -> str:
    """``text`` as one printable line: every run of whitespace (newlines, tabs, line separators) one space,
    other control characters dropped — what may follow ``#`` in Python or ``%`` in LaTeX."""
    text = "".join(ch if ch.isprintable() or ch.isspace() else "" for ch in text)
    return " ".join(text.split())
