"""What every code backend shares: names and comments in the article's notation, the Jinja2 environment,
the seed partials ∂Error<t>/∂v, and the error a backend raises for a cell it cannot print.

Backends (:mod:`symbolic_lstm.codegen.backends`) print the same
:class:`~symbolic_lstm.codegen.schedule.Schedule`; nothing here decides what a kernel computes.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import sympy as sp

from ..engine.cell import Cell
from ..engine.notation import ERROR, Partial, node
from ..engine.reserved import FREE_ARGUMENTS
from ..engine.stages import Linear, Stage
from ..runtime.paths import templates_dir

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


#: The kernels' own names that stand for nothing of the cell (buffers, scratch, locals, the modules' helpers), in
#: every backend's templates and plans: :class:`OwnNames` never gives one of them to anything else.
FIXED: frozenset[str] = frozenset({
    # the NumPy kernels' buffers and views: the gate buffer and its steps, sums, δ's, weight gradients, scratch
    "_gates", "_by_gate", "_pre", "_fold", "_b_gates", "_b_by_gate", "_S", "_SW", "_SW_by_gate", "_SX",
    "_SX_by_gate", "_dgates", "_dS", "_dS2", "_dSr", "_dSr_by_gate", "_dW", "_dW_by_gate", "_db", "_db_by_gate",
    *(f"_tmp{i}" for i in range(8)), "_arrays", "_dtype",
    # the array-API and JAX kernels': per-step lists and sequences, the scans' carries and stacks
    "_initial", "_steps", "_seq", "_values", "_grads", "_d", "_d0", "_D", "_D_all", "_D_step", "_D_sums",
    "_carry", "_per_step", "_step", "_stacked", "_ys", "_zeros", "_seeds", "_value", "_x",
    # the losses' and heads' locals
    "_E", "_grad", "_last", "_diff", "_A", "_P", "_Y", "_Z", "_dZ", "_W_y", "_b_y", "_n_y", "_rows", "_scored",
    "_total", "_head_grads", "_head", "_mode", "_want", "_shape", "_text",
    # the input checks' and helpers' locals
    "_k", "_v", "_n", "_s", "_e", "_y", "_ok", "_name", "_names", "_given", "_like", "_width", "_spare", "_first",
    "_missing", "_extra", "_sizes", "_flipped", "_Wx", "_rng", "_shapes",
    # the modules' private helpers and constants
    "_prepare", "_array", "_finite", "_float_dtype", "_size", "_state", "_seed", "_target", "_buffer", "_recycle",
    "_check_cache", "_head_inputs", "_labels", "_check", "_stack", "_initial_state", "_param_shape", "_outer",
    "_precision", "_scored_steps", "_scatter", "_forward", "_backward", "_CACHE_KEYS", "_FLOATS", "_SPARE",
    "_WIDTH",
    # per-sequence lengths: the checked lengths, the carry-over select and the folded seeds
    "_L", "_lengths", "_ends", "_by_length", "_sorted", "_seqs", "_after_end", "_past", "_moved",
    "_output_seed", "_state_seed", "_live", "_live_all", "_live_mask", "_returned", "_zero",
})  # fmt: skip
#: How each kind of the kernels' own names that stands for something of the cell is spelled: ``"seq"`` of the node
#: ``c`` is ``_c_seq``.  A name's key is its kind and what it stands for (``("seq", "c")``).
FORMS: dict[str, str] = {
    "seq": "{}_seq",  # a node's value at every step
    "all": "{}_all",  # the input's (or a previous state's) value at every step, (T, B, ·)
    "d": "d{}",  # ∂E/∂x<t> of the input
    "d_all": "d{}_all",  # the same, kept at every step
    "d_own": "d{}_own",  # ∂E/∂x<t>'s branches that are not products
    "grad": "grad_{}",  # a unit parameter's gradient, summed over the steps
    "dsum": "dsum_{}",  # a linear stage's δ at every step
    "W": "W_{}",  # an operand's columns of every weight that reads it
    "WT": "WT_{}",  # the same, transposed (contiguous for BLAS)
    "SW": "SW_{}",  # scratch for the step's product over an operand
    "dSr": "dSr_{}",  # the row-major δsum of the stages that read an operand
    "dW": "dW_{}",  # an operand's weight gradient
    "dW_by_gate": "dW_{}_by_gate",
    "rows": "{}_rows",  # an operand's columns of the row-major gate buffer
    "gates": "{}_gates",  # the gates that read an operand
    "prime": "{}_prime",  # σ' of a gate
    "XW": "XW_{}",  # a linear stage's product over the input, one step
    "XW_all": "XW_{}_all",  # the same, every step
    "P": "P_{}",  # one step's product over an operand, for every stage that reads it
    "WS": "WS_{}",  # the columns of the stages that read an operand, stacked
    "D": "D_{}",  # a unit parameter's δ at every step
}


class OwnNames:
    """The kernels' own names for one cell, module-wide.

    Every one begins with ``_``, which no cell name may (:mod:`symbolic_lstm.engine.reserved`), so none meets a cell's
    name; each reads as what it names (``_c_seq``, ``_W_x``, ``_tanh_c``, ``_f_``).  No two name different things:
    a plan registers every name it prints once, in one order, before printing any (:meth:`add`); a spelling
    already given, or one of :data:`FIXED`, takes a number (``_W_c_seq2``), which only a cell naming one node
    ``W_c`` and another ``c_seq`` ever sees.  Looking up a name that was not registered is an error, so the
    module's text never depends on the order its parts are printed in.

    ``avoid``: the names a symbol of the expressions the backends print may have besides the own ones (the cell's,
    and those its states give the code): see :meth:`symbol`.
    """

    def __init__(self, avoid: Iterable[str] = ()) -> None:
        self._given: dict[tuple[Hashable, ...], str] = {}
        self._taken: set[str] = set(FIXED)
        self._avoid = set(avoid)
        self._symbols: dict[tuple[Hashable, ...], sp.Symbol] = {}
        #: What a printer prints for each symbol of :meth:`symbol`: its own name.
        self.printed: dict[str, str] = {}

    def add(self, *key: Hashable, text: str | None = None) -> str:
        """Register the name of ``key`` (its kind, then what it stands for), spelled ``_`` + ``text`` (default: the
        kind's :data:`FORMS` with the rest of the key), numbered where that is taken; return it."""
        if key in self._given:
            return self._given[key]
        base = "_" + (FORMS[str(key[0])].format(*key[1:]) if text is None else text)
        name, n = base, 1
        while name in self._taken:
            n += 1
            name = f"{base}{n}"
        self._given[key] = name
        self._taken.add(name)
        return name

    def __call__(self, *key: Hashable) -> str:
        """The registered name of ``key``."""
        try:
            return self._given[key]
        except KeyError:
            raise KeyError(f"no own name was registered for {key!r}") from None

    @property
    def names(self) -> frozenset[str]:
        """Every name registered."""
        return frozenset(self._given.values())

    def symbol(self, *key: Hashable) -> sp.Symbol:
        """The registered name of ``key`` as a SymPy symbol, for an expression a printer prints (tanh(c<t>) stored
        as ``_tanh_c``, σ' as ``_Gamma_f_prime``).  SymPy orders a product's factors by their names, so the symbol
        is named without the ``_`` (``tanh_c``): the kernels multiply in the order they always did.  Where a cell's
        name, or a δ's, is that, the symbol takes the own name itself.  Printers print it as :attr:`printed` says.
        """
        if key not in self._symbols:
            name = self(*key)
            plain = name[1:]
            if plain in self._avoid or plain.startswith("delta_") or not plain.isidentifier():
                plain = name
            self._symbols[key] = sp.Symbol(plain)
            self.printed[plain] = name
        return self._symbols[key]


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
    """The loss and head functions' name for the output: the output's own, unless one of their other arguments has
    it (LEM's y, as the paper names it, beside the targets y): then ``<output>_out``.  Their locals are all the
    modules' own (``_grad``, ``_Z`` …)."""
    out = cell.output
    return f"{out}_out" if out in FREE_ARGUMENTS else out


class ModuleApi:
    """What every backend's plan says about the generated module's API: the sequences ``forward`` returns,
    and the loss functions' name for the output."""

    cell: Cell

    @property
    def returns(self) -> tuple[str, ...]:
        """What forward returns before the cache (see :attr:`~symbolic_lstm.engine.cell.Cell.returns`)."""
        return self.cell.returns

    @property
    def out_arg(self) -> str:
        """The loss and head functions' argument for the output (see :func:`output_argument`)."""
        return output_argument(self.cell)

    def width(self, name: str) -> str:
        """A node's width as code: "n_a", "n_x", "n_<input>" or "1"."""
        return self.cell.width(name)

    @property
    def extra_inputs(self) -> tuple[str, ...]:
        """The per-step inputs after the first (``forward`` takes each by keyword, required)."""
        return self.cell.inputs[1:]

    @property
    def inputs_doc(self) -> str:
        """Every input's shape for a docstring: ``x (T, B, n_x)``, ``x (T, B, n_x), z (T, B, n_z)``."""
        return ", ".join(f"{i} (T, B, {w})" for i, w in self.cell.input_widths.items())

    @property
    def sizes_keywords(self) -> str:
        """``init_params``' keyword-only widths of the further inputs (``, *, n_z: int``; "" for one input)."""
        return "".join((", *" if k == 0 else "") + f", {w}: int" for k, w in enumerate(self.cell.extra_widths))

    @property
    def inputs_keywords(self) -> str:
        """``forward``'s keyword-only further inputs (``, *, z=None``, each required; "" for one input)."""
        return "".join((", *" if k == 0 else "") + f", {i}=None" for k, i in enumerate(self.extra_inputs))

    @property
    def sizes_text(self) -> str:
        """The sizes as an f-string's text for messages: ``n_a = {n_a}, n_x = {n_x}`` (+ ``, n_z = {n_z}``)."""
        return ", ".join(f"{w} = {{{w}}}" for w in ("n_a", *self.cell.input_widths.values()))

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


@dataclass(frozen=True)
class StageText:
    """A stage as the kernels' comments and the graph picture write it (its :class:`~..engine.stages.StageOps` in
    text): ``W_f [a<t-1>, x<t>] + b_f``, ``σ(sum_f<t>)``, ``mean_i(…)``; ``shared`` names (unit parameters) untimed."""

    shared: tuple[str, ...] = ()

    def product(self, st: Linear) -> str:
        return f"{st.weight} [{', '.join(uni_time(k) for k in st.inputs)}]" + (f" + {st.bias}" if st.bias else "")

    def unitwise(self, st: Stage, expr: sp.Expr) -> str:
        return uni_expr(expr, self.shared)

    def mean(self, st: Stage, value: str) -> str:
        return f"mean_i({value})"


def stage_text(st: Stage, shared: tuple[str, ...] = ()) -> str:
    """A stage's right-hand side as the kernels' comments and the graph picture write it (:class:`StageText`)."""
    return st.compose(StageText(shared))


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
        from .printer_numpy import heaviside_at_zero

        h0 = heaviside_at_zero(expr)
        return f"H({self._print(expr.args[0])}" + (f", {self._print(h0)})" if h0 != 0 else ")")

    def _print_Max(self, expr: sp.Expr) -> str:
        """``max(a, b)``: a call."""
        return f"max({', '.join(self._print(a) for a in expr.args)})"

    def _print_Min(self, expr: sp.Expr) -> str:
        """``min(a, b)``: a call."""
        return f"min({', '.join(self._print(a) for a in expr.args)})"


def comment_text(text: str) -> str:
    """User text (a cell's name, description, ``--cell`` spec) as what may follow ``#`` in a generated module:
    one line of printable ASCII, every other character a backslash escape (``\\u03b3``, ``\\x0a``).  The one
    way user text enters a comment: it cannot end the comment, and, below the header's first two lines of fixed
    text, cannot be read as an encoding declaration."""
    out = []
    for ch in text:
        code = ord(ch)
        if 0x20 <= code < 0x7F:
            out.append(ch)
        elif code < 0x100:
            out.append(f"\\x{code:02x}")
        elif code < 0x10000:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    return "".join(out)


def literal(value: str) -> str:
    """User text as a Python string literal in a generated module: ``repr`` of the value, read back by
    ``ast.literal_eval`` (:mod:`symbolic_lstm.codegen.stale`) — the one way user text enters code."""
    if not isinstance(value, str):
        raise TypeError(f"a literal in generated code is a str, got {type(value).__name__}")
    return repr(value)


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
    env.filters["comment"] = comment_text
    env.filters["literal"] = literal
    return env
