"""load(): imports only generated modules, from the package or a folder the user names; warns when stale."""

from __future__ import annotations

import re
import warnings

import pytest

from symbolic_lstm import load
from symbolic_lstm.codegen.pipeline import source_hash
from symbolic_lstm.codegen.stale import StaleModuleWarning, freshness, is_generated
from symbolic_lstm.runtime.paths import generated_dir


def _copy(tmp_path, edit=lambda s: s):
    src = (generated_dir() / "lstm.py").read_text(encoding="utf-8")
    (tmp_path / "lstm.py").write_text(edit(src), encoding="utf-8")
    return tmp_path / "lstm.py"


def test_committed_module_is_fresh_and_loads_without_warning(lstm):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        k = load("lstm")
    assert k.SOURCE_HASH == source_hash(lstm)
    assert not freshness(generated_dir() / "lstm.py").stale


def test_stale_module_loads_with_a_warning(tmp_path):
    _copy(tmp_path, lambda s: re.sub(r'SOURCE_HASH = "[0-9a-f]+"', 'SOURCE_HASH = "0000000000000000"', s))
    with pytest.warns(StaleModuleWarning, match="stale .* run: symbolic-lstm generate --cell lstm"):
        k = load("lstm", tmp_path)
    assert k.CELL == "lstm"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load("lstm", tmp_path, warn_stale=False)


def test_hash_covers_cell_definition_and_code_generator(lstm):
    from symbolic_lstm.engine.cells import lstm as lstm_cell
    from symbolic_lstm.engine.functions import softsign

    assert source_hash(lstm_cell.build(candidate=softsign)) != source_hash(lstm)
    assert source_hash(lstm_cell.build(name="other")) != source_hash(lstm)


def test_foreign_file_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    (tmp_path / "lstm.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    with pytest.raises(ValueError, match="not written by symbolic-lstm generate"):
        load("lstm", tmp_path)
    assert not marker.exists()
    assert not is_generated(tmp_path / "lstm.py")


@pytest.mark.parametrize(
    ("name", "exc", "message"),
    [
        ("../lstm", ValueError, "must be a Python identifier"),
        ("os.path", ValueError, "must be a Python identifier"),
        ("nope", ValueError, r"no generated module 'nope' .*found: .*lstm"),
        (3, TypeError, "must be a str"),
    ],
)
def test_bad_names_are_refused(name, exc, message):
    with pytest.raises(exc, match=message):
        load(name)


def test_directory_must_be_a_path():
    with pytest.raises(TypeError, match="directory must be a str or Path"):
        load("lstm", 3)


def test_load_never_runs_the_cell_file_a_module_names(tmp_path):
    """A user-cell module records its cell file; load() must not run it (check --stale may, when asked)."""
    marker = tmp_path / "ran"
    src = (generated_dir() / "lstm.py").read_text(encoding="utf-8")
    evil = tmp_path / "evil.py"
    evil.write_text(f"open({str(marker)!r}, 'w').close()\n")
    planted = src.replace("CELL_SPEC = 'lstm'", f"CELL_SPEC = {f'{evil}:build'!r}")
    assert planted != src  # the header really names the file now
    (tmp_path / "lstm.py").write_text(planted)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load("lstm", tmp_path)
    assert not marker.exists()


def test_the_package_never_suggests_writing_a_user_module_into_itself(monkeypatch):
    """generated/ holds the built-in cells (in site-packages once installed, committed and checked in a
    checkout): for any other name the hint is a folder of the user's own, installed or not."""
    from symbolic_lstm.runtime import paths

    for checkout in (True, False):
        monkeypatch.setattr(paths, "is_checkout", lambda checkout=checkout: checkout)
        with pytest.raises(ValueError) as missing:
            load("nosuch")
        text = str(missing.value)
        assert f"--out {generated_dir()}" not in text and "--out mykernels" in text
        assert "load('nosuch', 'mykernels')" in text and "holds the built-in cells only" in text
