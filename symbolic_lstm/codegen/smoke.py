"""The smoke run: a rendered module is run from its text (nothing written yet) on a tiny problem forward and
backward before :mod:`symbolic_lstm.codegen.pipeline` moves it into place.

The smoke run catches printed code that fails to run at all — a name the printer used but never imported, a
shape the template got wrong — and names the stage whose printed code failed.  Then it runs the gradient
check itself on two small problems (:data:`symbolic_lstm.gradcheck.SMOKE_PROBLEMS`, against the
complex-step derivative of the cell's own stages, well under a second): a module whose forward pass or
gradients are wrong — a bug in the code generator, or a cell it cannot yet express — is refused too.  So
nothing broken or wrong reaches ``generated/``, a user's folder or the user cache.
"""

from __future__ import annotations

import re
import traceback
import types
from pathlib import Path

import numpy as np

from ..check.finite import CellNotFiniteError, fitting_scale, module_forward, scaled
from ..check.gradcheck import SMOKE_PROBLEMS, CheckReport, check_module, draw_inputs, further_widths
from ..engine.cell import Cell
from ..runtime.run_code import run_module
from .attribution import first_difference
from .backend import Backend
from .lines import CodegenError

#: (T, B, n_x, n_a) of the smoke problem: every loop runs more than once; n_a ≥ 4 keeps normalising cells away
#: from their degenerate one- and two-unit cases.
SHAPE = (2, 2, 3, 4)


def smoke_run(cell: Cell, backend: str | Backend, text: str) -> None:
    """Import ``text`` as a module and run forward, the loss and backward on a tiny random problem.

    Raises:
        CodegenError: naming the stage whose printed code failed (or the template line, if no stage's).
    """
    from .backends import get

    backend = get(backend)
    name = backend.module_name(cell)
    path = Path(f"<symbolic-lstm smoke run of {name}.py>")  # run from the text itself: nothing is written first
    try:
        with backend.importing():
            module = run_module(text, f"_symbolic_lstm_smoke_{name}", path)
            for dtype in (np.float64, np.float32):
                _exercise(module, cell, backend, dtype)
            report = check_module(module, problems=SMOKE_PROBLEMS, cell=cell)
            fault = _at_fault(cell, report, module, path, text, backend) if not report.ok else ""
    except CodegenError:
        raise
    except CellNotFiniteError as e:  # the cell's math, not the printed code
        raise CodegenError(f"{e}; nothing was written") from None
    except Exception as e:  # the printed code's failure, attributed to the stage it came from
        raise CodegenError(_attribute(e, path, text, cell, backend)) from None
    if not report.ok:
        raise CodegenError(
            f"cell {cell.name!r}: the generated {backend.name} module computes wrong values — {report.verdict()} "
            f"(against the complex-step derivative of the cell's own stages, on {len(SMOKE_PROBLEMS)} small "
            f"problems){fault}; nothing was written. This is a bug in the code generator or a "
            "cell structure it does not yet handle: please report it with the cell file"
        )


def _at_fault(
    cell: Cell, report: CheckReport, module: types.ModuleType, path: Path, text: str, backend: Backend
) -> str:
    """Where the error enters: the first statement whose result differs from the judge's
    (:mod:`.attribution`); failing that, the stages the wrong gradients enter backward through (a weight's or
    bias's linear stage, the stages reading a unit parameter, the input or a previous state)."""
    found = first_difference(cell, module, str(path), text, backend)
    if found is not None:
        return f"; {found}"
    if not report.forward_ok:
        return "; the forward pass itself is wrong"
    stages: list[str] = []
    for row in report:
        if row.ok:
            continue
        owner = [st.name for st in cell.linear_stages if row.key in (st.weight, st.bias)]
        node = f"{row.key[:-1]}_prev" if row.key.endswith("0") and row.key[:-1] in cell.states else row.key
        readers = [st.name for st in cell.stages if node in st.reads]
        stages += [s for s in owner or readers if s not in stages]
    return f"; stages at fault (where those gradients enter): {', '.join(stages)}" if stages else ""


def _cast(arrays: dict[str, np.ndarray], dtype: type) -> dict[str, np.ndarray]:
    return {k: v.astype(dtype) for k, v in arrays.items()}


def _cast_inputs(x: np.ndarray | dict[str, np.ndarray], dtype: type) -> np.ndarray | dict[str, np.ndarray]:
    return _cast(x, dtype) if isinstance(x, dict) else x.astype(dtype)


def _params(cell: Cell, n_x: int, n_a: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    return {
        name: cell.vector_init.get(name, 0.0) + rng.uniform(-0.5, 0.5, size=shape)
        for name, shape in cell.param_shapes(n_x, n_a, further_widths(cell, n_x, n_a)).items()
    }


def _exercise(module: types.ModuleType, cell: Cell, backend: Backend, dtype: type) -> None:
    T, B, n_x, n_a = SHAPE
    if cell.square:  # the cell reads its input unit by unit beside n_a units
        n_x = n_a
    rng = np.random.default_rng(0)
    p = _params(cell, n_x, n_a, rng)
    xs = draw_inputs(cell, T, B, n_x, n_a, rng)
    x = xs if len(xs) > 1 else xs[cell.inputs[0]]  # every input by name, or the one input's array
    init = {f"{s}0": 0.5 * rng.normal(size=(B, n_a)) for s in cell.states}
    y = rng.normal(size=(T, B, n_a)).astype(dtype)
    extra = {f"d{s}": rng.normal(size=(T, B, n_a)).astype(dtype) for s in cell.states if s != cell.output}
    out = module_forward(module, _cast_inputs(x, dtype), _cast(p, dtype), _cast(init, dtype))  # broken code fails here
    scale = fitting_scale(cell, x, p, init)  # CellNotFiniteError (the cell's own math): said by smoke_run
    x, p, init = scaled(scale, x, p, init)
    x, p, init = _cast_inputs(x, dtype), _cast(p, dtype), _cast(init, dtype)
    if scale != 1.0:
        out = module_forward(module, x, p, init)
    if not all(np.isfinite(np.asarray(o)).all() for o in out[:-1]):
        raise CodegenError(
            f"cell {cell.name!r}: the generated {backend.name} module's forward pass is not finite in "
            f"{np.dtype(dtype)} on a tiny random problem where the cell's own math is; nothing was written"
        )
    names = cell.returns
    if len(out) != len(names) + 1:
        raise CodegenError(f"forward returned {len(out)} values, expected {', '.join(names)} and the cache")
    _E, da = module.mse_loss(out[0], y)
    grads = module.backward(da, out[-1], **extra)
    want = {**p, **(x if isinstance(x, dict) else {cell.inputs[0]: x}), **init}
    for key, arr in want.items():
        g = np.asarray(grads.get(key))
        if g.shape != arr.shape:
            raise CodegenError(f"the gradient {key} has shape {g.shape}, expected {arr.shape} (stage of {key})")
        if not np.all(np.isfinite(g)):
            raise CodegenError(f"the gradient {key} is not finite on a tiny random problem")
    if backend.keeps_dtype:
        for key, g in grads.items():
            if g.dtype != np.dtype(dtype):
                raise CodegenError(f"the gradient {key} came back as {g.dtype} from a {np.dtype(dtype)} forward pass")


def _attribute(e: BaseException, path: Path, text: str, cell: Cell, backend: Backend) -> str:
    """The failure, in one message: which stage's printed code, at which line, and what went wrong."""
    frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == path]
    what = f"{type(e).__name__}: {e}"
    head = f"cell {cell.name!r}: the generated {backend.name} module fails its smoke run (T, B, n_x, n_a = {SHAPE})"
    if not frames:
        return f"{head}: {what}; nothing was written"
    lineno = frames[-1].lineno or 0
    lines = text.splitlines()
    code = lines[lineno - 1].strip() if 0 < lineno <= len(lines) else ""
    stage = _stage_of(cell, backend, code)
    where = f"stage {stage!r}" if stage else "the template's own code"
    hint = ""
    if isinstance(e, NameError) and e.name in ("math", "scipy", "mpmath", "cmath"):
        called = re.search(rf"\b{e.name}(?:\.\w+)*\.(\w+)\(", code)
        function = called.group(1) if called else "a function"
        hint = (
            f"; SymPy printed {function} through {e.name}, which a generated module does not import: {function} "
            "has no NumPy ufunc, so it is not supported in a stage — write the stage with NumPy's functions "
            "(tanh, exp, log, sqrt …, sigmoid, softsign), or give a sympy.Function of your own a _numpycode method"
        )
    return f"{head} in the code printed for {where}, line {lineno}: {code!r}: {what}{hint}; nothing was written"


def _stage_of(cell: Cell, backend: Backend, code: str) -> str | None:
    """The stage whose printed statement is ``code`` (None when the template wrote it)."""
    try:
        statements = backend.statements(cell)
    except CodegenError:  # pragma: no cover - render succeeded, so the plan builds
        return None
    return next((st.stage for st in statements if code.startswith(st.code)), None)
