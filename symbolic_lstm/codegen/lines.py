"""What every code backend shares: names and comments in the article's notation, the Jinja2 environment,
the seed partials ∂Error<t>/∂v, and the error a backend raises for a cell it cannot print.

Backends (:mod:`symbolic_lstm.codegen.backends`) print the same
:class:`~symbolic_lstm.codegen.schedule.Schedule`; nothing here decides what a kernel computes.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy as sp

from ..cell import Cell
from ..notation import ERROR, Partial, node
from ..paths import templates_dir

if TYPE_CHECKING:
    import jinja2


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


def unpacking(names: list[str]) -> str:
    """Names as the target of a tuple unpacking: ``a, c`` — and ``a,`` for one name."""
    return ", ".join(names) + ("," if len(names) == 1 else "")


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


#: Names a generated module uses at module level: its imports, its functions and the builtins its code calls.
#: A node or unit parameter may not take one (a local of that name would hide it); names beginning with an
#: underscore are the modules' own helpers.
MODULE_NAMES = frozenset({
    "np", "xp", "array_namespace", "device", "annotations", "math", "scipy",
    "forward", "backward", "mse_loss", "init_params", "init_head", "predict", "predict_proba",
    "softmax_ce_loss", "linear_mse_loss", "release_buffers",
    "range", "float", "int", "len", "tuple", "dict", "set", "list", "isinstance", "ValueError", "TypeError",
    "sum", "max", "min", "abs", "any", "all", "zip", "str", "bool", "object", "type", "iter", "next",
})  # fmt: skip
#: Locals of the loss and head functions, whose first argument is named after the output.
LOSS_LOCALS = frozenset({
    "y", "mode", "check_finite", "labels", "head", "W_y", "b_y", "T", "B", "n_a", "n_y", "scored", "A", "rows",
    "Z", "P", "total", "E", "Y", "dZ", "last", "shape", "text", "grads", "dtype", "name", "v", "diff", "zeros",
})  # fmt: skip


def check_names(cell: Cell, locals_: set[str] | frozenset[str], backend: str) -> None:
    """Refuse a node or unit parameter named like a module-level name or a local of ``backend``'s kernels,
    naming the clash and a way out (the loss functions rename the output's argument themselves)."""
    for name in (*(n for n in cell.widths if cell.state_of_prev(n) is None), *cell.vectors):
        reserved = set(locals_) - {"x"} if name in cell.inputs else locals_  # the kernels' x is the input
        what = "a name the generated module uses itself" if name in MODULE_NAMES else None
        if name.startswith("_"):
            what = "names beginning with _ are the generated modules' own helpers"
        elif name in reserved and what is None:
            what = f"a variable of the {backend} kernels"
        if what:
            raise CodegenError(
                f"cell {cell.name!r}: the node {name!r} clashes with {what}; rename it in the cell "
                f"(for example {name.strip('_') + '_node'!r})"
            )


def param_shape_code(cell: Cell) -> dict[str, tuple[str, ...]]:
    """Every parameter's shape as code in n_a and n_x, in ``cell.params`` order: a weight ("n_a", "n_a + n_x"),
    a bias ("n_a",), a unit parameter ("n_a",); a stage of n_x units has n_x rows (the Mogrifier's Q)."""
    shapes: dict[str, tuple[str, ...]] = {}
    for st in cell.linear_stages:
        rows = cell.width(st.name)
        shapes[st.weight] = (rows, " + ".join(cell.width(k) for k in st.inputs))
        if st.bias is not None:
            shapes[st.bias] = (rows,)
    shapes.update({v: ("n_a",) for v in cell.vectors})
    return {name: shapes[name] for name in cell.params}


def output_argument(cell: Cell) -> str:
    """The loss and head functions' name for the output: the output's own, unless one of their locals has it
    (LEM's y, as the paper names it, beside the targets y): then ``<output>_out``."""
    out = cell.output
    return out if out not in LOSS_LOCALS and f"d{out}" not in LOSS_LOCALS else f"{out}_out"


class ModuleApi:
    """What every backend's plan says about the generated module's API: the sequences ``forward`` returns,
    and the loss functions' name for the output."""

    cell: Cell

    @property
    def returns(self) -> tuple[str, ...]:
        """What forward returns before the cache (see :attr:`~symbolic_lstm.cell.Cell.returns`)."""
        return self.cell.returns

    @property
    def out_arg(self) -> str:
        """The loss and head functions' argument for the output (see :func:`output_argument`)."""
        return output_argument(self.cell)

    def width(self, name: str) -> str:
        """A node's width as code: "n_a", "n_x" or "1"."""
        return self.cell.width(name)

    @property
    def param_shapes(self) -> dict[str, str]:
        """Each parameter's shape as code in n_a and n_x: ``"(n_a, n_a + n_x)"``, ``"(n_a,)"``."""
        return {
            k: "(" + ", ".join(v) + ("," if len(v) == 1 else "") + ")" for k, v in param_shape_code(self.cell).items()
        }

    @property
    def n_a_from(self) -> str:
        """A parameter whose first axis is n_a (the kernels read n_a from it)."""
        return next(k for k, v in param_shape_code(self.cell).items() if v[0] == "n_a")


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
    """Compact text for comments: ∂c<t>/∂Γ_f<t>, δc<t+1>, σ(…), products with '·', squares with '²'; chain order
    kept.  Unambiguous read as Python reads it (``·`` as ``*``, ``²`` as ``**2``) and as a person reads it: a
    fraction's denominator ends its product (``a/n²``, ``a·b/(c·d)``: SymPy's own layout), and every rule
    parenthesises its operands through SymPy's ``precedence`` and ``self.parenthesize``."""

    printmethod = "_comment"  # the package's functions print themselves (functions.py): σ(…), Σ_i(…), 1/√(…)

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
        """SymPy's product, each ``*`` (not ``**``) written ``·``."""
        return re.sub(r"(?<!\*)\*(?!\*)", "·", super()._print_Mul(expr))

    def _print_Pow(self, expr: sp.Pow, rational: bool = False) -> str:
        """``x²``; a base that is itself a power is parenthesised, ``(x**y)²`` (``x**y²`` is x^(y²)), as SymPy
        parenthesises a power's base."""
        if expr.exp == 2:
            return self.parenthesize(expr.base, sp.printing.precedence.PRECEDENCE["Pow"]) + "²"
        return super()._print_Pow(expr, rational)

    def _print_Heaviside(self, expr: sp.Expr) -> str:
        """``H(x)``: H(0) = 0, as the kernels compute it; ``H(x, h0)`` when the cell gave another value at 0."""
        from ..printer_numpy import heaviside_at_zero

        h0 = heaviside_at_zero(expr)
        return f"H({self._print(expr.args[0])}" + (f", {self._print(h0)})" if h0 != 0 else ")")

    def _print_Max(self, expr: sp.Expr) -> str:
        """``max(a, b)``: a call."""
        return f"max({', '.join(self._print(a) for a in expr.args)})"

    def _print_Min(self, expr: sp.Expr) -> str:
        """``min(a, b)``: a call."""
        return f"min({', '.join(self._print(a) for a in expr.args)})"


def template_env() -> jinja2.Environment:
    """The Jinja2 environment every backend renders with: strict, whitespace-exact, the comment filters."""
    import jinja2

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
