r"""A strict reader of the LaTeX our printers write, back into a SymPy expression: the judge of the LaTeX
round trip in ``test_printers.py``.

It reads the conventions of written mathematics, not what a printer meant: juxtaposition is a product and binds
tighter than ``+``/``−``; a leading ``−`` negates the whole product that follows it; ``x^{e}`` raises only the
atom, group or call before it; ``\frac``, ``\sqrt``, braces and ``\left(…\right)`` group; ``\tanh^{2}(x)`` is
tanh(x)²; a call's argument list is delimited.  It refuses what a reader could take two ways rather than guess:
two juxtaposed numbers (``2 3``), a negative superscript on a function name (``\tanh^{-1}(x)`` is artanh to many
readers), a chain of relations, ∧ and ∨ mixed without parentheses, a double superscript.

Names: single letters with an optional subscript (``u_{0}`` → ``u0``), ``e`` is Euler's number; functions as
SymPy and this package print them: ``\tanh``, ``\log``, ``\exp``, ``\max``, ``\min``, ``\left|x\right|``,
``\sqrt``, ``\operatorname{sign}``, ``\operatorname{softsign}``, ``\sigma`` (the logistic function), ``\theta``
(Heaviside, ``\theta(x, h_0)`` with an explicit value at 0), ``\delta`` (DiracDelta), ``\operatorname{ITE}``,
and ``\begin{cases} … \end{cases}`` (Piecewise).
"""

from __future__ import annotations

import re

import sympy as sp

from symbolic_lstm.engine.functions import sigmoid, softsign


def _neg(e: sp.Expr) -> sp.Expr:
    return sp.Mul(sp.S.NegativeOne, e, evaluate=False)


class LatexReadError(ValueError):
    """The text is not LaTeX this reader understands, or a reader could take it two ways."""


_TOKEN = re.compile(
    r"""
    (?P<space>\s+|\\[,:;!](?![a-zA-Z])|\\quad\b)
  | \\left\s*(?P<lopen>[(\[|.])
  | \\right\s*(?P<rclose>[)\]|.])
  | \\begin\{(?P<begin>\w+)\}
  | \\end\{(?P<end>\w+)\}
  | \\text\{(?P<text>[^{}]*)\}
  | \\operatorname\{(?P<opname>\w+)\}
  | \\mathrm\{(?P<mathrm>\w+)\}
  | (?P<rowsep>\\\\)
  | \\(?P<cmd>[a-zA-Z]+)
  | (?P<num>\d+(?:\.\d+)?)
  | (?P<letter>[a-zA-Z])
  | (?P<punct>[{}()\[\]^_+\-&,<>=|])
    """,
    re.VERBOSE,
)

_RELATIONS = {"<": sp.StrictLessThan, ">": sp.StrictGreaterThan, "leq": sp.LessThan, "le": sp.LessThan,
              "geq": sp.GreaterThan, "ge": sp.GreaterThan}  # fmt: skip
_FUNCTIONS = {
    ("cmd", "tanh"): sp.tanh, ("cmd", "log"): sp.log, ("cmd", "exp"): sp.exp, ("cmd", "max"): sp.Max,
    ("cmd", "min"): sp.Min, ("cmd", "sigma"): sigmoid, ("cmd", "theta"): sp.Heaviside, ("cmd", "delta"): sp.DiracDelta,
    ("opname", "sign"): sp.sign, ("opname", "softsign"): softsign, ("opname", "ITE"): sp.ITE,
}  # fmt: skip


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise LatexReadError(f"cannot read {text[pos : pos + 20]!r}")
        pos = m.end()
        kind = m.lastgroup
        assert kind is not None
        if kind != "space":
            out.append((kind, m.group(kind)))
    return out


def read_latex(text: str) -> sp.Basic:
    """The expression ``text`` denotes (see module docstring), built unevaluated (``evaluate=False``: exactly
    what the text says, not SymPy's canonical form of it); :class:`LatexReadError` if it can't say."""
    return _Reader(_tokens(text)).whole()


class _Reader:
    def __init__(self, tokens: list[tuple[str, str]]) -> None:
        self.t = tokens
        self.i = 0

    # -- tokens ----------------------------------------------------------------------------------------
    def peek(self, ahead: int = 0) -> tuple[str, str]:
        j = self.i + ahead
        return self.t[j] if j < len(self.t) else ("eof", "")

    def next(self) -> tuple[str, str]:
        tok = self.peek()
        if tok[0] == "eof":
            raise LatexReadError("unexpected end")
        self.i += 1
        return tok

    def expect(self, kind: str, value: str) -> None:
        tok = self.next()
        if tok != (kind, value):
            raise LatexReadError(f"expected {value!r}, got {tok[1]!r} at token {self.i - 1}")

    def at(self, kind: str, value: str | None = None) -> bool:
        k, v = self.peek()
        return k == kind and (value is None or v == value)

    def whole(self) -> sp.Basic:
        out = self.expression()
        if self.peek()[0] != "eof":
            raise LatexReadError(f"unread rest from token {self.i}: {self.t[self.i :]}")
        return out

    # -- expressions -------------------------------------------------------------------------------------
    def expression(self) -> sp.Expr:
        """A sum of terms; a leading − or + applies to the first term (a whole product)."""
        negate = False
        if self.at("punct", "-") or self.at("punct", "+"):
            negate = self.next()[1] == "-"
        acc = self.term()
        if negate:
            acc = _neg(acc)
        while self.at("punct", "+") or self.at("punct", "-"):
            op = self.next()[1]
            t = self.term()
            acc = sp.Add(acc, t if op == "+" else _neg(t), evaluate=False)
        return acc

    def _starts_factor(self) -> bool:
        k, v = self.peek()
        if k in ("num", "letter", "begin"):
            return True
        if k == "lopen":
            return v in "(|"
        if k == "punct":
            return v == "{"
        if k == "cmd":
            return v in ("frac", "sqrt") or (k, v) in _FUNCTIONS
        return k == "opname"

    def term(self) -> sp.Expr:
        """Factors, juxtaposed or joined by \\cdot / \\times."""
        acc = self.factor()
        while True:
            if self.at("cmd", "cdot") or self.at("cmd", "times"):
                self.next()
                acc = sp.Mul(acc, self.factor(), evaluate=False)
            elif self._starts_factor():
                if self.at("num"):
                    raise LatexReadError("two juxtaposed numbers (or a number after a factor): write \\cdot")
                acc = sp.Mul(acc, self.factor(), evaluate=False)
            else:
                return acc

    def factor(self) -> sp.Expr:
        base = self.primary()
        if self.at("punct", "^"):
            self.next()
            base = sp.Pow(base, self.superscript(), evaluate=False)
            if self.at("punct", "^"):
                raise LatexReadError("double superscript")
        return base

    def superscript(self) -> sp.Expr:
        if self.at("punct", "{"):
            return self.group()
        k, v = self.next()  # x^2: one token
        if k == "num" and len(v) == 1:
            return sp.Integer(v)
        if k == "letter":
            return sp.Symbol(v)
        raise LatexReadError(f"superscript {v!r} without braces")

    def group(self) -> sp.Expr:
        self.expect("punct", "{")
        out = self.expression()
        self.expect("punct", "}")
        return out

    def primary(self) -> sp.Expr:
        k, v = self.peek()
        if k == "num":
            self.next()
            return sp.Float(v) if "." in v else sp.Integer(v)
        if k == "letter":
            return self.name()
        if k == "punct" and v == "{":
            return self.group()
        if k == "lopen" and v == "(":
            self.next()
            out = self.expression()
            self.expect("rclose", ")")
            return out
        if k == "lopen" and v == "|":
            self.next()
            out = sp.Abs(self.expression(), evaluate=False)
            self.expect("rclose", "|")
            return out
        if k == "cmd" and v == "frac":
            self.next()
            num = self.group()
            return sp.Mul(num, sp.Pow(self.group(), -1, evaluate=False), evaluate=False)
        if k == "cmd" and v == "sqrt":
            self.next()
            n = 2
            if self.at("punct", "["):
                self.next()
                n = int(self.next()[1])
                self.expect("punct", "]")
            return sp.Pow(self.group(), sp.Rational(1, n), evaluate=False)
        if (k, v) in _FUNCTIONS:
            self.next()
            return self.call(_FUNCTIONS[(k, v)])
        if k == "begin" and v == "cases":
            return self.cases()
        raise LatexReadError(f"unexpected {v!r} ({k}) at token {self.i}")

    def name(self) -> sp.Expr:
        _, letter = self.next()
        if self.at("punct", "_"):
            self.next()
            if self.at("punct", "{"):
                self.next()
                sub = ""
                while not self.at("punct", "}"):
                    sub += self.next()[1]
                self.next()
            else:
                sub = self.next()[1]
            return sp.Symbol(letter + sub)
        return sp.E if letter == "e" else sp.Symbol(letter)

    def call(self, f: type[sp.Basic]) -> sp.Expr:
        """``f(args)``, ``f{(args)}`` (SymPy's braces) or ``f^{p}(args)`` = f(args)^p (p not negative)."""
        power = None
        if self.at("punct", "^"):
            self.next()
            power = self.superscript()
            if power.could_extract_minus_sign():
                raise LatexReadError(f"{f}^{{{power}}}(…): an inverse function or a power?")
        braced = self.at("punct", "{")
        if braced:
            self.next()
        self.expect("lopen", "(")
        args = [self.condition() if f is sp.ITE else self.expression()]
        while self.at("punct", ","):
            self.next()
            args.append(self.condition() if f is sp.ITE else self.expression())
        self.expect("rclose", ")")
        if braced:
            self.expect("punct", "}")
        out = f(*args, evaluate=False)
        return sp.Pow(out, power, evaluate=False) if power is not None else out

    def cases(self) -> sp.Expr:
        self.expect("begin", "cases")
        pieces = []
        while True:
            value = self.expression()
            self.expect("punct", "&")
            k, v = self.next()
            if (k, v) == ("text", "otherwise"):
                pieces.append((value, sp.true))
            elif (k, v) == ("text", "for"):
                pieces.append((value, self.condition()))
            else:
                raise LatexReadError(f"cases row without 'for' or 'otherwise': {v!r}")
            if self.at("rowsep"):
                self.next()
                continue
            self.expect("end", "cases")
            return sp.Piecewise(*pieces, evaluate=False)

    # -- conditions ----------------------------------------------------------------------------------------
    def condition(self) -> sp.Basic:
        """Relations joined by one of \\wedge or \\vee (mixing them needs parentheses)."""
        first = self.condition_atom()
        ops = []
        parts = [first]
        while self.at("cmd", "wedge") or self.at("cmd", "vee"):
            ops.append(self.next()[1])
            parts.append(self.condition_atom())
        if len(set(ops)) > 1:
            raise LatexReadError("∧ and ∨ mixed without parentheses")
        if not ops:
            return first
        return (sp.And if ops[0] == "wedge" else sp.Or)(*parts, evaluate=False)

    def condition_atom(self) -> sp.Basic:
        if self.at("text", "True") or self.at("text", "False"):
            return sp.true if self.next()[1] == "True" else sp.false
        if self.at("opname", "ITE"):
            self.next()
            return self.call(sp.ITE)
        start = self.i
        try:
            return self.relation()
        except LatexReadError:
            if not self.t[start] == ("lopen", "("):
                raise
            self.i = start + 1
            out = self.condition()
            self.expect("rclose", ")")
            return out

    def relation(self) -> sp.Basic:
        lhs = self.expression()
        op = self._relation_op()
        rhs = self.expression()
        if self._relation_op(peek=True) is not None:
            raise LatexReadError("a chain of relations")
        return op(lhs, rhs, evaluate=False)

    def _relation_op(self, peek: bool = False) -> type[sp.Basic] | None:
        k, v = self.peek()
        op = _RELATIONS.get(v) if k in ("punct", "cmd") else None
        if peek:
            return op
        if op is None:
            raise LatexReadError(f"expected a relation, got {v!r}")
        self.next()
        return op
