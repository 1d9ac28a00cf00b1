"""Stage 4d: kernels written against the Python array API standard (``templates/array_api/``).

The same derivation as :mod:`symbolic_lstm.emit_numpy`, printed without NumPy's in-place ``out=`` calls,
item assignment or fused gate blocks — the standard has none of them for every library (JAX arrays are
immutable) — so the module runs on whatever arrays it is given: NumPy, PyTorch tensors, CuPy, JAX, through
``array_api_compat.array_namespace``.  One matrix product per gate and operand, each stage an expression,
per-step values kept in lists and stacked.  The NumPy backend stays the fast one; this one is portable.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

import sympy as sp

from . import __version__
from .cell import Cell, Linear, Reduce
from .derivation import StepDerivation, derive
from .emit_numpy import CodegenError, _is_seed, _seed, _uni, _uni_expr, _uni_time, template_env
from .paths import PACKAGE_DIR, templates_dir
from .printer_numpy import KernelPrinter

TEMPLATE = "array_api/cell_module.py.j2"
BACKEND = "array-api"


class ArrayAPIPrinter(KernelPrinter):
    """The kernel printer with ``xp.`` (the arrays' namespace) in place of ``np.``."""

    def _module_format(self, fqn: str, register: bool = True) -> str:
        out = super()._module_format(fqn, register)
        return "xp." + out[len("np.") :] if out.startswith("np.") else out


@dataclass(frozen=True)
class Step:
    """One statement of the per-step code: ``target = code`` and the derivation step it implements."""

    target: str
    code: str
    comment: str = ""


class ArrayAPIPlan:
    """Forward and backward statements of one step, as expressions in ``xp``."""

    def __init__(self, cell: Cell) -> None:
        self.cell = cell
        if len(cell.inputs) != 1:
            raise CodegenError(f"cell {cell.name!r}: the array-API template supports exactly one input")
        self.input = cell.inputs[0]
        self.d: StepDerivation = derive(cell, scored=(cell.output, *[s for s in cell.states if s != cell.output]))
        self.p = ArrayAPIPrinter()

    def columns(self, st: Linear, operand: str) -> str:
        """The columns of W that multiply ``operand``, as a slice (operands in order, n_a or n_x wide)."""
        widths = ["n_x" if k in self.cell.inputs else "n_a" for k in st.inputs]
        i = st.inputs.index(operand)
        start = " + ".join(widths[:i]) or "0"
        return f"{start}:{' + '.join(widths[: i + 1])}"

    def forward(self) -> list[Step]:
        out = []
        for st in self.cell.stages:
            if isinstance(st, Linear):
                terms = [f"{k} @ xp.matrix_transpose({st.weight}[:, {self.columns(st, k)}])" for k in st.inputs]
                if st.bias is not None:
                    terms.append(st.bias)
                text = f"{st.weight} [{', '.join(_uni_time(k) for k in st.inputs)}]" + (
                    f" + {st.bias}" if st.bias else ""
                )
                out.append(Step(st.name, " + ".join(terms), f"{_uni_time(st.name)} = {text}"))
            elif isinstance(st, Reduce):
                code = f"xp.mean({self.p.doprint(st.expr)}, axis=-1, keepdims=True)"
                out.append(
                    Step(st.name, code, f"{_uni_time(st.name)} = mean_i({_uni_expr(st.expr, self.cell.vectors)})")
                )
            else:
                comment = f"{_uni_time(st.name)} = {_uni_expr(st.expr, self.cell.vectors)}"
                out.append(Step(st.name, self.p.doprint(st.expr), comment))
        return out

    def backward(self) -> list[Step]:
        """δ of every materialised node, in backward order; linear stages' δ feed the matrix products."""
        d, cell = self.d, self.cell
        rename = {_seed(cell.output): sp.Symbol(f"d{cell.output}[t]")}
        out = []
        for v in d.materialised:
            optional = v in cell.states and v != cell.output
            expr = d.elementwise_part(v)
            if optional:
                expr = expr.xreplace({_seed(v): 0})
            value = d.evaluate(expr, keep=_is_seed).xreplace(rename)
            terms = [] if value == 0 else [self.p.doprint(value)]
            for st in d.graph.linear_consumers(v):
                terms.append(f"delta_{st.name} @ {st.weight}[:, {self.columns(st, v)}]")
            state = cell.state_of_prev(v)
            target = f"d{state}_next" if state else f"delta_{v}"
            code = " + ".join(terms) if terms else "0.0"
            fork = "  (fork: branches added)" if d.graph.is_fork(v) else ""
            out.append(Step(target, code, f"δ{_uni_time(v)}{fork}"))
            if optional:
                out.append(Step(target, f"{target} + d{v}[t] if d{v} is not None else {target}", "+ ∂E<t>/∂" + _uni(v)))
        return out

    @property
    def unpack(self) -> str:
        names = list(self.cell.params)
        return f"{', '.join(names)}{',' if len(names) == 1 else ''} = (p[k] for k in PARAMS)"

    @property
    def stored(self) -> list[str]:
        """Every per-step node backward may read (the array-API module keeps them all; simple and portable)."""
        return [st.name for st in self.cell.stages]

    def width(self, name: str) -> str:
        return "1" if name in self.cell.scalars else ("n_x" if name in self.cell.inputs else "n_a")


def source_hash(cell: Cell) -> str:
    """As :func:`symbolic_lstm.emit_numpy.source_hash`, over this backend's emitter and templates."""
    from .emit_numpy import source_hash as numpy_hash

    h = hashlib.sha256(numpy_hash(cell).encode())
    h.update((PACKAGE_DIR / "emit_array_api.py").read_bytes().replace(b"\r\n", b"\n"))
    for path in sorted(templates_dir().glob("array_api/*.j2")):
        h.update(path.read_bytes().replace(b"\r\n", b"\n"))
    return h.hexdigest()[:16]


def module_name(cell: Cell) -> str:
    return f"{cell.name}_array_api"


def render(cell: Cell) -> str:
    """The array-API module for ``cell``, as text (byte-stable)."""
    plan = ArrayAPIPlan(cell)
    return (
        template_env()
        .get_template(TEMPLATE)
        .render(
            version=__version__,
            template=TEMPLATE,
            cell=cell,
            plan=plan,
            source_hash=source_hash(cell),
            backend=BACKEND,
        )
    )
