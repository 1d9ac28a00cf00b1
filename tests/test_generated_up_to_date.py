"""The committed generated/ modules are exactly what the current engine and templates produce."""

from __future__ import annotations

import difflib

import pytest

from symbolic_lstm.cells import BUILTIN, get_cell
from symbolic_lstm.codegen.backends import BACKENDS
from symbolic_lstm.codegen.pipeline import generate, source_hash
from symbolic_lstm.paths import generated_dir


@pytest.mark.parametrize("backend", sorted(BACKENDS))
@pytest.mark.parametrize("cell", sorted(BUILTIN))
def test_regenerated_module_is_byte_identical(cell, backend):
    emitter = BACKENDS[backend]
    name = emitter.module_name(get_cell(cell))
    committed = generated_dir() / f"{name}.py"
    hint = f"symbolic-lstm generate --cell {cell} --backend {backend}"
    assert committed.is_file(), f"generated/{name}.py is missing; run: {hint}"
    new, old = emitter.render(get_cell(cell)).encode(), committed.read_bytes()
    if new != old:
        diff = "".join(
            difflib.unified_diff(
                old.decode().splitlines(keepends=True),
                new.decode().splitlines(keepends=True),
                f"generated/{name}.py (committed)",
                f"generated/{name}.py (regenerated)",
            )
        )
        pytest.fail(f"generated/{name}.py is stale; run: {hint}\n{diff[:6000]}")


def test_generation_is_deterministic(tmp_path):
    (a,) = generate([get_cell("lstm")], tmp_path / "one")
    (b,) = generate([get_cell("lstm")], tmp_path / "two")
    assert a.read_bytes() == b.read_bytes()


def test_hash_tracks_the_cell_definition():
    from symbolic_lstm.cells import lstm
    from symbolic_lstm.functions import softsign

    assert source_hash(get_cell("lstm")) == source_hash(get_cell("lstm"))
    assert source_hash(get_cell("lstm")) != source_hash(lstm.build(candidate=softsign))
