"""No reserved-name surprises: one short list of names a cell may not take, checked when the cell is built, the same
for every backend — and proof that the generated code's own names can never meet a cell's.

Every module of every built-in cell, of the paper cells and of cells named after the generated code's former
variables (``f_prime``, ``c_seq``, ``S``, ``gates``, ``tmp0``, ``dtype``, ``W_x`` …) is parsed: each name its
functions bind or read is the cell's, begins with ``_`` or ``delta_``, or is on the list (or is an argument of a
public function that holds no cell name but the output).  The own names are registered by one namer, which gives
no spelling twice.
"""

from __future__ import annotations

import ast
import builtins
import importlib.util
import inspect
import re
from collections.abc import Iterator
from pathlib import Path

import pytest
import sympy as sp

from symbolic_lstm import Cell, CellBuilder, CellError, sigmoid
from symbolic_lstm.codegen.backends.array_api.plan import ArrayAPIPlan
from symbolic_lstm.codegen.backends.jax.plan import JaxPlan
from symbolic_lstm.codegen.backends.numpy import fused, stages
from symbolic_lstm.codegen.lines import FIXED, OwnNames, output_argument
from symbolic_lstm.codegen.pipeline import render, write_checked
from symbolic_lstm.engine.cells import BUILTIN
from symbolic_lstm.engine.reserved import FREE_ARGUMENTS, RESERVED, RESERVED_BY_KIND, derived_names

BACKENDS = ("numpy", "array-api", "jax")
DOCS = Path(__file__).resolve().parents[1] / "docs" / "cells.md"
PAPERS = Path(__file__).parent / "cells" / "papers.py"
_found = importlib.util.spec_from_file_location("papers_for_test_names", PAPERS)
assert _found is not None and _found.loader is not None
papers = importlib.util.module_from_spec(_found)
_found.loader.exec_module(papers)


# -- cells named after the generated code's former variables ----------------------------------------------------


def fused_cell() -> Cell:
    """An LSTM with a peephole, every name one the kernels used for themselves (fused NumPy layout)."""
    b = CellBuilder("formerly_fused", inputs=("seq",), states=("S", "c"), output="S")
    S_prev, c_prev, x = b.prev("S"), b.prev("c"), b.input("seq")
    f = b.stage("f_prime", sigmoid(b.linear("SW", [S_prev, x], weight="W_x", bias="b_gates")))
    i = b.stage("x_gates", sigmoid(b.linear("gates", [S_prev, x], weight="WT_S_prev", bias="fold")))
    o = b.stage("x_rows", sigmoid(b.linear("tmp0", [S_prev, x], weight="dW_x", bias="by_gate")))
    g = b.stage("tanh_c", sp.tanh(b.linear("dtype", [S_prev, x], weight="SW_x", bias="b_by_gate")))
    peep = b.vector("S_sigmoid")
    c = b.stage("c", f * c_prev + i * g + peep * c_prev)
    b.stage("S", o * sp.tanh(c))
    return b.build()


def stages_cell() -> Cell:
    """SRU-like, its input read unit by unit (the stage-by-stage NumPy layout); the output named like the losses'
    argument ``labels`` (they call it ``labels_out``)."""
    b = CellBuilder("formerly_stages", inputs=("initial",), states=("labels",), output="labels", square=True)
    h, x = b.prev("labels"), b.input("initial")
    r = b.stage("steps", sigmoid(b.linear("XW_s", [h, x], weight="D_all", bias="Wk_XW_s_initial")))
    z = b.stage("ys", sp.tanh(b.linear("dsum_XW_s", [h], weight="grads", bias=None)))
    gain = b.vector("arrays", init=1.0)
    b.stage("labels", r * z * gain + (1 - r) * x)
    return b.build()


def collision_cell() -> Cell:
    """A GRU-like cell whose names would give two own names one spelling: an inner operand ``c_seq`` (``_W_c_seq``)
    beside a stored node ``W_c`` (``_W_c_seq``), two gates both short ``f``, a stored ``tanh_c_seq`` beside the
    stored tanh(c_seq) (``_tanh_c_seq_seq`` each), and names the API's free arguments use."""
    b = CellBuilder("collide", inputs=("carry",), states=("a",), output="a")
    a_prev, x = b.prev("a"), b.input("carry")
    r = b.stage("mode", sigmoid(b.linear("sum_r", [a_prev, x], weight="W_f", bias="seed")))
    c_seq = b.stage("c_seq", r * a_prev)
    h = b.stage("y", sp.tanh(b.linear("f", [c_seq, x], weight="U", bias="n_y")))
    w = b.stage("W_c", h * c_seq)
    t = b.stage("tanh_c_seq", sp.tanh(c_seq))
    b.stage("a", a_prev * w + (1 - r) * t + t * sp.tanh(c_seq))
    return b.build()


FORMER = {"fused": fused_cell, "stages": stages_cell, "collide": collision_cell}


def paper_cells() -> Iterator[tuple[str, Cell]]:
    """The paper cells of tests/cells/papers.py that take no arguments (each generates on every backend)."""
    for name, f in inspect.getmembers(papers, inspect.isfunction):
        if f.__module__ != papers.__name__ or name.startswith("_"):
            continue
        if any(p.default is p.empty for p in inspect.signature(f).parameters.values()):
            continue
        yield name, f()


def all_cells() -> list[tuple[str, Cell]]:
    return [
        *((n, f()) for n, f in BUILTIN.items()),
        *((f"papers.{n}", c) for n, c in paper_cells()),
        *((f"former.{n}", f()) for n, f in FORMER.items()),
    ]


def own_names(cell: Cell, backend: str) -> OwnNames:
    """The own names the backend's plan registers for ``cell``."""
    if backend == "numpy":
        plan = stages.StagePlan(cell) if stages.stages_reason(cell) is not None else fused.KernelPlan(cell)
    else:
        plan = {"array-api": ArrayAPIPlan, "jax": JaxPlan}[backend](cell)
    return plan.own


def cell_names(cell: Cell) -> set[str]:
    """Every name of the cell: nodes (leaves included), parameters, unit parameters."""
    return {*cell.widths, *(st.name for st in cell.stages), *cell.params, *cell.vectors, *cell.inputs}


# -- what a module's functions name ---------------------------------------------------------------------------


def function_names(text: str) -> Iterator[tuple[str, set[str], set[str]]]:
    """(function, parameters, every name bound or read inside it) for every function of a module (nested functions
    are counted in the function that holds them; their own parameters too)."""
    tree = ast.parse(text)
    for top in tree.body:
        if not isinstance(top, ast.FunctionDef):
            continue
        params = {a.arg for a in (*top.args.posonlyargs, *top.args.args, *top.args.kwonlyargs)}
        params |= {a.arg for a in (top.args.vararg, top.args.kwarg) if a is not None}
        names = set(params)
        for node in ast.walk(top):
            if isinstance(node, ast.Name):
                names.add(node.id)
            elif isinstance(node, ast.arg):
                names.add(node.arg)
            elif isinstance(node, ast.FunctionDef | ast.Lambda) and node is not top:
                if isinstance(node, ast.FunctionDef):
                    names.add(node.name)
            elif isinstance(node, ast.ExceptHandler) and node.name:
                names.add(node.name)
        yield top.name, params, names


def stray_names(cell: Cell, text: str) -> dict[str, set[str]]:
    """Per function, the names that are neither the cell's, nor own (``_…``), nor δ's, nor on the list."""
    ours = cell_names(cell) | set(derived_names(cell.states, cell.output)) | {output_argument(cell)}
    out = {}
    for fn, params, names in function_names(text):
        free = {n for n in params if n in FREE_ARGUMENTS} if not fn.startswith("_") else set()
        stray = {n for n in names if n not in ours and not n.startswith(("_", "delta_")) and n not in RESERVED}
        stray -= free
        if stray:
            out[fn] = stray
    return out


CELLS = all_cells()


@pytest.fixture(scope="module")
def modules() -> dict[tuple[str, str], tuple[Cell, str]]:
    return {(name, b): (cell, render(cell, b)) for name, cell in CELLS for b in BACKENDS}


@pytest.mark.parametrize("backend", BACKENDS)
def test_every_name_in_every_function_is_the_cells_own_or_listed(modules, backend):
    strays = {}
    for (name, b), (cell, text) in modules.items():
        if b == backend and (found := stray_names(cell, text)):
            strays[name] = found
    assert not strays


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_free_argument_meets_no_cell_name_but_the_output(modules, backend):
    """``y``, ``mode``, ``labels`` … are left to cells: a function taking one holds no cell name but the output
    (renamed ``<output>_out`` where it is named like one of them)."""
    for (_, b), (cell, text) in modules.items():
        if b != backend:
            continue
        names = cell_names(cell) - {cell.output}
        for fn, params, found in function_names(text):
            free = params & set(FREE_ARGUMENTS)
            if free and not fn.startswith("_"):
                assert not (found - free) & names, (cell.name, fn, (found - free) & names)
                assert output_argument(cell) not in FREE_ARGUMENTS


@pytest.mark.parametrize("backend", BACKENDS)
def test_own_names_are_registered_once_each_and_fixed_ones_are_known(modules, backend):
    """Every ``_`` name a module uses is one its plan registered or one of FIXED: so the namer, which never gives a
    spelling twice nor one of FIXED, has seen every name that could meet another."""
    for (_, b), (cell, text) in modules.items():
        if b != backend:
            continue
        own = own_names(cell, backend)
        used = {n for _, _, names in function_names(text) for n in names if n.startswith("_") and n != "_"}
        used |= {n.name for n in ast.parse(text).body if isinstance(n, ast.FunctionDef) and n.name.startswith("_")}
        assert used <= own.names | FIXED, (cell.name, sorted(used - own.names - FIXED))
        assert not own.names & FIXED


def test_the_collision_cell_gets_distinct_names():
    cell = collision_cell()
    for backend in BACKENDS:
        own = own_names(cell, backend)
        assert len(own.names) == len(own._given)
    kp = fused.KernelPlan(cell)
    assert kp.own("W", "c_seq") != kp.own("seq", "W_c")
    assert {kp.names.slice(g) for g in kp.s.gates} == {"_f_", "_f_2"}


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("which", sorted(FORMER))
def test_cells_named_like_the_former_kernel_variables_generate(which, backend, tmp_path):
    write_checked(FORMER[which](), backend, tmp_path)


@pytest.mark.parametrize("backend", BACKENDS)
def test_minlstm_with_the_papers_f_prime_generates(backend, tmp_path):
    write_checked(papers.minlstm(), backend, tmp_path)


def test_the_layouts_are_the_ones_meant():
    assert stages.stages_reason(fused_cell()) is None
    assert stages.stages_reason(collision_cell()) is None
    assert stages.stages_reason(stages_cell()) is not None


def test_the_builtins_the_modules_call_are_on_the_list(modules):
    called = set()
    for _, text in modules.values():
        called |= {n for _, _, names in function_names(text) for n in names if n in dir(builtins)}
    assert called == set(RESERVED_BY_KIND["builtins"])


# -- refused when the cell is built, the same for every backend ----------------------------------------------


def _lstm_like(name: str, where: str) -> CellBuilder:
    """A one-state cell with ``name`` in the position ``where`` names."""
    b = CellBuilder("probe", inputs=("x",), states=("a",), output="a")
    a_prev, x = b.prev("a"), b.input("x")
    if where == "stage":
        b.linear(name, [a_prev, x], weight="W", bias="b")
    elif where == "parameter":
        b.linear("s", [a_prev, x], weight=name, bias="b")
    elif where == "unit parameter":
        b.vector(name)
    return b


@pytest.mark.parametrize("name", sorted(RESERVED))
def test_every_listed_name_is_refused_at_build_naming_it_and_a_rename(name):
    with pytest.raises(
        CellError,
        match=rf"stage name '{re.escape(name)}' is a name the generated modules keep .*"
        r"rename it \(for example '\w+'\)",
    ):
        _lstm_like(name, "stage")
    with pytest.raises(CellError, match=rf"'{re.escape(name)}' is a name the generated modules keep"):
        _lstm_like(name, "parameter")
    with pytest.raises(CellError, match=rf"'{re.escape(name)}' is a name the generated modules keep"):
        _lstm_like(name, "unit parameter")
    with pytest.raises(CellError, match=rf"'{re.escape(name)}' is a name the generated modules keep"):
        CellBuilder("probe", inputs=(name,), states=("a",), output="a")
    with pytest.raises(CellError, match=rf"'{re.escape(name)}' is a name the generated modules keep"):
        CellBuilder("probe", inputs=("x",), states=(name,), output=name)


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("_x", "begins with _"),
        ("delta_c", "begins with delta_"),
        ("a0", "state 'a''s initial value"),
        ("da", "gradient argument of backward"),
        ("da_next", "gradient from the next step"),
        ("lambda", "is a Python keyword"),
        ("a_prev", "defined twice"),
    ],
)
def test_the_per_cell_names_are_refused_too(name, says):
    with pytest.raises(CellError, match=re.escape(says)):
        _lstm_like(name, "stage").build()


def test_a_suggested_rename_is_allowed():
    for name in [*sorted(RESERVED), "_x", "delta_c", "a0", "da", "da_next"]:
        with pytest.raises(CellError) as e:
            _lstm_like(name, "stage")
        rename = re.search(r"for example '(\w+)'", str(e.value))
        if rename:
            _lstm_like(rename.group(1), "stage")  # no error


def test_states_whose_names_would_meet_are_refused():
    with pytest.raises(CellError, match="'da_next'"):
        CellBuilder("two", inputs=("x",), states=("a", "a_next"), output="a")
    with pytest.raises(CellError, match="keyword"):
        CellBuilder("kw", inputs=("x",), states=("ef",), output="ef")  # backward's seed would be `def`
    with pytest.raises(CellError, match="twice"):
        CellBuilder("dup", inputs=("a_prev",), states=("a",), output="a")


def test_a_cell_made_by_hand_is_checked_as_well():
    with pytest.raises(CellError, match="'np'"):
        Cell("hand", ("np",), ("a",), (), "a")


@pytest.mark.parametrize(
    "name", ["f_prime", "c_seq", "x_rows", "x_gates", "tanh_c", "S", "gates", "tmp0", "dtype", "W_x", "y", "seed"]
)
def test_the_former_reserved_names_are_accepted(name):
    _lstm_like(name, "stage")
    _lstm_like(name, "unit parameter")
    _lstm_like(name, "parameter")


# -- the list in the docs is the list in the code ----------------------------------------------------------------


def documented() -> tuple[dict[str, set[str]], str]:
    """The names docs/cells.md lists as refused, by kind (the backticked names of each ``- **kind**:`` item, its
    wrapped lines included), and the text of that part."""
    text = DOCS.read_text()
    part = text[text.index("<!-- reserved names -->") : text.index("<!-- end of reserved names -->")]
    kinds: dict[str, set[str]] = {}
    for item in re.findall(r"- \*\*([^*]+)\*\*:(.*?)(?=\n\s*-|\n\s*\n)", part, flags=re.S):
        kinds[item[0]] = set(re.findall(r"`([A-Za-z_][A-Za-z0-9_]*)`", item[1]))
    return kinds, part


def test_the_documented_list_is_the_list_in_code():
    kinds, part = documented()
    assert {k: set(v) for k, v in RESERVED_BY_KIND.items()} == kinds
    assert set().union(*kinds.values()) == RESERVED
    for pattern in ("`_`", "`delta_`", "`s0`", "`ds`", "`ds_next`", "`d<output>`", "NFKC"):
        assert pattern in part
    for arg in FREE_ARGUMENTS:
        assert f"`{arg}`" in part


@pytest.mark.parametrize(
    ("name", "read"), [("ｎｐ", "np"), ("ｈ_tilde", "h_tilde"), ("ﬁ", "fi"), ("ｄelta_a", "delta_a")]
)
def test_a_name_python_reads_as_another_is_refused_saying_which(name, read):
    """Python reads every identifier in its NFKC form: ｎｐ is np (a shadowed import), ｈ_tilde is h_tilde (two
    nodes one variable). Refused at build, naming what Python reads (issue 37: they failed as generator bugs)."""
    from symbolic_lstm import CellBuilder
    from symbolic_lstm.engine.cell import CellError

    b = CellBuilder("c", inputs=("x",), states=("a",), output="a")
    with pytest.raises(CellError, match=f"is read by Python as '{read}'"):
        b.stage(name, b.linear("s", [b.prev("a"), b.input("x")], weight="W", bias="b"))
    with pytest.raises(CellError, match="is read by Python as 'mgu'"):
        CellBuilder("ｍｇｕ")
