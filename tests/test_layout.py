"""The package's layout holds: imports run one way (no circle, nothing climbs back up), a backend is a folder plus
one line in BACKENDS, a kernel's hash covers only what renders kernels, and no module outgrows one idea."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from symbolic_lstm import get_cell
from symbolic_lstm.codegen.backends import BACKENDS, NumPyBackend, get, of_module
from symbolic_lstm.paths import PACKAGE_DIR, templates_dir

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
    """Between the top-level modules and packages (codegen/, train/, distributed/, cli/ …), too."""
    packages: dict[str, set[str]] = {}
    for a, bs in _imports().items():
        top = ".".join(a.split(".")[:2])
        packages.setdefault(top, set()).update(".".join(b.split(".")[:2]) for b in bs)
        packages[top].discard(top)
    found = _cycle(packages)
    assert found is None, "package circle: " + " → ".join(found or [])


#: What a layer may not import (prefixes of module names): the arrows that would climb back up.
FORBIDDEN = {
    "symbolic_lstm.codegen": (
        "symbolic_lstm.emit_", "symbolic_lstm.printer_latex", "symbolic_lstm.latex_layout", "symbolic_lstm.notebook",
        "symbolic_lstm.cli", "symbolic_lstm.train", "symbolic_lstm.distributed", "symbolic_lstm.torch",
        "symbolic_lstm.jax", "symbolic_lstm.proof", "symbolic_lstm.loader", "symbolic_lstm.stale",
    ),
    "symbolic_lstm.proof": ("symbolic_lstm.distributed", "symbolic_lstm.codegen", "symbolic_lstm.cli"),
    "symbolic_lstm.train": ("symbolic_lstm.distributed", "symbolic_lstm.cli", "symbolic_lstm.codegen"),
    "symbolic_lstm.gradcheck": ("symbolic_lstm.codegen", "symbolic_lstm.loader"),
}  # fmt: skip
ENGINE = ("cell", "graph", "derivation", "functions", "notation", "heads", "timeline", "reserved")


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_no_import_climbs_back_up(layer):
    wrong = [
        f"{a} → {b}"
        for a, bs in _imports().items()
        if a.startswith(layer)
        for b in bs
        if b.startswith(FORBIDDEN[layer])
    ]
    assert not wrong, wrong


def test_the_engine_imports_only_the_engine():
    engine = {f"symbolic_lstm.{m}" for m in ENGINE}
    wrong = [f"{a} → {b}" for a, bs in _imports().items() if a in engine for b in bs if b not in engine]
    assert not wrong, wrong


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
        for never in ("emit_latex.py", "printer_latex.py", "latex_layout.py", "notebook.py", "emit_dot.py", "cli"):
            assert not any(n.startswith(f"symbolic_lstm/{never}") for n in names), (backend.name, never)
        others = [b.folder for b in BACKENDS.values() if b is not backend]
        assert not any(Path(PACKAGE_DIR.parent, n).is_relative_to(f) for n in names for f in others)
        assert any(n.startswith(f"templates/{backend.templates}/") for n in names)


def test_a_new_backend_goes_through_the_pipeline_with_nothing_else_changed(tmp_path):
    """A subclass with a name and a suffix of its own: rendered, smoke-run and written by the pipeline, loaded
    by module_for — nothing in the loader or the smoke run asks which backend it is."""
    from symbolic_lstm.codegen.pipeline import write_checked
    from symbolic_lstm.loader import module_for

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
