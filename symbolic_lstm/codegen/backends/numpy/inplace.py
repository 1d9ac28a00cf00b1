"""Print an elementwise expression as NumPy statements that write into an existing buffer.

``dest = Gamma_f*c_prev + Gamma_u*c_tilde`` printed by :class:`~symbolic_lstm.codegen.printer_numpy.KernelPrinter`
allocates a temporary for every operation.  Inside a time loop that is a fresh allocation (and, for large
batches, fresh pages) per operation per step.  :func:`inplace` prints the same expression as a sequence of
ufunc calls with ``out=``::

    np.multiply(Gamma_f, c_prev, out=c)
    np.multiply(Gamma_u, c_tilde, out=_tmp0)
    c += _tmp0

using the destination itself and a few scratch buffers of the same shape (``_tmp0``, ``_tmp1`` …, which the
template allocates once per call).  Leaves (symbols, numbers) are printed by the kernel printer; anything
this lowering does not know falls back to ``dest[...] = <printed expression>``, which is correct, just not
allocation-free.  The destination must not be read by the expression (except as the argument of a chain of
unary functions, ``S = σ(S)``); the caller guarantees it, and :func:`inplace` checks it.
"""

from __future__ import annotations

import sympy as sp

from ....engine.functions import logsigmoid, sigmoid, softsign
from ...lines import Line
from ...printer_numpy import KernelPrinter, heaviside_at_zero

#: Names of the (B, n_a) scratch buffers in-place statements may use (the fused template allocates those used).
SCRATCH = [f"_tmp{i}" for i in range(8)]


class InplaceError(ValueError):
    """The expression reads its own destination."""


def inplace(expr: sp.Expr, dest: str, scratch: list[str], printer: KernelPrinter | None = None) -> list[str]:
    """Statements that leave ``expr`` in the buffer ``dest``, using buffers from ``scratch`` (consumed in order).

    No statement depends on operator precedence: each is one ufunc call on names, numbers and buffers, or an
    augmented assignment by one of them (``c *= 1/3`` evaluates its right side first); what the lowering does not
    know is ``dest[...] = `` the kernel printer's whole expression, parenthesised by SymPy's precedence."""
    lowering = _Lowering(printer or KernelPrinter(), list(scratch))
    reads = {str(s) for s in expr.free_symbols}
    if dest in reads and not _unary_chain_of(expr, dest):
        raise InplaceError(f"{dest} = {expr}: the expression reads its destination")
    lowering.into(expr, dest)
    return lowering.lines


def inplace_lines(expr: sp.Expr, dest: str, comment: str, printer: KernelPrinter) -> list[Line]:
    """``dest = expr`` as ufunc calls writing into ``dest`` (scratch: :data:`SCRATCH`), each a statement of the stage
    ``dest``; ``comment`` on the first."""
    code = inplace(expr, dest, SCRATCH, printer)
    return [Line(c, comment if i == 0 else "", stage=dest) for i, c in enumerate(code)]


#: σ(x) = ½·tanh(SIGMOID_INNER·x) + ½.  The inner factor is linear in x, so a kernel whose σ arguments are
#: matrix products may fold it into the weights once per call (``sigmoid_of_scaled``) instead of scaling
#: the activations at every step.
SIGMOID_INNER = 0.5


def sigmoid_of_scaled(dest: str) -> list[str]:
    """σ(x) in place, for a buffer that already holds SIGMOID_INNER·x: ½·tanh(·) + ½."""
    return [f"np.tanh({dest}, out={dest})", f"{dest} *= 0.5", f"{dest} += 0.5"]


def scratch_needed(expr: sp.Expr) -> int:
    """How many scratch buffers :func:`inplace` uses for ``expr``."""
    probe = _Lowering(KernelPrinter(), [f"_s{i}" for i in range(64)])
    probe.into(expr, "_dest")
    return probe.used


def _unary_chain_of(expr: sp.Expr, name: str) -> bool:
    while isinstance(expr, sp.Function) and len(expr.args) == 1:
        expr = expr.args[0]
    return str(expr) == name


def _is_leaf(e: sp.Expr) -> bool:
    return e.is_Symbol or e.is_Number


def _negated_leaf(e: sp.Expr) -> sp.Expr | None:
    """``x`` if ``e`` is ``-x`` for a leaf x."""
    if e.is_Mul and len(e.args) == 2 and e.args[0] == -1 and _is_leaf(e.args[1]):
        return e.args[1]
    return None


class _Lowering:
    def __init__(self, printer: KernelPrinter, scratch: list[str]) -> None:
        self.p = printer
        self.free = scratch
        self.lines: list[str] = []
        self.used = 0
        self._taken = 0

    def leaf(self, e: sp.Expr) -> str:
        return self.p.doprint(e)

    def take(self) -> str:
        if self._taken >= len(self.free):
            raise InplaceError("not enough scratch buffers")
        name = self.free[self._taken]
        self._taken += 1
        self.used = max(self.used, self._taken)
        return name

    def give_back(self) -> None:
        self._taken -= 1

    def operand(self, e: sp.Expr) -> tuple[str, bool]:
        """A name holding e's value: the leaf itself, or a scratch buffer it was evaluated into."""
        if _is_leaf(e):
            return self.leaf(e), False
        s = self.take()
        self.into(e, s)
        return s, True

    # -- dispatch ------------------------------------------------------------------------------------
    def into(self, e: sp.Expr, dest: str) -> None:
        if e.is_Symbol:
            if str(e) != dest:
                self.emit(f"np.copyto({dest}, {self.leaf(e)})")
        elif e.is_Add:
            self.add(e, dest)
        elif e.is_Mul:
            self.mul(e, dest)
        elif e.is_Pow:
            self.pow(e, dest)
        elif isinstance(e, (sp.Max, sp.Min)):
            self.extremum(e, dest)
        elif isinstance(e, sp.Heaviside):
            arg = e.args[0]
            src = self.leaf(arg) if _is_leaf(arg) else dest
            if not _is_leaf(arg):
                self.into(arg, dest)
            self.emit(f"np.heaviside({src}, {self.leaf(heaviside_at_zero(e))}, out={dest})")
        elif isinstance(e, sp.Function) and len(e.args) == 1 and self.unary(e, dest):
            pass
        else:
            self.emit(f"{dest}[...] = {self.p.doprint(e)}")

    def emit(self, line: str) -> None:
        self.lines.append(line)

    def extremum(self, e: sp.Expr, dest: str) -> None:
        """max(a, b, …) / min(a, b, …) as a chain of np.maximum / np.minimum writing into ``dest``."""
        ufunc = "np.maximum" if isinstance(e, sp.Max) else "np.minimum"
        args = sorted(e.args, key=lambda a: (_is_leaf(a), a.is_Number))  # compound first (into dest), numbers last
        first, *rest = args
        if _is_leaf(first):
            src = self.leaf(first)
        else:
            self.into(first, dest)
            src = dest
        for a in rest:
            name, scratch = (self.leaf(a), False) if _is_leaf(a) else self.operand(a)
            self.emit(f"{ufunc}({src}, {name}, out={dest})")
            src = dest
            if scratch:
                self.give_back()

    def add(self, e: sp.Add, dest: str) -> None:
        const, rest = e.as_coeff_Add()
        terms = sorted(sp.Add.make_args(rest), key=lambda t: _is_leaf(t) or _negated_leaf(t) is not None)
        if len(terms) == 1 and const != 0 and terms[0].could_extract_minus_sign():
            # c − x (1 − Γ, 1 − tanh²c …): x into dest, then one subtraction
            neg = -terms[0]
            src = self.leaf(neg) if _is_leaf(neg) else dest
            if not _is_leaf(neg):
                self.into(neg, dest)
            self.emit(f"np.subtract({self.leaf(const)}, {src}, out={dest})")
            return
        first, others = terms[0], terms[1:]
        if others and _is_leaf(first) and (_is_leaf(others[0]) or _negated_leaf(others[0]) is not None):
            neg = _negated_leaf(others[0])
            if neg is None:
                self.emit(f"np.add({self.leaf(first)}, {self.leaf(others[0])}, out={dest})")
            else:
                self.emit(f"np.subtract({self.leaf(first)}, {self.leaf(neg)}, out={dest})")
            others = others[1:]
        else:
            self.into(first, dest)
        for t in others:
            neg = _negated_leaf(t)
            if neg is not None:
                self.emit(f"{dest} -= {self.leaf(neg)}")
            elif _is_leaf(t):
                self.emit(f"{dest} += {self.leaf(t)}")
            else:
                name, _ = self.operand(t)
                self.emit(f"{dest} += {name}")
                self.give_back()
        if const != 0:
            self.emit(f"{dest} += {self.leaf(const)}")

    def mul(self, e: sp.Mul, dest: str) -> None:
        coeff, rest = e.as_coeff_Mul()
        factors = sp.Mul.make_args(rest)
        # divisors (x**-k) are divided out at the end instead of being inverted first
        divisors = [f.base**-f.exp for f in factors if f.is_Pow and f.exp.is_Integer and f.exp < 0]
        factors = [f for f in factors if not (f.is_Pow and f.exp.is_Integer and f.exp < 0)]
        leaves = [f for f in factors if _is_leaf(f)]
        compound = [f for f in factors if not _is_leaf(f)]
        if not leaves and not compound:
            leaves = [coeff]
            coeff = sp.S.One
        if len(leaves) >= 2:
            self.emit(f"np.multiply({self.leaf(leaves[0])}, {self.leaf(leaves[1])}, out={dest})")
            leaves = leaves[2:]
        elif compound:
            self.into(compound.pop(0), dest)
        elif coeff != 1:  # one leaf times a coefficient
            self.emit(f"np.multiply({self.leaf(leaves.pop())}, {self.leaf(coeff)}, out={dest})")
            coeff = sp.S.One
        else:
            self.emit(f"np.copyto({dest}, {self.leaf(leaves.pop())})")
        for f in leaves:
            self.emit(f"{dest} *= {self.leaf(f)}")
        for f in compound:
            name, _ = self.operand(f)
            self.emit(f"{dest} *= {name}")
            self.give_back()
        for f in divisors:
            name, scratch = self.operand(f)
            self.emit(f"{dest} /= {name}")
            if scratch:
                self.give_back()
        if coeff == -1:
            self.emit(f"np.negative({dest}, out={dest})")
        elif coeff != 1:
            self.emit(f"{dest} *= {self.leaf(coeff)}")

    def pow(self, e: sp.Pow, dest: str) -> None:
        base, exp = e.args
        if not exp.is_Integer or exp == 0:
            self.emit(f"{dest}[...] = {self.p.doprint(e)}")
            return
        k = abs(int(exp))
        if k == 2 and _is_leaf(base):
            self.emit(f"np.multiply({self.leaf(base)}, {self.leaf(base)}, out={dest})")
        else:
            self.into(base, dest)
            if k == 2:
                self.emit(f"np.multiply({dest}, {dest}, out={dest})")
            elif k != 1:
                self.emit(f"np.power({dest}, {k}, out={dest})")
        if exp < 0:
            self.emit(f"np.divide(1, {dest}, out={dest})")

    def unary(self, e: sp.Function, dest: str) -> bool:
        """Apply a known one-argument function in place; False if unknown."""
        arg = e.args[0]
        src = self.leaf(arg) if _is_leaf(arg) else dest
        if isinstance(e, sigmoid):
            # σ(x) = ½·tanh(x/2) + ½: one transcendental, no overflow
            if not _is_leaf(arg):
                self.into(arg, dest)
            self.emit(f"np.multiply({src}, {SIGMOID_INNER}, out={dest})")
            self.lines += sigmoid_of_scaled(dest)
            return True
        if isinstance(e, logsigmoid):
            # log σ(x) = −logaddexp(−x, 0): exact for every x (the log of a computed σ is not)
            if not _is_leaf(arg):
                self.into(arg, dest)
            self.emit(f"np.negative({src}, out={dest})")
            self.emit(f"np.logaddexp({dest}, 0, out={dest})")
            self.emit(f"np.negative({dest}, out={dest})")
            return True
        if isinstance(e, softsign):
            # softsign(x) = x / (1 + |x|): x is read twice, so 1 + |x| goes to scratch (x may live in dest)
            if not _is_leaf(arg):
                self.into(arg, dest)
            s = self.take()
            self.emit(f"np.abs({src}, out={s})")
            self.emit(f"{s} += 1")
            self.emit(f"np.divide({src}, {s}, out={dest})")
            self.give_back()
            return True
        ufuncs = {
            sp.tanh: "tanh", sp.exp: "exp", sp.Abs: "abs", sp.log: "log", sp.sin: "sin", sp.cos: "cos", sp.sign: "sign",
        }  # fmt: skip
        name = ufuncs.get(type(e))
        if name is None:
            return False
        if not _is_leaf(arg):
            self.into(arg, dest)
        self.emit(f"np.{name}({src}, out={dest})")
        return True
