"""Elementwise activations SymPy lacks, written so their derivatives stay in terms of themselves.

SymPy has no sigmoid: ``diff(1/(1 + exp(-x)))`` gives ``exp(-x)/(1 + exp(-x))**2`` and simplification
turns it into ``1/(4*cosh(x/2)**2)``.  A ``Function`` subclass whose ``fdiff`` returns ``σ(x)(1 − σ(x))``
keeps every derivative expressible through the stored gate activation Γ = σ(sum), which is what the
article (and any fast kernel) uses.

Each function carries its printing beside its derivative, one place per primitive (the HIPS-autograd way),
through SymPy's print methods: ``_numpycode`` (every NumPy-flavoured kernel printer; ``np.``/``xp.`` come
from the printer's ``_module_format``), ``_latex`` (``sympy.latex`` and the article's printer) and
``_comment`` (the generated code's comments).  A function of a user's own works the same way.
"""

from __future__ import annotations

import sympy as sp
from sympy.printing.precedence import PRECEDENCE

#: Indices of nested sums over units in LaTeX (Σ_i … Σ_j …).
UNIT_INDICES = "ijklmn"


def latex_call(head: str, arg: str, exp: str | None = None) -> str:
    r"""``head(arg)`` in LaTeX, raised to ``exp`` as SymPy writes a function's power: ``\sigma^{2}\left(x\right)``
    reads as σ(x)²; a negative superscript on a function's name reads as its inverse (tanh⁻¹ is artanh), so a
    negative power parenthesises the call instead: ``\left(\sigma\left(x\right)\right)^{-1.0}``."""
    call = r"%s\left(%s\right)" % (head, arg)
    if exp is None:
        return call
    if exp.lstrip().startswith("-"):
        return r"\left(%s\right)^{%s}" % (call, exp)
    return r"%s^{%s}\left(%s\right)" % (head, exp, arg)


class sigmoid(sp.Function):  # noqa: N801  (SymPy's convention: functions are lower-case classes)
    """The logistic function σ(x) = 1 / (1 + e^{−x}); σ'(x) = σ(x)(1 − σ(x))."""

    nargs = 1

    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        if x.is_zero:
            return sp.S.Half
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        if argindex != 1:
            raise sp.ArgumentIndexError(self, argindex)
        return self * (1 - self)

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return 1 / (1 + sp.exp(-x))

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return self.rewrite(sp.exp)._eval_evalf(prec)

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    # -- printing --------------------------------------------------------------------------------------
    def _numpycode(self, printer: sp.printing.printer.Printer) -> str:
        """½·tanh(x/2) + ½: one ufunc, no overflow for any |x| (1/(1 + exp(−x)) overflows in float32 for
        x < −89)."""
        arg = printer._print(sp.Rational(1, 2) * self.args[0])
        return f"(0.5*{printer._module_format('numpy.tanh')}({arg}) + 0.5)"

    def _latex(self, printer: sp.printing.printer.Printer, exp: str | None = None) -> str:
        r"""``\sigma\left(x\right)``, a power as :func:`latex_call` writes it."""
        return latex_call(r"\sigma", printer._print(self.args[0]), exp)

    def _comment(self, printer: sp.printing.printer.Printer) -> str:
        """``σ(x)``: a call."""
        return f"σ({printer._print(self.args[0])})"


class softsign(sp.Function):  # noqa: N801
    """``softsign(x) = x / (1 + |x|)``; its derivative ``1 / (1 + |x|)²`` needs the pre-activation x."""

    nargs = 1

    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        if x.is_zero:
            return sp.S.Zero
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        if argindex != 1:
            raise sp.ArgumentIndexError(self, argindex)
        return 1 / (1 + sp.Abs(self.args[0])) ** 2

    def _eval_rewrite_as_Abs(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return x / (1 + sp.Abs(x))

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return self.rewrite(sp.Abs)._eval_evalf(prec)

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    # -- printing --------------------------------------------------------------------------------------
    def _numpycode(self, printer: sp.printing.printer.Printer) -> str:
        """x/(1 + |x|), |x| as the printer spells it (the complex-step printer takes the branch)."""
        x = self.args[0]
        return f"({printer.parenthesize(x, PRECEDENCE['Mul'])}/(1 + {printer._print(sp.Abs(x, evaluate=False))}))"

    def _latex(self, printer: sp.printing.printer.Printer, exp: str | None = None) -> str:
        r"""``\operatorname{softsign}\left(x\right)``, a power as :func:`latex_call` writes it."""
        return latex_call(r"\operatorname{softsign}", printer._print(self.args[0]), exp)


class rsqrt(sp.Function):  # noqa: N801
    """rsqrt(x) = 1/√x (layer normalisation's 1/√(var + ε)); rsqrt'(x) = −½·rsqrt(x)³, through itself."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        if argindex != 1:
            raise sp.ArgumentIndexError(self, argindex)
        return -sp.Rational(1, 2) * self**3

    def _eval_rewrite_as_Pow(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return 1 / sp.sqrt(x)

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return self.rewrite(sp.Pow)._eval_evalf(prec)

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_positive

    # -- printing --------------------------------------------------------------------------------------
    def _numpycode(self, printer: sp.printing.printer.Printer) -> str:
        """``(1/np.sqrt(x))``: a division, parenthesised (it stands where a call would)."""
        return f"(1/{printer._module_format('numpy.sqrt')}({printer._print(self.args[0])}))"

    def _latex(self, printer: sp.printing.printer.Printer, exp: str | None = None) -> str:
        r"""``\frac{1}{\sqrt{x}}`` (a fraction groups itself); a power parenthesises it."""
        body = r"\frac{1}{\sqrt{%s}}" % printer._print(self.args[0])
        return r"\left(%s\right)^{%s}" % (body, exp) if exp else body

    def _comment(self, printer: sp.printing.printer.Printer) -> str:
        """``(1/√(x))``: a division, parenthesised (``y/1/√(x)`` or ``a**1/√(x)`` would read otherwise)."""
        return f"(1/√({printer._print(self.args[0])}))"


class UnitSum(sp.Function):
    """Σ_i over the n_a units of one batch row (a reduction; the δ of a per-row scalar such as a mean).

    Never differentiated: the engine writes it where a per-row scalar fans out to every unit.
    """

    nargs = 1

    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        """Σ_i 0 = 0 (a per-row scalar read only where its derivative vanishes): the kernels then print a δ
        of zeros in the row's shape, not a sum over the units of a number."""
        return sp.S.Zero if x.is_zero else None

    # -- printing --------------------------------------------------------------------------------------
    def _numpycode(self, printer: sp.printing.printer.Printer) -> str:
        return f"{printer._module_format('numpy.sum')}({printer._print(self.args[0])}, axis=-1, keepdims=True)"

    def _latex(self, printer: sp.printing.printer.Printer, exp: str | None = None) -> str:
        """Σ_i (…)_i; a sum inside a sum takes the next index (the printer counts the depth)."""
        depth = getattr(printer, "unit_depth", 0)
        idx = UNIT_INDICES[min(depth, len(UNIT_INDICES) - 1)]
        printer.unit_depth = depth + 1  # type: ignore[attr-defined]
        try:
            inner = printer._print(self.args[0])
        finally:
            printer.unit_depth = depth  # type: ignore[attr-defined]
        body = r"\sum_{%s=1}^{n_a} \left(%s\right)_{%s}" % (idx, inner, idx)
        return r"\left(%s\right)^{%s}" % (body, exp) if exp else body

    def _comment(self, printer: sp.printing.printer.Printer) -> str:
        return f"Σ_i({printer._print(self.args[0])})"


class logsigmoid(sp.Function):  # noqa: N801
    """log σ(x) = −log(1 + e^{−x}); its derivative 1 − σ(x).

    A cell that writes ``log(sigmoid(s))`` (the sLSTM's stabiliser, log f = log σ(f~)) gets this function in its
    place (:func:`canonical`): the log of a computed σ is not accurate in float64 where σ is small — ½·tanh(x/2)
    + ½ keeps only its absolute precision below x ≈ −20 and is 0 below −37, whose log is −∞ — while
    ``−logaddexp(−x, 0)`` is exact to round-off for every x.
    """

    nargs = 1

    @classmethod
    def eval(cls, x: sp.Expr) -> sp.Expr | None:
        if x.is_zero:
            return -sp.log(2)
        return None

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        if argindex != 1:
            raise sp.ArgumentIndexError(self, argindex)
        return 1 - sigmoid(self.args[0])

    def _eval_rewrite_as_exp(self, x: sp.Expr, **kwargs: object) -> sp.Expr:
        return -sp.log(1 + sp.exp(-x))

    def _eval_evalf(self, prec: int) -> sp.Expr:
        return self.rewrite(sp.exp)._eval_evalf(prec)

    def _eval_is_real(self) -> bool | None:
        return self.args[0].is_real

    # -- printing --------------------------------------------------------------------------------------
    def _numpycode(self, printer: sp.printing.printer.Printer) -> str:
        """``(-np.logaddexp(-x, 0))``: log σ(x) = −log(e^{−x} + e^0), exact for every x; parenthesised."""
        return f"(-{printer._module_format('numpy.logaddexp')}({printer._print(-self.args[0])}, 0))"

    def _latex(self, printer: sp.printing.printer.Printer, exp: str | None = None) -> str:
        r"""``\log\sigma\left(x\right)``; a power parenthesises the whole."""
        body = r"\log\sigma\left(%s\right)" % printer._print(self.args[0])
        return r"\left(%s\right)^{%s}" % (body, exp) if exp else body

    def _comment(self, printer: sp.printing.printer.Printer) -> str:
        """``log(σ(x))``: a call."""
        return f"log(σ({printer._print(self.args[0])}))"


def canonical(expr: sp.Expr) -> sp.Expr:
    """A stage's expression as the engine takes it: ``log(sigmoid(u))`` as :class:`logsigmoid` ``(u)`` (the same
    function, computed exactly where σ(u) is tiny)."""
    if not expr.has(sp.log) or not expr.has(sigmoid):
        return expr
    return expr.replace(
        lambda e: isinstance(e, sp.log) and isinstance(e.args[0], sigmoid), lambda e: logsigmoid(e.args[0].args[0])
    )


#: Activations a cell definition may use, by name (for user-facing messages and cell files).
ACTIVATIONS: dict[str, type[sp.Function]] = {
    "sigmoid": sigmoid,
    "tanh": sp.tanh,
    "softsign": softsign,
    "rsqrt": rsqrt,
    "logsigmoid": logsigmoid,
}


#: Functions with kinks or jumps.  Their derivatives are SymPy's (Heaviside, sign, Piecewise), printed with
#: PyTorch's convention at the kink: relu′(0) = 0, |x|′(0) = sign(0) = 0, clip′ = 0 on its bounds, and the
#: derivative of a jump (DiracDelta) 0 everywhere, as autograd computes it.
NONSMOOTH: tuple[type[sp.Basic], ...] = (sp.Max, sp.Min, sp.Abs, sp.Heaviside, sp.Piecewise, sp.sign)


class _RealAbs(sp.Function):
    """|u| of a real-valued u, whatever SymPy can tell of u: d|u| = sign(u)·du (for :func:`diff_real`)."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return sp.sign(self.args[0])


class _RealSign(sp.Function):
    """sign(u) of a real-valued u: d sign(u) = 2·δ(u)·du (for :func:`diff_real`)."""

    nargs = 1

    def fdiff(self, argindex: int = 1) -> sp.Expr:
        return 2 * sp.DiracDelta(self.args[0])


def diff_real(expr: sp.Expr, wrt: sp.Symbol) -> sp.Expr:
    """∂expr/∂wrt with every symbol — and so every value a stage computes — taken as real, as a cell's are.

    Node symbols carry no assumptions, and for a complex x SymPy's ∂|x|/∂x is written through re(x) and
    im(x), and ∂sign(x)/∂x stays unevaluated; for real x they are sign(x) and 2·DiracDelta(x).  Real symbols
    are not enough where the argument is a function SymPy cannot prove real (|σ(s)^v|, sign(log(1 + |s|)),
    or the proof's stand-ins): |·| and sign are differentiated as functions of a real argument, by the chain
    rule, whatever their argument.  Every other derivative is SymPy's.
    """
    real = {
        s: sp.Dummy(s.name, real=True) for s in expr.free_symbols | {wrt} if isinstance(s, sp.Symbol) and not s.is_real
    }
    back = {v: k for k, v in real.items()}
    body = expr.xreplace(real)
    kinked = body.has(sp.Abs, sp.sign)
    if kinked:
        body = body.replace(sp.Abs, _RealAbs).replace(sp.sign, _RealSign)
    d = sp.diff(body, real.get(wrt, wrt))
    if kinked:
        d = d.replace(_RealAbs, sp.Abs).replace(_RealSign, sp.sign)
    return d.xreplace(back)
