"""The names a cell may not take: one short list, the same for every backend, checked when the cell is built.

A cell's names (nodes, stages, parameters, unit parameters, states, the input) become variables of the code the
backends print.  Every variable that code introduces itself begins with ``_`` (``_S``, ``_c_seq``, ``_W_x``,
``_tmp0``, ``_dtype``), and no cell name may: so the two never meet, whatever a backend names its buffers.
What the generated modules keep readable is refused as a cell name instead, the same for every backend:

* Python's keywords, names beginning with ``_``, and names beginning with ``delta_`` (``delta_c`` is δc<t>);
* :data:`RESERVED`: the modules they import, the kernels' loop variable and sizes, ``forward``'s and
  ``backward``'s own arguments, the modules' public names and the builtins they call;
* for every state ``s`` the arguments and carries named after it (:func:`state_names`: ``s0``, ``ds``,
  ``ds_next``; ``s_prev`` is already the name of s<t-1>), and ``d<output>``, ``backward``'s first argument.

The other arguments of the API (:data:`FREE_ARGUMENTS`: ``y``, ``mode``, ``labels`` …) may be cell names: the
functions that take them hold no cell name but the output, and where the output is named like one of them they
call it ``<output>_out`` (LEM's ``y``: ``mse_loss(y_out, y)``).
"""

from __future__ import annotations

import keyword
import unicodedata
from collections.abc import Iterable, Sequence

#: What the generated modules keep readable, by kind (docs/cells.md lists the same names).
RESERVED_BY_KIND: dict[str, tuple[str, ...]] = {
    "imports": ("np", "xp", "jax", "lax", "contextlib", "array_namespace", "device"),
    "loop and sizes": ("p", "t", "T", "B", "n_a", "n_x"),
    "arguments": ("cache", "check_finite", "keep_cache", "lengths"),
    "constants": (
        "CELL", "CELL_SPEC", "BACKEND", "SOURCE_HASH", "PARAMS", "STATES", "INPUT", "OUTPUT", "RETURNS", "WEIGHTS",
        "WEIGHT_COLUMNS", "PARAM_SHAPES", "UNIT_PARAMS", "REDUCES_OVER_UNITS", "NONSMOOTH", "SQUARE", "LAYOUT",
        "GATE_ORDER", "STORED", "N_A_FROM",
    ),
    "functions": (
        "init_params", "forward", "backward", "mse_loss", "init_head", "predict", "predict_proba", "softmax_ce_loss",
        "linear_mse_loss", "release_buffers", "scan_forward", "scan_backward",
    ),
    "builtins": (
        "range", "float", "int", "bool", "str", "tuple", "dict", "set", "slice", "zip", "max", "any", "isinstance",
        "type", "getattr", "ValueError", "TypeError",
    ),
}  # fmt: skip
#: Every name on the list: a cell may take none of them.
RESERVED: frozenset[str] = frozenset(name for names in RESERVED_BY_KIND.values() for name in names)
#: Arguments of the API that a cell name may equal: the functions taking them hold no cell name but the output,
#: which they rename ``<output>_out`` where it is named like one of them.
FREE_ARGUMENTS = ("y", "mode", "labels", "head", "seed", "dtype", "n_y")


def state_names(state: str) -> tuple[str, str, str]:
    """The names ``state`` gives the generated code: its initial value ``forward`` takes (``a0``), its δ seed
    ``backward`` takes (``da``), and δ from the next step that backward carries (``da_next``)."""
    return f"{state}0", f"d{state}", f"d{state}_next"


def input_width(inputs: Sequence[str], name: str) -> str:
    """The width of the per-step input ``name`` as the generated code names it: ``n_x`` for the first input
    (whatever its name), ``n_<name>`` for every other (``n_z`` for z)."""
    return "n_x" if name == inputs[0] else f"n_{name}"


def derived_names(states: Sequence[str], output: str, inputs: Sequence[str] = ()) -> dict[str, str]:
    """Every name the cell's states, output and inputs give the generated code, mapped to what it is (an input
    after the first gives its width ``n_<name>``: ``init_params``'s keyword, a size the kernels read)."""
    out: dict[str, str] = {}
    for i in tuple(inputs)[1:]:
        out.setdefault(input_width(inputs, i), f"input {i!r}'s width")
    for s in states:
        first, seed, carry = state_names(s)
        out.setdefault(first, f"state {s!r}'s initial value ({first}=…)")
        out.setdefault(seed, f"state {s!r}'s gradient argument of backward")
        out.setdefault(carry, f"state {s!r}'s gradient from the next step")
    out.setdefault(f"d{output}", f"output {output!r}'s gradient argument of backward")
    return out


def derived_clash(states: Sequence[str], output: str, inputs: Sequence[str] = ()) -> str | None:
    """Why the names the states and the output give the generated code (:func:`derived_names`) cannot be used —
    two states giving one name (``a`` and ``a_next``: ``da_next``), a keyword (a state ``ef``: ``def``), a name on
    the list or a δ's name — or None."""
    seen: dict[str, str] = {}
    for owner, name in [*((s, n) for s in states for n in state_names(s)), (output, f"d{output}")]:
        if seen.setdefault(name, owner) != owner:
            return f"{seen[name]!r} and {owner!r} would both give the generated code the name {name!r}"
    for name, what in derived_names(states, output, inputs).items():
        if keyword.iskeyword(name):
            return f"{what} would be {name!r}, a Python keyword"
        if name in RESERVED or name.startswith("delta_"):
            return f"{what} would be {name!r}, a name the generated modules use otherwise"
    return None


def refusal(name: str, derived: dict[str, str] | None = None) -> str | None:
    """Why ``name`` may not be a cell's name (``derived``: the names its states and output take, see
    :func:`derived_names`), or None."""
    if not isinstance(name, str) or not name.isidentifier():
        return "must be a Python identifier"
    if unicodedata.normalize("NFKC", name) != name:  # ｎｐ is np to Python: checked as what Python reads
        return f"is read by Python as {unicodedata.normalize('NFKC', name)!r} (the NFKC form of every identifier)"
    if keyword.iskeyword(name):
        return "is a Python keyword; every generated module would fail on it"
    if name.startswith("_"):
        return "begins with _, as only the generated code's own variables do"
    if name.startswith("delta_"):
        return f"begins with delta_, as the generated code's δ variables do ({name} is δ{name[len('delta_') :]})"
    if name in RESERVED:
        kind = next(k for k, names in RESERVED_BY_KIND.items() if name in names)
        return f"is a name the generated modules keep for themselves ({kind}; see docs/cells.md)"
    if derived and name in derived:
        return f"is {derived[name]} in the generated modules"
    return None


def suggestion(name: str, derived: dict[str, str] | None = None, taken: Iterable[str] = ()) -> str:
    """A name close to ``name`` that is allowed (and not in ``taken``): ``np`` → ``np_``, ``_x`` → ``x``,
    ``delta_c`` → ``c_delta``."""
    taken = set(taken)
    base = unicodedata.normalize("NFKC", name).lstrip("_") or "node"
    if base.startswith("delta_"):
        base = f"{base[len('delta_') :]}_delta"
    candidate = base if base[0].isalpha() else f"n{base}"
    while refusal(candidate, derived) is not None or candidate in taken:
        candidate += "_"
    return candidate


def problem(name: str, what: str, derived: dict[str, str], taken: Iterable[str] = ()) -> str | None:
    """What is wrong with ``name`` as the ``what`` of a cell ("stage", "unit parameter" …): not an identifier, a
    keyword, on the list (``derived``: the names the cell's states and output give the generated code) — with a
    rename that is free (not in ``taken``, the cell's names so far); None when nothing is."""
    why = refusal(name, derived)
    if why is None:
        return None
    if not isinstance(name, str) or not name.isidentifier():
        return f"{what} name {name!r} {why}"
    return f"{what} name {name!r} {why}; rename it (for example {suggestion(name, derived, taken)!r})"


def first_problem(
    cell: str, inputs: Sequence[str], states: Sequence[str], output: str, named: Sequence[tuple[str, str]] = ()
) -> str | None:
    """The first thing wrong with a cell's names — its own (a module's name), its inputs, states and output, the
    names its states and output give the generated code (:func:`derived_clash`), the leaves (``s_prev`` of each
    state, the inputs) and states being distinct, and ``named`` ((name, what) pairs: stages, parameters) — or
    None."""
    if not isinstance(cell, str) or not cell.isidentifier() or keyword.iskeyword(cell):
        return f"cell name {cell!r} must be a Python identifier that is not a keyword"
    if unicodedata.normalize("NFKC", cell) != cell:
        return f"cell name {cell!r} is read by Python as {unicodedata.normalize('NFKC', cell)!r}; write it so"
    inputs, states = tuple(inputs), tuple(states)
    prev = [f"{s}_prev" for s in states]
    taken = [*inputs, *states, *prev, *(n for n, _ in named)]
    for n in (*inputs, *states, output):
        found = problem(n, "input" if n in inputs else "state" if n in states else "output", {}, taken)
        if found:
            return found
    clash = derived_clash(states, output, inputs)
    if clash is not None:
        return f"cell {cell!r}: {clash}; rename one"
    names = [*prev, *inputs, *states]
    twice = next((n for i, n in enumerate(names) if n in names[:i]), None)
    if twice is not None:
        return f"cell {cell!r}: the name {twice!r} is used twice among the states, the inputs and s<t-1>'s (s_prev)"
    derived = derived_names(states, output, inputs)
    whats = [*((n, "node") for n in prev), *((n, "input") for n in inputs), *((s, "state") for s in states)]
    for n, what in [*whats, (output, "output"), *named]:
        found = problem(n, what, derived, taken)
        if found:
            return found
    return None
