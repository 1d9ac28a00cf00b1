"""The package's layout holds: imports run one way (no circle, nothing climbs back up), a backend is a folder plus
one line in BACKENDS, a kernel's hash covers only what renders kernels, and no module outgrows one idea."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from symbolic_lstm import get_cell
from symbolic_lstm.codegen.backends import BACKENDS, NumPyBackend, get, of_module
from symbolic_lstm.runtime.paths import PACKAGE_DIR, templates_dir

#: Where a module may take a few more lines than ~400 because one idea needs them (none at present).
LONG_MODULES: dict[str, str] = {}
LIMIT = 450


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE_DIR.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports() -> dict[str, set[str]]:
    """Every runtime import between the package's modules (lazy ones included, TYPE_CHECKING ones not)."""
    files = {_module_name(p): p for p in PACKAGE_DIR.rglob("*.py")}
    edges: dict[str, set[str]] = {m: set() for m in files}
    for name, path in files.items():
        package = name.split(".") if path.name == "__init__.py" else name.split(".")[:-1]
        tree = ast.parse(path.read_text(encoding="utf-8"))
        typing_only = {
            id(n)
            for node in ast.walk(tree)
            if isinstance(node, ast.If) and getattr(node.test, "id", "") == "TYPE_CHECKING"
            for b in node.body
            for n in ast.walk(b)
        }
        for node in ast.walk(tree):
            if id(node) in typing_only or not isinstance(node, ast.ImportFrom | ast.Import):
                continue
            if isinstance(node, ast.Import):
                edges[name] |= {a.name for a in node.names if a.name in files}
                continue
            base = package[: len(package) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            subs = {f"{target}.{a.name}" for a in node.names} & set(files)
            rest = [a for a in node.names if f"{target}.{a.name}" not in files]
            edges[name] |= subs | ({target} if rest and target in files else set())
        edges[name].discard(name)
    return edges


def _cycle(edges: dict[str, set[str]]) -> list[str] | None:
    state: dict[str, int] = {}
    path: list[str] = []

    def visit(v: str) -> list[str] | None:
        state[v] = 1
        path.append(v)
        for w in sorted(edges.get(v, ())):
            if state.get(w) == 1:
                return [*path[path.index(w) :], w]
            if w not in state and (found := visit(w)):
                return found
        state[v] = 2
        path.pop()
        return None

    for v in sorted(edges):
        if v not in state and (found := visit(v)):
            return found
    return None


def test_no_module_imports_itself_back_through_others():
    found = _cycle(_imports())
    assert found is None, "import circle: " + " → ".join(found or [])


def test_no_package_imports_one_that_imports_it_back():
    """Between the packages by role (engine/, codegen/, check/ …), too."""
    packages: dict[str, set[str]] = {}
    for a, bs in _imports().items():
        top = ".".join(a.split(".")[:2])
        packages.setdefault(top, set()).update(".".join(b.split(".")[:2]) for b in bs)
        packages[top].discard(top)
    found = _cycle(packages)
    assert found is None, "package circle: " + " → ".join(found or [])


#: The house's floors: what each package by role may import of the others.  Anything else climbs back up.
MAY_IMPORT = {
    "runtime": set(),  # paths, atomic files, trust, running verified bytes: what every floor stands on
    "engine": {"runtime"},  # SymPy; only engine.cells reads a cell file, once and verified (below)
    "proof": {"engine", "runtime"},  # runtime: the cache of proved rules (atomic JSON, a private folder)
    "check": {"engine", "runtime"},  # the judge never imports codegen: it shares no code with what it judges
    "codegen": {"engine", "check", "runtime"},  # check: the smoke run judges the text before it is written
    "document": {"engine", "codegen", "runtime"},
    "train": {"engine", "runtime"},  # a training run is handed its kernels; it never generates them
    "bridges": {"engine", "codegen", "runtime", "train"},
    "distributed": {"engine", "codegen", "check", "proof", "runtime", "train"},
    "cli": {"engine", "codegen", "check", "proof", "document", "runtime", "train", "bridges", "distributed"},
}
ROLES = sorted(MAY_IMPORT)


def _role(module: str) -> str:
    return [*module.split("."), ""][1]


def test_the_top_level_is_the_roles():
    """≤ 12 entries: the packages by role, the package's own ``__init__`` and ``__main__``."""
    entries = [p for p in PACKAGE_DIR.iterdir() if p.name not in ("__pycache__", "py.typed")]
    assert sorted(p.name for p in entries if p.is_dir()) == ROLES
    assert sorted(p.name for p in entries if not p.is_dir()) == ["__init__.py", "__main__.py"]
    assert len(entries) <= 12


@pytest.mark.parametrize("role", ROLES)
def test_no_import_climbs_back_up(role):
    wrong = [
        f"{a} → {b}"
        for a, bs in _imports().items()
        if _role(a) == role
        for b in bs
        if _role(b) not in {role, *MAY_IMPORT[role]}
    ]
    assert not wrong, wrong


def test_the_engine_imports_only_the_engine():
    """Only the built-in cells' registry reaches out, to read a user's cell file through runtime.trust."""
    wrong = [
        f"{a} → {b}"
        for a, bs in _imports().items()
        if _role(a) == "engine" and not a.startswith("symbolic_lstm.engine.cells")
        for b in bs
        if _role(b) != "engine"
    ]
    assert not wrong, wrong


def test_what_renders_kernels_never_reads_a_written_module():
    """codegen's loader and staleness judge read modules already written; nothing that renders one imports them
    (a kernel's hash leaves them out for that reason)."""
    from symbolic_lstm.codegen.backend import NOT_RENDERING

    readers = {f"symbolic_lstm.codegen.{n.removesuffix('.py')}" for n in NOT_RENDERING}
    reading = {a for a, bs in _imports().items() if _role(a) == "codegen" and "symbolic_lstm.runtime.trust" in bs}
    assert reading <= readers, f"read modules but are hashed as rendering ones: {sorted(reading - readers)}"
    wrong = [
        f"{a} → {b}"
        for a, bs in _imports().items()
        if _role(a) == "codegen" and a not in readers
        for b in bs
        if b in readers
    ]
    assert not wrong, wrong


def test_the_public_paths_are_the_modules_they_name():
    """``symbolic_lstm.torch``, ``.jax``, ``.loader``, ``.gradcheck``, ``.cells``, ``.heads``: one module object under
    two names, its own spec kept; a module below one (``symbolic_lstm.cells.lstm``) too."""
    import importlib
    import importlib.util

    import symbolic_lstm

    for public, home in symbolic_lstm.PUBLIC_PATHS.items():
        if public in ("symbolic_lstm.torch", "symbolic_lstm.jax") and importlib.util.find_spec(public[14:]) is None:
            continue
        module = importlib.import_module(public)
        assert module is importlib.import_module(home)
        assert module.__spec__.name == home and module.__name__ == home
    assert importlib.import_module("symbolic_lstm.cells.lstm") is importlib.import_module(
        "symbolic_lstm.engine.cells.lstm"
    )
    from symbolic_lstm.loader import module_for

    assert module_for.__module__ == "symbolic_lstm.codegen.loader"


def test_every_backend_is_a_folder_with_its_templates_named_once():
    folders = {p.name for p in (PACKAGE_DIR / "codegen" / "backends").iterdir() if (p / "__init__.py").is_file()}
    assert {b.folder.name for b in BACKENDS.values()} == folders
    for name, backend in BACKENDS.items():
        assert backend.name == name and get(name) is backend
        assert (templates_dir() / backend.templates).is_dir()
        assert of_module(backend.module_name(get_cell("lstm"))) == ("lstm", backend)
    with pytest.raises(ValueError, match="backend must be one of 'numpy', 'array-api'"):
        get("cuda")


def test_a_kernels_hash_covers_only_what_renders_kernels():
    """LaTeX or notebook work never rewrites generated/: those files are not among a backend's sources, nor
    is another backend's folder."""
    for backend in BACKENDS.values():
        names = {str(p.relative_to(PACKAGE_DIR.parent)) for p in backend.source_files()}
        for never in ("document", "cli", "proof", "check", "train", "bridges", "engine/cells", "codegen/loader.py"):
            assert not any(n.startswith(f"symbolic_lstm/{never}") for n in names), (backend.name, never)
        others = [b.folder for b in BACKENDS.values() if b is not backend]
        assert not any(Path(PACKAGE_DIR.parent, n).is_relative_to(f) for n in names for f in others)
        assert any(n.startswith(f"templates/{backend.templates}/") for n in names)


def test_a_new_backend_goes_through_the_pipeline_with_nothing_else_changed(tmp_path):
    """A subclass with a name and a suffix of its own: rendered, smoke-run and written by the pipeline, loaded
    by module_for — nothing in the loader or the smoke run asks which backend it is."""
    from symbolic_lstm.codegen.loader import module_for
    from symbolic_lstm.codegen.pipeline import write_checked

    class Copy(NumPyBackend):
        name = "numpy-copy"
        suffix = "_copy"
        summary = "the NumPy kernels under another name"

    cell = get_cell("rnn")
    path = write_checked(cell, Copy(), tmp_path)
    assert path.name == "rnn_copy.py"
    found = module_for(cell, tmp_path, backend=Copy())
    assert found.path == path and found.module.CELL == "rnn"


def test_no_module_outgrows_one_idea():
    long = {
        _module_name(p): n
        for p in PACKAGE_DIR.rglob("*.py")
        if (n := len(p.read_text(encoding="utf-8").splitlines())) > LIMIT and _module_name(p) not in LONG_MODULES
    }
    assert not long, f"split these (or say in LONG_MODULES why one idea needs the lines): {long}"


def test_every_package_is_installed():
    """setup.cfg lists the packages explicitly (templates/, generated/ and data/ are mapped into the package): a
    package missing from the list is missing from a regular install, and its imports fail there alone."""
    import configparser

    config = configparser.ConfigParser()
    config.read(PACKAGE_DIR.parent / "setup.cfg")
    listed = set(config["options"]["packages"].split())
    found = {_module_name(p) for p in PACKAGE_DIR.rglob("__init__.py") if "__pycache__" not in p.parts}
    assert found <= listed, f"add to setup.cfg [options] packages: {sorted(found - listed)}"


def _codegen_classes() -> list[type]:
    """Every class the codegen package defines (each of its modules imported)."""
    import importlib
    import importlib.util
    import inspect
    import pkgutil

    import symbolic_lstm.codegen as codegen

    modules = [codegen] + [
        importlib.import_module(m.name)
        for m in pkgutil.walk_packages(codegen.__path__, prefix="symbolic_lstm.codegen.")
    ]
    return [
        cls
        for module in modules
        for _, cls in inspect.getmembers(module, inspect.isclass)
        if cls.__module__ == module.__name__
    ]


def _own_depth(cls: type) -> int:
    """Levels of inheritance counting the class itself, ``object`` not: only those defined in symbolic_lstm where
    the class builds on a third-party one (a SymPy printer, an Exception, ``ABC``)."""
    return sum(1 for c in cls.__mro__ if c is not object and c.__module__.startswith("symbolic_lstm."))


def test_no_codegen_class_is_deeper_than_three():
    """A plan holds its parts (schedule, names, forward and backward printers, the losses) instead of inheriting
    them: following ``self.x`` opens at most three classes."""
    classes = _codegen_classes()
    assert len(classes) > 10
    deep = {f"{c.__module__}.{c.__qualname__}": _own_depth(c) for c in classes if _own_depth(c) > 3}
    assert not deep, f"hold these parts instead of inheriting them: {deep}"


#: The few places a stage's kind may be tested outside engine/stages.py, each with its reason (at most 3).
KIND_TESTS = {
    "symbolic_lstm/engine/cell.py": "Cell.linear_stages: the typed view of the products (their weights, operands)",
}
STAGE_KINDS = {"Linear", "Elementwise", "Reduce"}


def _names(node: ast.AST) -> set[str]:
    """The names ``node`` mentions, bare or as an attribute's last part (``stages.Linear``)."""
    return {n.id for n in ast.walk(node) if isinstance(n, ast.Name)} | {
        n.attr for n in ast.walk(node) if isinstance(n, ast.Attribute)
    }


def _kind_tests(tree: ast.AST) -> int:
    """``isinstance(x, K)``, ``type(x) is K`` / ``==``, ``case K():`` for a stage kind K."""
    found = 0
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "isinstance" and len(node.args) == 2:
            found += bool(_names(node.args[1]) & STAGE_KINDS)
        elif isinstance(node, ast.Compare) and any(
            isinstance(op, ast.Is | ast.IsNot | ast.Eq | ast.NotEq) for op in node.ops
        ):
            sides = [node.left, *node.comparators]
            typed = any(isinstance(x, ast.Call) and getattr(x.func, "id", "") == "type" for x in sides)
            found += typed and bool(set().union(*(_names(x) for x in sides)) & STAGE_KINDS)
        elif isinstance(node, ast.MatchClass):
            found += bool(_names(node.cls) & STAGE_KINDS)
    return found


def test_a_stage_is_asked_what_it_does_not_which_kind_it_is():
    """Consumers call the stage's own methods (compose, expressions, unitwise …): a stage's kind is tested
    (``isinstance``, ``type(…) is``, ``case K()``) only where :data:`KIND_TESTS` says why, ≤ 3 places outside
    engine/stages.py."""
    found: dict[str, int] = {}
    for path in PACKAGE_DIR.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE_DIR.parent))
        if rel != "symbolic_lstm/engine/stages.py" and (n := _kind_tests(ast.parse(path.read_text(encoding="utf-8")))):
            found[rel] = n
    assert set(found) <= set(KIND_TESTS), {k: v for k, v in found.items() if k not in KIND_TESTS}
    assert sum(found.values()) <= 3, found
    assert (
        _kind_tests(
            ast.parse("isinstance(st, stages.Linear)\ntype(st) is Reduce\nmatch st:\n case Elementwise(): pass")
        )
        == 3
    )


def test_no_backend_is_named_in_a_comparison_outside_the_backends():
    """Which backend a module is decides nothing outside codegen/backends/: the backend object says (its
    ``tensors``, ``elsewhere``, ``line_by_line`` …).  ``"jax" in sys.modules`` asks whether a library is
    imported, not which backend runs."""
    names = set(BACKENDS)
    wrong = []
    for path in PACKAGE_DIR.rglob("*.py"):
        rel = str(path.relative_to(PACKAGE_DIR.parent))
        if rel.startswith("symbolic_lstm/codegen/backends/"):
            continue
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Compare):
                continue
            sides = [node.left, *node.comparators]
            if any(ast.unparse(s) == "sys.modules" or ast.unparse(s).endswith("__name__") for s in sides):
                continue  # whether a library is imported, or a module's own name: not which backend runs
            constants = {
                c.value for s in sides for c in ast.walk(s) if isinstance(c, ast.Constant) and isinstance(c.value, str)
            }
            if constants & names:
                wrong.append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    assert not wrong, wrong


def test_every_generated_module_says_its_backend():
    """``BACKEND = "<name>"`` in every committed module, the backend whose module name it has: how the loader,
    the staleness check and data-parallel training know it (never from a file name)."""
    from symbolic_lstm.codegen.stale import recorded_backend
    from symbolic_lstm.engine.cells import BUILTIN
    from symbolic_lstm.runtime.paths import generated_dir

    for name in BUILTIN:
        for backend in BACKENDS.values():
            path = generated_dir() / f"{backend.module_name(get_cell(name))}.py"
            assert recorded_backend(path.read_text(encoding="utf-8")) == backend.name, path


def test_pickles_made_before_the_move_still_load():
    """A cell pickled, a layer ``torch.save``'d at c48cba8 name ``symbolic_lstm.cell``, ``.functions``, ``.torch``:
    they load, as the same cell and a layer that computes what a fresh one with those weights computes."""
    import pickle

    import symbolic_lstm
    from symbolic_lstm import CellBuilder, sigmoid, softsign

    here = Path(__file__).parent / "pickles"
    old = pickle.loads((here / "user_cell_c48cba8.pickle").read_bytes())
    b = CellBuilder("tiny", states=("a",))
    s = b.linear("s", [b.prev("a"), "x"], weight="W", bias="b")
    b.stage("a", softsign(s) * sigmoid(s))
    assert old == b.build() and old.digest == b.build().digest
    assert symbolic_lstm.loader.module_for.__module__ == "symbolic_lstm.codegen.loader"  # attribute access, too
    torch = pytest.importorskip("torch")
    from symbolic_lstm.torch import RecurrentLayer

    layer = torch.load(here / "lstm_layer_c48cba8.pt", weights_only=False)
    fresh = RecurrentLayer("lstm", 3, 4, dtype=torch.float64, seed=3)
    fresh.load_state_dict(layer.state_dict())
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    out, _ = layer(x)
    out.sum().backward()
    assert torch.equal(out, fresh(x)[0]) and layer.W_f.grad is not None
