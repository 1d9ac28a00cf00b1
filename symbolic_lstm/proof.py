"""A symbolic proof that the chain-rule engine is right, for a tiny unrolled net.

For n_a, n_x and T given, every weight, bias, input, initial state and target becomes a SymPy symbol.
The forward pass is unrolled into one Error expression, which ``sympy.diff`` differentiates *directly*
with respect to every symbol.  Independently, the engine's per-step equations (δ at every fork, the
linear stages' matrix-calculus rules, the boundary conditions, sums over time) run backward over the
same unrolled values.  The two must be identical.

Identity is checked exactly, with no floating point: every application of an activation (σ(…), tanh(…),
|…|) is replaced by an independent random rational, as is every remaining symbol.  Both sides are
polynomials (rational functions, for softsign) in those values, so agreement at several random points
proves the identity with overwhelming probability (Schwartz–Zippel; a point where a denominator vanishes is
skipped, and at least one point must remain) — and it is stronger than the
statement about the functions, which are special values of the indeterminates.  With ``exact=True`` the
difference is also expanded to 0 as a polynomial.

Constants are exact: a float the cell was written with (``tanh(0.5*s)``, a leaky ReLU's ``0.01``, a softplus β,
a bound in a ``Piecewise`` condition) becomes the exact rational value of that double — the number the kernels
compute with (``0.01`` is 5764607523034235/2⁵⁹) — on both sides, before anything is differentiated.  Powers
with fractional exponents (``sqrt(1 + s**2)``, ``u**(3/2)``) are algebraic, not rational, at rational points: for
every base b whose powers b^(p/q) occur, one more independent random rational r stands for b^(1/L) (L the
common denominator of those exponents), so that b^(p/q) = r^(pL/q) — the identity in r then holds for the
true root too, which is a special value of r.  A power with a symbolic exponent (u**v) is an indeterminate of
its own, as an activation application is; its derivative (u**v·(v′·log u + u′·v/u)) is written through itself.

Functions with kinks (relu's Max, |·|, sign, Heaviside, clipping's Min, a Piecewise) are not indeterminates:
SymPy's ``diff`` folds nested ones into new ones (a Piecewise whose conditions are ITE of the inner ones), so
they are evaluated exactly at each random point instead, conditions decided on its rationals.  The identity
is then proved on the branches the points select (with T steps and several points, typically several), and
both sides use SymPy's derivative at a kink, so the proof says nothing about the kernels' convention there
(relu′(0) = 0, as PyTorch): the torch cross-checks in the test suite do.
"""

from __future__ import annotations

import math
import multiprocessing
import os
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace

import sympy as sp

from .cell import N_A, Cell, Linear, Reduce
from .derivation import LOSS_MODES, LossMode, StepDerivation, derive, linear_rules
from .functions import NONSMOOTH, UnitSum
from .notation import ERROR, Partial, future, node, target


@dataclass(frozen=True)
class ProofLine:
    """The verdict for one gradient: ``entries`` scalar partial derivatives compared."""

    gradient: str
    shape: tuple[int, ...]
    entries: int
    ok: bool
    n_a: int
    n_x: int
    T: int
    mode: LossMode
    method: str

    def __str__(self) -> str:
        mark = "✓" if self.ok else "✗"
        shape = "×".join(map(str, self.shape))
        return (
            f"{mark} dError/d{self.gradient:<4} ({shape}, {self.entries} entries)  "
            f"n_a={self.n_a} n_x={self.n_x} T={self.T} {self.mode}: {self.method}"
        )


class ProofReport(list):
    """The lines of a proof (a list of :class:`ProofLine`): ``str`` is what ``symbolic-lstm prove`` prints,
    Jupyter shows an HTML table."""

    @property
    def ok(self) -> bool:
        return all(line.ok for line in self)

    def __str__(self) -> str:
        return "\n".join(map(str, self))

    def _repr_html_(self) -> str:
        import html

        rows = "".join(
            "<tr><td>%s</td><td>∂Error/∂%s</td><td>%s</td><td>%d</td><td>n_a=%d, n_x=%d, T=%d</td><td>%s</td>"
            "<td>%s</td></tr>"
            % (
                "✓" if ln.ok else "✗",
                html.escape(ln.gradient),
                "×".join(map(str, ln.shape)),
                ln.entries,
                ln.n_a,
                ln.n_x,
                ln.T,
                ln.mode,
                html.escape(ln.method),
            )
            for ln in self
        )
        verdict = "every gradient equals direct differentiation" if self.ok else "some gradients differ"
        return (
            "<table><thead><tr><th></th><th>gradient</th><th>shape</th><th>entries</th><th>net</th><th>loss</th>"
            f"<th>compared</th></tr></thead><tbody>{rows}</tbody></table><p>{verdict} of the unrolled Error</p>"
        )


class UnrolledNet:
    """A cell unrolled over T steps with every number a symbol (column vectors as sp.Matrix)."""

    def __init__(self, cell: Cell, n_a: int, n_x: int, T: int) -> None:
        if min(n_a, n_x, T) < 1:
            raise ValueError(f"n_a, n_x and T must be positive, got n_a={n_a}, n_x={n_x}, T={T}")
        if cell.square and n_x != n_a:
            raise ValueError(f"cell {cell.name!r} reads its input unit by unit beside n_a units: it needs n_x = n_a")
        self.cell, self.n_a, self.n_x, self.T = cell, n_a, n_x, T
        self.params: dict[str, sp.Matrix] = {}
        for st in cell.linear_stages:
            cols = sum(self.size_of(k) for k in st.inputs)
            n = self.size_of(st.name)
            rows = [[sp.Symbol(f"{st.weight}[{i},{j}]", real=True) for j in range(cols)] for i in range(n)]
            self.params[st.weight] = sp.Matrix(rows)
            if st.bias is not None:
                self.params[st.bias] = _vec(st.bias, n)
        for name in cell.vectors:
            self.params[name] = _vec(name, n_a)
        self.inputs = {i: [_vec(f"{i}<{t}>", n_x) for t in range(1, T + 1)] for i in cell.inputs}
        self.initial = {s: _vec(f"{s}<0>", n_a) for s in cell.states}
        self.hat = [_vec(f"{cell.output}_hat<{t}>", n_a) for t in range(1, T + 1)]
        self.steps = self._forward()
        #: Error<t> = Σ_i ½(â<t>_i − a<t>_i)², for t = 1 … T
        self.step_errors = [self._error(t) for t in range(T)]

    def size_of(self, name: str) -> int:
        """Units of a node (or a unit parameter): n_a, n_x or 1 (a row scalar)."""
        return {"n_a": self.n_a, "n_x": self.n_x, "1": 1}[self.cell.width(name)]

    def scored(self, t: int, mode: LossMode) -> bool:
        """Is the output of step t (1-based) scored by the loss?"""
        return mode == "many-to-many" or t == self.T

    def error(self, mode: LossMode) -> sp.Expr:
        """The whole Error: every step's (many-to-many) or the last step's (many-to-one)."""
        return sp.Add(*(e for t, e in enumerate(self.step_errors, 1) if self.scored(t, mode)))

    def _forward(self) -> list[dict[str, sp.Matrix]]:
        steps: list[dict[str, sp.Matrix]] = []
        state = dict(self.initial)
        for t in range(self.T):
            v: dict[str, sp.Matrix] = {f"{s}_prev": state[s] for s in self.cell.states}
            v.update({i: self.inputs[i][t] for i in self.cell.inputs})
            v.update({p: self.params[p] for p in self.cell.vectors})
            for st in self.cell.stages:
                if isinstance(st, Linear):
                    z = sp.Matrix.vstack(*(v[k] for k in st.inputs))
                    v[st.name] = self.params[st.weight] * z
                    if st.bias is not None:
                        v[st.name] += self.params[st.bias]
                    continue
                # a row scalar (one entry) is read by every unit i
                units = [
                    st.expr.xreplace({node(r): v[r][i if len(v[r]) > 1 else 0] for r in st.reads})
                    for i in range(self.size_of(st.name) if st.name not in self.cell.scalars else self.n_a)
                ]
                if isinstance(st, Reduce):
                    v[st.name] = sp.Matrix([sp.Add(*units) / self.n_a])
                elif st.name in self.cell.scalars:
                    v[st.name] = sp.Matrix([units[0]])
                else:
                    v[st.name] = sp.Matrix(units)
            steps.append(v)
            state = {s: v[s] for s in self.cell.states}
        return steps

    def _error(self, t: int) -> sp.Expr:
        out = self.steps[t][self.cell.output]
        return sp.Add(*(sp.Rational(1, 2) * (self.hat[t][i] - out[i]) ** 2 for i in range(self.n_a)))

    def wrt(self) -> Iterator[tuple[str, sp.Matrix]]:
        """Every gradient the proof checks: parameters, inputs (stacked over t), initial states."""
        yield from self.params.items()
        for i in self.cell.inputs:
            yield i, sp.Matrix.hstack(*self.inputs[i]).T
        for s in self.cell.states:
            yield f"{s}0", self.initial[s].T


def engine_gradients(net: UnrolledNet, d: StepDerivation, mode: LossMode) -> dict[str, sp.Matrix]:
    """Backpropagation through time driven only by the engine's per-step results.

    Rows are batch rows (B = 1): δ's are 1×n matrices, as in the kernels.
    """
    cell, T = net.cell, net.T
    rules = {
        st.name: linear_rules(st, rows=1, n=net.size_of(st.name), sizes={k: net.size_of(k) for k in st.inputs})
        for st in cell.linear_stages
    }
    grads: dict[str, sp.Matrix] = {p: sp.zeros(*m.shape) for p, m in net.params.items()}
    incoming = {s: sp.zeros(1, net.n_a) for s in cell.states}  # boundary: nothing after step T
    per_input: dict[str, list[sp.Matrix]] = {i: [] for i in cell.inputs}
    loss_partials = [p for p in d.partials if isinstance(p, Partial) and p.num == ERROR]
    for t in range(T, 0, -1):
        values = net.steps[t - 1]
        env: dict[sp.Symbol, list[sp.Expr]] = {node(k): list(m) for k, m in values.items()}
        env[target(cell.output)] = list(net.hat[t - 1])
        env.update({future(s): list(incoming[s]) for s in cell.states})
        deltas: dict[str, sp.Matrix] = {}
        for v in d.materialised:
            expr = d.elementwise_part(v)
            if not net.scored(t, mode):
                expr = expr.xreplace({p: 0 for p in loss_partials})
            expr = d.evaluate(expr)
            row = sp.Matrix([[_at(expr, env, i, net.n_a) for i in range(net.size_of(v))]])
            for st in d.graph.linear_consumers(v):
                r = rules[st.name]
                w = _columns(net, st, v)
                row += explicit(r.operand[v], {r.D: deltas[st.name], r.W[v]: w})
            deltas[v] = row
            env[sp.Symbol(f"delta_{v}")] = list(row)
        for st in cell.linear_stages:
            r = rules[st.name]
            blocks = [explicit(r.weight[k], {r.D: deltas[st.name], r.Z[k]: values[k].T}) for k in st.inputs]
            grads[st.weight] += sp.Matrix.hstack(*blocks)
            if st.bias is not None:
                grads[st.bias] += explicit(r.bias, {r.D: deltas[st.name]}).T
        for p in cell.vectors:
            grads[p] += deltas[p].T
        for i in cell.inputs:
            per_input[i].insert(0, deltas[i])
        incoming = {s: deltas[f"{s}_prev"] for s in cell.states}
    for i in cell.inputs:
        grads[i] = sp.Matrix.vstack(*per_input[i])
    for s in cell.states:
        grads[f"{s}0"] = incoming[s]
    return grads


def _at(expr: sp.Expr, env: dict[sp.Symbol, list[sp.Expr]], i: int, n_a: int) -> sp.Expr:
    """``expr`` at unit ``i``: every node its value there (a row scalar its only one), Σ_i expanded, n_a a number."""
    if isinstance(expr, UnitSum):
        return sp.Add(*(_at(expr.args[0], env, j, n_a) for j in range(n_a)))
    if expr.is_Symbol:
        if expr == N_A:
            return sp.Integer(n_a)
        vals = env.get(expr)
        if vals is None:
            return expr
        return vals[i if len(vals) > 1 else 0]
    if not expr.args:
        return expr
    return expr.func(*(_at(a, env, i, n_a) for a in expr.args))


def explicit(rule: sp.MatrixExpr, bind: dict[sp.MatrixSymbol, sp.Matrix]) -> sp.Matrix:
    """Evaluate a matrix-calculus rule (products, transposes, sums, ones) on explicit matrices.

    Done by hand rather than with ``doit()``, which would walk every entry's expression tree.
    """
    if isinstance(rule, sp.MatrixSymbol):
        return bind[rule]
    if isinstance(rule, sp.OneMatrix):
        return sp.ones(*rule.shape)
    if isinstance(rule, sp.Transpose):
        return explicit(rule.arg, bind).T
    if isinstance(rule, sp.MatMul):
        out: sp.Matrix | sp.Expr = sp.S.One
        for f in rule.args:
            out = out * (explicit(f, bind) if isinstance(f, sp.MatrixExpr) else f)
        return out
    if isinstance(rule, sp.MatAdd):
        terms = [explicit(a, bind) for a in rule.args]
        return sum(terms[1:], terms[0])
    raise TypeError(f"cannot evaluate the matrix rule {rule}")


def _columns(net: UnrolledNet, st: Linear, operand: str) -> sp.Matrix:
    start = 0
    for k in st.inputs:
        if k == operand:
            return net.params[st.weight][:, start : start + net.size_of(k)]
        start += net.size_of(k)
    raise KeyError(operand)


def _vec(name: str, n: int) -> sp.Matrix:
    return sp.Matrix([sp.Symbol(f"{name}[{i}]", real=True) for i in range(n)])


def exact_constants(cell: Cell) -> Cell:
    """``cell`` with every float in its stages replaced by the exact rational value of that double.

    ``Rational(Float)`` is exact: 0.01 becomes 5764607523034235/576460752303423488, the number the kernels
    multiply by, not 1/100.  Nothing else changes (names, order, LaTeX), so the proof is about the cell as the
    kernels run it.
    """

    def exact(expr: sp.Expr) -> sp.Expr:
        floats = expr.atoms(sp.Float)
        return expr.xreplace({f: sp.Rational(f) for f in floats}) if floats else expr

    stages = tuple(st if isinstance(st, Linear) else replace(st, expr=exact(st.expr)) for st in cell.stages)
    return replace(cell, stages=stages)


def _is_root(e: sp.Basic) -> bool:
    """A power with a fractional rational exponent (√u, u^(−3/2)): algebraic, not rational, at a rational point."""
    return isinstance(e, sp.Pow) and e.exp.is_Rational is True and e.exp.is_Integer is False


def indeterminates(exprs: list[sp.Expr]) -> list[sp.Expr]:
    """Every function application, symbol and power that is not a polynomial operation in ``exprs``, each
    shared subtree visited once.

    Powers with a fractional rational exponent are listed as the power itself (:class:`Point` groups them by
    base); a power with a symbolic exponent is an indeterminate like a function application.
    (``Basic.atoms`` walks the expressions as trees; unrolled nets share subtrees exponentially often.)
    """
    seen: set[sp.Basic] = set()
    found: dict[sp.Expr, None] = {}
    stack: list[sp.Basic] = list(exprs)
    while stack:
        e = stack.pop()
        if e in seen:
            continue
        seen.add(e)
        if isinstance(e, (sp.Function, sp.Symbol)) and not isinstance(e, _EVALUATED):
            found[e] = None
        elif isinstance(e, sp.Pow) and (_is_root(e) or not e.exp.is_Number):
            found[e] = None
        stack.extend(e.args)
    return list(found)


#: Applications evaluated at each point rather than replaced by an indeterminate (see the module docstring).
_EVALUATED = (*NONSMOOTH, sp.DiracDelta)


#: Largest common denominator of a base's exponents taken as one root r = b^(1/L); beyond it (a float exponent
#: such as 0.3 is p/2^52) each class of exponents modulo 1 gets its own value (see :class:`Point`).
MAX_ROOT = 64


@dataclass
class Point:
    """Values of the indeterminates at one point: ``values`` for applications, symbols and symbolic powers;
    ``roots`` for every base b of fractional powers, (r, L) with r standing for b^(1/L), so b^(p/q) = r^(pL/q);
    ``classes`` for bases whose exponents' common denominator exceeds ``MAX_ROOT``: for each exponent class
    e modulo 1, (r, e₀) with r standing for b^e₀, so b^e = r·b^(e − e₀) — the relation differentiation
    needs (b^e · b⁻¹ = b^(e−1)) without powers of r of astronomical degree."""

    values: dict[sp.Expr, sp.Expr]
    roots: dict[sp.Expr, tuple[sp.Expr, int]]
    classes: dict[tuple[sp.Expr, sp.Expr], tuple[sp.Expr, sp.Expr]] = field(default_factory=dict)

    def at(self, expr: sp.Expr) -> sp.Expr:
        """``expr`` with every indeterminate its value (outermost first, as ``xreplace`` matches), b^(p/q) as
        r^(pL/q), and functions with kinks evaluated on their evaluated arguments; shared subtrees once."""
        memo: dict[sp.Basic, sp.Expr] = {}

        def walk(e: sp.Basic) -> sp.Expr:
            hit = memo.get(e)
            if hit is not None:
                return hit
            if e in self.values:
                out = self.values[e]
            elif _is_root(e) and e.base in self.roots:
                r, L = self.roots[e.base]
                out = r ** int(e.exp * L)
            elif _is_root(e) and (e.base, e.exp % 1) in self.classes:
                r, e0 = self.classes[(e.base, e.exp % 1)]
                out = r * walk(e.base) ** int(e.exp - e0)
            elif not e.args:
                out = e
            else:
                out = e.func(*(walk(a) for a in e.args))
            memo[e] = out
            return out

        return walk(expr)


def random_point(atoms: list[sp.Expr], rng: random.Random, draw: Callable[[], sp.Expr] | None = None) -> Point:
    """An independent random rational for every indeterminate (``draw``: another kind of value, such as a
    fresh symbol, for the exact expansion), and one for the root of every base of fractional powers."""

    def rational() -> sp.Expr:
        return sp.Rational(rng.randint(-97, 97), rng.randint(1, 89))

    draw = draw or rational
    values = {a: draw() for a in atoms if not _is_root(a)}
    denominators: dict[sp.Expr, int] = {}
    for a in atoms:
        if _is_root(a):
            denominators[a.base] = math.lcm(denominators.get(a.base, 1), int(a.exp.q))
    roots = {b: (draw(), L) for b, L in denominators.items() if L <= MAX_ROOT}
    classes: dict[tuple[sp.Expr, sp.Expr], tuple[sp.Expr, sp.Expr]] = {}
    for a in atoms:
        if _is_root(a) and a.base not in roots and (a.base, a.exp % 1) not in classes:
            classes[(a.base, a.exp % 1)] = (draw(), a.exp)
    return Point(values, roots, classes)


def prove(
    cell: Cell,
    n_a: int = 1,
    n_x: int = 1,
    T: int = 3,
    modes: tuple[LossMode, ...] = LOSS_MODES,
    points: int = 3,
    seed: int = 0,
    exact: bool = False,
    workers: int | None = None,
    client: object | None = None,
) -> ProofReport:
    """Compare direct differentiation of the unrolled Error with the engine, gradient by gradient.

    Each step's Error is differentiated once per symbol and shared by both loss modes (many-to-one
    scores only the last step).  The differentiations are independent, so they run in ``workers``
    forked processes (default: one per CPU) that send back only verdicts, or, given a Dask ``client``
    (:func:`symbolic_lstm.distributed.connect`), as one task per gradient entry on its cluster.
    """
    for mode in modes:
        if mode not in LOSS_MODES:
            raise ValueError(f"loss mode must be one of {', '.join(LOSS_MODES)}, got {mode!r}")
    if points < 1:
        raise ValueError(f"points must be at least 1, got {points}")
    cell = exact_constants(cell)
    net = UnrolledNet(cell, n_a, n_x, T)
    d = derive(cell)
    ours = {mode: engine_gradients(net, d, mode) for mode in modes}
    wrt = list(net.wrt())
    jobs = [(name, k, sym) for name, syms in wrt for k, sym in enumerate(syms)]
    atoms = indeterminates(net.step_errors + [e for g in ours.values() for m in g.values() for e in m])
    rng = random.Random(seed)
    scored = {mode: frozenset(t for t in range(1, T + 1) if net.scored(t, mode)) for mode in modes}
    job = _Job(net.step_errors, scored, ours, [random_point(atoms, rng) for _ in range(points)], exact)
    if client is not None:
        from .distributed import prove_on

        verdicts = prove_on(client, _check, job, jobs)
    else:
        global _JOB
        _JOB = job
        try:
            verdicts = _run(len(jobs), workers, jobs)
        finally:
            _JOB = None
    method = f"equal at {points} random rational points" + ("; difference expands to 0" if exact else "")
    lines = ProofReport()
    for mode in modes:
        for name, syms in wrt:
            ok = all(verdicts[(name, k)][mode] for k in range(len(syms)))
            lines.append(ProofLine(name, tuple(syms.shape), len(syms), ok, n_a, n_x, T, mode, method))
    return lines


@dataclass
class _Job:
    """What every obligation reads (sent once to each process or Dask worker): plain SymPy data."""

    step_errors: list[sp.Expr]
    scored: dict[LossMode, frozenset[int]]  # the steps each loss mode scores
    engine: dict[LossMode, dict[str, sp.Matrix]]
    points: list[Point]
    exact: bool


_JOB: _Job | None = None


def _check(
    job: tuple[str, int, sp.Symbol], context: _Job | None = None
) -> tuple[tuple[str, int], dict[LossMode, bool]]:
    """Differentiate every step's Error by one symbol and compare with the engine in each mode."""
    name, k, sym = job
    ctx = context or _JOB
    assert ctx is not None
    per_step = [sp.diff(e, sym) for e in ctx.step_errors]
    verdict = {}
    for mode, grads in ctx.engine.items():
        direct = sp.Add(*(g for t, g in enumerate(per_step, 1) if t in ctx.scored[mode]))
        ours = grads[name][k]
        ok, compared = True, 0
        for point in ctx.points:
            va, vb = point.at(direct), point.at(ours)
            if _at_a_pole(va) or _at_a_pole(vb):
                continue  # a denominator vanishes here (log's 1/(1 + e^s) where e^s drew −1): not a point to judge at
            compared += 1
            ok = ok and va.is_Rational is True and vb.is_Rational is True and va == vb
        ok = ok and compared > 0
        if ok and ctx.exact:
            ok = _polynomial_zero(direct - ours)
        verdict[mode] = bool(ok)
    return (name, k), verdict


def _at_a_pole(value: sp.Expr) -> bool:
    """Did evaluating at a point divide by zero?  Rational functions are compared away from their poles: a
    point on one is skipped (Schwartz–Zippel holds for points drawn off the denominators' zero sets)."""
    return value.has(sp.zoo, sp.nan, sp.oo, -sp.oo)


def _leave_interrupts_to_parent() -> None:
    """Ctrl-C reaches the pool's processes too: only the parent, which stops the pool, should act on it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)


def _run(n: int, workers: int | None, jobs: list[tuple[str, int, sp.Symbol]]) -> dict:
    workers = min(workers or os.cpu_count() or 1, n)
    if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
        with multiprocessing.get_context("fork").Pool(workers, initializer=_leave_interrupts_to_parent) as pool:
            return dict(pool.imap_unordered(_check, jobs))
    return dict(map(_check, jobs))


def _polynomial_zero(expr: sp.Expr) -> bool:
    """Is ``expr`` 0 as a polynomial in its function applications, symbols and roots?

    Every indeterminate becomes a fresh symbol (outermost applications first, so each is one indeterminate;
    b^(p/q) a power of one symbol per base), then the difference is expanded.
    """
    functions = [a for a in indeterminates([expr]) if not isinstance(a, sp.Symbol)]
    point = random_point(functions, random.Random(0), sp.Dummy)
    return sp.expand(point.at(expr)) == 0


def prove_all(
    cell: Cell,
    sizes: list[tuple[int, int]],
    T: int = 3,
    modes: tuple[LossMode, ...] = LOSS_MODES,
    **kw: object,
) -> Iterator[ProofLine]:
    """Run :func:`prove` for every size (both loss modes at once)."""
    for n_a, n_x in sizes:
        yield from prove(cell, n_a, n_x, T, modes, **kw)  # type: ignore[arg-type]
