"""Stage 1 of the pipeline: a recurrent cell written as the article's *functional stages*.

A cell is a list of stages, each producing one named vector per time step:

* a **linear** stage ``sum = W [u, v, …] + b`` over the concatenation of earlier nodes
  (``W`` has shape ``(n_a, Σ sizes)``, columns in the order the inputs are listed; ``b`` has shape ``(n_a,)``);
* an **elementwise** stage: any SymPy expression in the symbols of earlier nodes, applied unit by unit
  (``Γ_f = σ(sum_f)``, ``c = c_prev·Γ_f + Γ_u·c̃`` …), which may also read **unit parameters**: vectors
  of n_a trainable numbers, one per unit, shared by all steps (the peephole weights ``p_f ⊙ c<t-1>``);
* a **mean** stage ``μ = (1/n_a) Σ_i expr_i``: a reduction across the units of one row, giving one number
  per row (a *row scalar*, broadcast where an elementwise stage reads it) — layer normalisation's mean and
  variance.  The engine differentiates ``expr`` like any stage; the sum over units appears in the δ of the
  scalar (its branches fan out to every unit).

Recurrent state ``s`` produced at step t is read at step t+1 as the node ``s_prev``.  The first input has n_x
units, every other input its own width ``n_<name>`` (``n_z`` for an input z: a decoder's context beside x<t>); a
linear stage may read any of them, its weight's column blocks in the order of its operands.  A linear stage has
n_a units unless declared with ``units="n_x"`` (the Mogrifier's Q h); an elementwise stage has the units of what
it reads.  An elementwise stage may read nodes of different widths (n_x and n_a) side by side only in a cell
declared ``square=True`` (every input as wide as n_a, checked when it runs): SRU's highway (1 − r) ⊙ x.
Nothing here knows any derivative: the chain rule lives in :mod:`symbolic_lstm.engine.derivation`, which
differentiates these expressions.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import sympy as sp

from .functions import canonical, diff_real
from .notation import latex_symbol, one_line
from .reserved import derived_names, first_problem, input_width, problem
from .stages import Elementwise, Linear, Reduce, Stage


class CellError(ValueError):
    """A cell definition is inconsistent; the message names the stage at fault."""


#: The widths a node may have: n_a units, n_x units, or one number per row (a row scalar); an input after the
#: first has its own, ``n_<name>`` (:func:`~symbolic_lstm.engine.reserved.input_width`).
WIDTHS = ("n_a", "n_x", "1")


def prev(state: str) -> str:
    """Name of the node that carries ``state`` from step t−1 into step t (``a`` → ``a_prev``)."""
    return f"{state}_prev"


def _refuse(problem: str | None) -> None:
    """Raise the CellError a name check (:mod:`symbolic_lstm.engine.reserved`) found, if any."""
    if problem is not None:
        raise CellError(problem)


@dataclass(frozen=True)
class Cell:
    """A validated recurrent cell: per-step inputs, recurrent states and stages in forward order.

    Attributes:
        name: identifier, used for the generated module's file name.
        inputs: per-step external inputs, e.g. ``("x",)`` or ``("x", "z")``: the first n_x wide, every other
            ``n_<name>`` wide (:meth:`input_widths`).
        states: recurrent states (size n_a), e.g. ``("a", "c")``; each is a stage output.
        stages: the functional stages in forward order.
        output: the node the loss scores (the article's a<t>).
        latex: LaTeX base names of nodes (``"Gamma_f"`` → ``r"\\Gamma_f"``).
        description: one line for docs and generated headers.
        origin: how ``--cell`` names it: the built-in name, or ``/abs/path/file.py:NAME`` for a user cell.
        vectors: unit parameters (shape (n_a,)) that elementwise stages read, e.g. ``("p_f", "p_u", "p_o")``.
        scalars: row-scalar nodes (one number per batch row): mean stages and stages that read only those.
        widths: every node's width: "n_a", "n_x" (the first input, nodes declared or derived with n_x units),
            "n_<name>" (another input, nodes derived from it alone) or "1".
        square: the cell reads nodes of n_x and n_a units side by side, so it needs n_x = n_a.
    """

    name: str
    inputs: tuple[str, ...]
    states: tuple[str, ...]
    stages: tuple[Stage, ...]
    output: str
    latex: Mapping[str, str] = field(default_factory=dict)
    description: str = ""
    origin: str = ""
    vectors: tuple[str, ...] = ()
    scalars: tuple[str, ...] = ()
    vector_init: Mapping[str, float] = field(default_factory=dict)  # constant initial values (LayerNorm γ = 1)
    widths: Mapping[str, str] = field(default_factory=dict)
    square: bool = False

    def __post_init__(self) -> None:
        # the name becomes a file and module name (checked with the cell's other names), the description a comment
        # line in generated Python and LaTeX: made one printable line here, where every cell passes
        if not isinstance(self.description, str):
            raise CellError(f"a cell's description is a str, got {type(self.description).__name__}")
        object.__setattr__(self, "description", one_line(self.description))
        named = [(st.name, "stage") for st in self.stages] + [(v, "unit parameter") for v in self.vectors]
        named += [(n, "parameter") for st in self.linear_stages for n in (st.weight, st.bias) if n is not None]
        _refuse(first_problem(self.name, self.inputs, self.states, self.output, named))

    def width(self, node: str) -> str:
        """``node``'s width: "n_a", "n_x", "n_<input>" (an input after the first) or "1" (a row scalar)."""
        if node in self.scalars:
            return "1"
        if node in self.inputs:
            return input_width(self.inputs, node)
        return self.widths.get(node, "n_a")

    @property
    def input_widths(self) -> dict[str, str]:
        """Each input's width, in order: ``{"x": "n_x", "z": "n_z"}``."""
        return {i: input_width(self.inputs, i) for i in self.inputs}

    @property
    def extra_widths(self) -> tuple[str, ...]:
        """The widths of the inputs after the first (``("n_z",)``): ``init_params``'s keyword-only sizes."""
        return tuple(self.input_widths.values())[1:]

    @property
    def uniform_widths(self) -> bool:
        """Every node but the inputs has n_a units (or one per row), and the inputs enter only linear stages."""
        return all(w in ("n_a", "1") for n, w in self.widths.items() if n not in self.inputs) and not any(
            i in st.reads for st in self.stages if st.expressions for i in self.inputs
        )

    @property
    def spec(self) -> str:
        """What to pass to ``--cell`` to get this cell again."""
        return self.origin or self.name

    def fingerprint(self) -> bytes:
        """The cell's definition as bytes: its name, stages (expressions in ``srepr``), inputs, states, output
        and unit parameters — what its kernels and its parameters depend on, not where its file lives."""
        parts = [repr(self.name)]
        for st in self.stages:
            parts.append(st.fingerprint())
        parts.append(repr((self.inputs, self.states, self.output, self.vectors, sorted(self.vector_init.items()))))
        return "".join(parts).encode()

    @property
    def digest(self) -> str:
        """SHA-256 of :meth:`fingerprint` (16 hex digits): the same cell from a moved file has the same digest,
        an edited one (a stage, a parameter renamed) another.  Checkpoints record it."""
        import hashlib

        return hashlib.sha256(self.fingerprint()).hexdigest()[:16]

    @property
    def returns(self) -> tuple[str, ...]:
        """The sequences a generated ``forward`` returns, in order, before its cache: the output first, then the
        states that are not the output (in the cell's order) — for the LSTM (a, c), for SRU (h, c)."""
        return (self.output, *(s for s in self.states if s != self.output))

    @property
    def prev_states(self) -> tuple[str, ...]:
        return tuple(prev(s) for s in self.states)

    @property
    def leaves(self) -> tuple[str, ...]:
        """Nodes that enter a step from outside it: previous states, then inputs."""
        return self.prev_states + self.inputs

    def stage(self, name: str) -> Stage:
        for st in self.stages:
            if st.name == name:
                return st
        raise KeyError(name)

    @property
    def linear_stages(self) -> tuple[Linear, ...]:
        return tuple(st for st in self.stages if isinstance(st, Linear))  # the typed view: weights, operands

    @property
    def params(self) -> tuple[str, ...]:
        """Parameter names in the order of the stages: W_f, b_f, W_u, b_u, …, then the unit parameters."""
        out: list[str] = []
        for st in self.linear_stages:
            out += [st.weight] if st.bias is None else [st.weight, st.bias]
        return (*out, *self.vectors)

    def sizes(self, n_x: int, n_a: int, widths: Mapping[str, int] | None = None) -> dict[str, int]:
        """Every width's number of units: n_a, n_x, 1 and each further input's (``widths``: ``{"n_z": 5}``); a
        ValueError where ``widths`` misses one of them or names one the cell has not."""
        given, extra = dict(widths or {}), self.extra_widths
        if set(given) != set(extra):
            missing, unknown = [w for w in extra if w not in given], [w for w in given if w not in extra]
            want = ", ".join(f"{w}=…" for w in extra) or "none"
            raise ValueError(f"cell {self.name!r}: widths {want}; missing {missing}, unexpected {unknown}")
        return {"n_a": n_a, "n_x": n_x, "1": 1, **given}

    def size(self, node: str, n_x: int, n_a: int, widths: Mapping[str, int] | None = None) -> int:
        """``node``'s number of units for these sizes (1 for a row scalar); ``widths``: the further inputs'
        (``{"n_z": 5}``), required where the cell has them."""
        return self.sizes(n_x, n_a, widths)[self.width(node)]

    def param_shapes(self, n_x: int, n_a: int, widths: Mapping[str, int] | None = None) -> dict[str, tuple[int, ...]]:
        """Every parameter's shape, in ``params`` order: a weight (its stage's units, Σ operand units), a bias
        (its stage's units,), a unit parameter (n_a,).  ``widths``: the further inputs' (``{"n_z": 5}``)."""
        size = self.sizes(n_x, n_a, widths)
        shapes: dict[str, tuple[int, ...]] = {}
        for st in self.linear_stages:
            rows = size[self.width(st.name)]
            shapes[st.weight] = (rows, sum(size[self.width(k)] for k in st.inputs))
            if st.bias is not None:
                shapes[st.bias] = (rows,)
        shapes.update({v: (n_a,) for v in self.vectors})
        return {name: shapes[name] for name in self.params}

    def state_of_prev(self, node: str) -> str | None:
        """``"a_prev"`` → ``"a"``; None for any other node."""
        for s in self.states:
            if prev(s) == node:
                return s
        return None

    def latex_name(self, node: str) -> str:
        """LaTeX base name of a node (previous states print as the state itself, one step earlier)."""
        state = self.state_of_prev(node)
        if state is not None:
            node = state
        return self.latex.get(node) or latex_symbol(node)


class CellBuilder:
    """Write a cell stage by stage; :meth:`build` validates it.

    Example::

        cell = CellBuilder("lstm", inputs=("x",), states=("a", "c"), output="a")
        a_prev, c_prev, x = cell.prev("a"), cell.prev("c"), cell.input("x")
        s = cell.linear("sum_f", [a_prev, x], weight="W_f", bias="b_f")
        G = cell.stage("Gamma_f", sigmoid(s), latex=r"\\Gamma_f")
    """

    def __init__(
        self,
        name: str,
        *,
        inputs: Sequence[str] = ("x",),
        states: Sequence[str] = ("a", "c"),
        output: str = "a",
        description: str = "",
        square: bool = False,
    ) -> None:
        _refuse(first_problem(name, inputs, states, output))
        self.name = name
        self._inputs = tuple(inputs)
        self._states = tuple(states)
        self._output = output
        self._description = description
        self._stages: list[Stage] = []
        self._latex: dict[str, str] = {}
        self._known: list[str] = [prev(s) for s in self._states] + list(self._inputs)
        self._params: set[str] = set()
        self._vectors: list[str] = []
        self._vector_init: dict[str, float] = {}
        self._scalars: set[str] = set()
        self._square = bool(square)
        self._widths: dict[str, str] = {
            **{prev(s): "n_a" for s in self._states},
            **{i: input_width(self._inputs, i) for i in self._inputs},
        }
        self._derived = derived_names(self._states, output, self._inputs)

    # -- nodes ---------------------------------------------------------------------------------
    def prev(self, state: str) -> sp.Symbol:
        """Symbol of ``state`` at the previous step (``a<t-1>``)."""
        if state not in self._states:
            raise CellError(f"{state!r} is not a state of cell {self.name!r}; states: {', '.join(self._states)}")
        return sp.Symbol(prev(state))

    def vector(self, name: str, *, latex: str | None = None, init: float | None = None) -> sp.Symbol:
        """A unit parameter: n_a trainable numbers, one per unit, that elementwise stages may read.

        ``init``: the value ``init_params`` starts every unit at (LayerNorm's γ = 1, β = 0); None: random.
        """
        self._check_identifier(name, "unit parameter")
        if name in self._params or name in self._known:
            raise CellError(f"unit parameter {name!r}: the name is already used")
        self._params.add(name)
        self._vectors.append(name)
        if init is not None:
            self._vector_init[name] = float(init)
        if latex is not None:
            self._latex[name] = latex
        return sp.Symbol(name)

    def input(self, name: str) -> sp.Symbol:
        """Symbol of a per-step input (``x<t>``)."""
        if name not in self._inputs:
            raise CellError(f"{name!r} is not an input of cell {self.name!r}; inputs: {', '.join(self._inputs)}")
        return sp.Symbol(name)

    def linear(
        self,
        name: str,
        inputs: Sequence[sp.Symbol | str],
        *,
        weight: str,
        bias: str | None,
        latex: str | None = None,
        units: str = "n_a",
    ) -> sp.Symbol:
        """Add ``name = weight [inputs…] + bias`` (no bias when ``bias`` is None) and return its symbol.

        ``units``: "n_a" (default) or "n_x", the number of rows of ``weight`` (a node the size of the input).
        """
        names = tuple(str(i) for i in inputs)
        if units not in ("n_a", "n_x"):
            raise CellError(f"stage {name!r}: units must be 'n_a' or 'n_x', got {units!r}")
        if not names:
            raise CellError(f"stage {name!r}: a linear stage needs at least one input")
        for i in names:
            self._require_known(name, i)
            if i in self._scalars:
                raise CellError(f"stage {name!r}: a linear stage cannot read the row scalar {i!r}")
        for p in (weight, bias) if bias is not None else (weight,):
            self._check_identifier(p, f"parameter of stage {name!r}")
            if p in self._params or p in self._known:
                raise CellError(f"stage {name!r}: the name {p!r} is already used")
            self._params.add(p)
        self._widths[name] = units
        return self._add(Linear(name, names, weight, bias, units), latex)

    def stage(self, name: str, expr: sp.Expr, *, latex: str | None = None) -> sp.Symbol:
        """Add the elementwise stage ``name = expr`` and return its symbol (``log(sigmoid(u))`` is taken as the
        exact :class:`~symbolic_lstm.engine.functions.logsigmoid` ``(u)``)."""
        expr = sp.sympify(expr)
        if isinstance(expr, sp.Expr):
            expr = canonical(expr)
        if not isinstance(expr, sp.Expr) or isinstance(expr, sp.MatrixBase):
            raise CellError(f"stage {name!r}: expected a scalar SymPy expression, got {type(expr).__name__}")
        free = sorted(str(s) for s in expr.free_symbols)
        for i in free:
            if i not in self._vectors:
                self._require_known(name, i)
        if not free:
            raise CellError(f"stage {name!r}: the expression {expr} reads no node and no unit parameter")
        width = self._width_of(name, [i for i in free if i not in self._scalars])
        for i in free:
            d = diff_real(expr, sp.Symbol(i))
            if d.has(sp.Derivative, sp.Subs):
                raise CellError(
                    f"stage {name!r}: SymPy cannot differentiate {expr} with respect to {i} (it gives {d}); "
                    "use sympy functions such as tanh, exp, log, or symbolic_lstm's sigmoid and softsign"
                )
        order = {n: k for k, n in enumerate([*self._known, *self._vectors])}
        reads = tuple(sorted(free, key=order.__getitem__))
        if all(r in self._scalars for r in reads):
            self._scalars.add(name)  # reads only row scalars: one number per row itself
        self._widths[name] = width
        return self._add(Elementwise(name, expr, reads), latex)

    def mean(self, name: str, expr: sp.Expr, *, latex: str | None = None) -> sp.Symbol:
        """Add the mean stage ``name = (1/n_a) Σ_i expr_i`` (a row scalar) and return its symbol."""
        self.stage(name, expr, latex=latex)  # the same checks as an elementwise stage
        st = self._stages.pop()
        if all(r in self._scalars for r in st.reads):
            raise CellError(f"stage {name!r}: a mean over units needs a per-unit input, got only row scalars")
        if self._widths[name] != "n_a" and not self._square:
            raise CellError(
                f"stage {name!r}: a mean is over n_a units; {name!r} reads nodes of {self._widths[name]} units"
            )
        self._stages.append(Reduce(st.name, st.expr, st.reads))
        self._scalars.add(name)
        return sp.Symbol(name)

    def build(self) -> Cell:
        made = {st.name for st in self._stages}
        for s in self._states:
            if s not in made:
                raise CellError(f"cell {self.name!r}: state {s!r} is never produced by a stage")
        if self._output not in made:
            raise CellError(f"cell {self.name!r}: output {self._output!r} is never produced by a stage")
        used = {r for st in self._stages for r in st.reads} | set(self._states) | {self._output}
        for n in self._known:
            if n not in used:
                raise CellError(f"cell {self.name!r}: node {n!r} is computed but never used")
        for n in self._vectors:
            if n not in used:
                raise CellError(f"cell {self.name!r}: unit parameter {n!r} is never read by a stage")
        for n in (*self._states, self._output):
            if n in self._scalars:
                raise CellError(f"cell {self.name!r}: {n!r} is a row scalar; states and the output need n_a units")
            if self._widths.get(n, "n_a") != "n_a" and not self._square:
                w = self._widths[n]
                raise CellError(
                    f"cell {self.name!r}: {n!r} has {w} units (it reads only nodes of {w} units); states and the "
                    "output need n_a units"
                )
        return Cell(
            name=self.name,
            inputs=self._inputs,
            states=self._states,
            stages=tuple(self._stages),
            output=self._output,
            latex=dict(self._latex),
            description=self._description,
            vectors=tuple(self._vectors),
            scalars=tuple(st.name for st in self._stages if st.name in self._scalars),
            vector_init=dict(self._vector_init),
            widths={n: ("n_a" if self._square and n not in self._inputs else w) for n, w in self._widths.items()},
            square=self._square,
        )

    # -- helpers -------------------------------------------------------------------------------
    def _add(self, st: Stage, latex: str | None) -> sp.Symbol:
        self._check_identifier(st.name, "stage")
        if st.name in self._known or st.name in self._params:
            raise CellError(f"stage {st.name!r} is defined twice")
        self._stages.append(st)
        self._known.append(st.name)
        if latex is not None:
            self._latex[st.name] = latex
        return sp.Symbol(st.name)

    def _width_of(self, stage: str, reads: list[str]) -> str:
        """The units of an elementwise stage: those of the nodes it reads (unit parameters have n_a); nodes of
        different widths side by side only in a square cell (every width n_a)."""
        widths = {r: ("n_a" if r in self._vectors else self._widths[r]) for r in reads}
        found = set(widths.values())
        if len(found) <= 1:
            return found.pop() if found else "n_a"
        if self._square:
            return "n_a"
        one = next(r for r, w in widths.items() if w != "n_a")  # n_x (or another input's width) first
        others = [r for r, w in widths.items() if w != widths[one]]
        two = next((r for r in others if widths[r] == "n_a"), others[0])
        w1, w2 = widths[one], widths[two]
        raise CellError(
            f"stage {stage!r} reads {one!r} ({w1} units) and {two!r} ({w2} units) unit by unit: the sizes agree only "
            f"when {w1} = {w2}; declare that with CellBuilder({self.name!r}, …, square=True) (as SRU's highway "
            "(1 − r) ⊙ x needs), or bring the input in through a linear stage"
        )

    def _require_known(self, stage: str, node: str) -> None:
        if node in self._known:
            return
        later = "" if node != stage else " (a stage cannot read itself: that is a cycle inside one step)"
        raise CellError(
            f"stage {stage!r} reads {node!r}, which is not an input, a previous state or an earlier stage{later}; "
            f"known so far: {', '.join(self._known)}"
        )

    def _check_identifier(self, name: str, what: str) -> None:
        """Refuse a name the generated modules cannot take, for every backend alike (:mod:`.reserved`)."""
        _refuse(problem(name, what, self._derived, [*self._known, *self._params, *self._states]))
