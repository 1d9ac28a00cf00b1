"""Damaged or changed state: one clear line each, exit 2 — checkpoints whose arrays or settings no run could have
written, a cell file edited or moved since, a checkpoint that names a cell file (it never runs it by itself) —
and a RecurrentLayer that pickles (deepcopy, torch.save of the whole module) and names the dtypes it cannot run."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from symbolic_lstm import train as tr
from symbolic_lstm.cli import main

SMALL = ["train", "--data", "sunspots", "--hidden", "4", "--window", "6", "--seed", "3", "-q"]
#: The one-gate cell from a file, which leaves a mark beside itself whenever it runs.
CELL = (Path(__file__).parent / "cells" / "gated.py").read_text() + (
    '\nimport pathlib\n\npathlib.Path(__file__).with_name("cell-file-ran").write_text("ran")\n'
)


@pytest.fixture(scope="module")
def good(tmp_path_factory) -> Path:
    ck = tmp_path_factory.mktemp("good") / "run.npz"
    r = CliRunner().invoke(main, [*SMALL, "--epochs", "2", "--checkpoint", str(ck)])
    assert r.exit_code == 0, r.output
    return ck


def _edited(good: Path, out: Path, arrays=None, meta=None) -> Path:
    """A copy of ``good`` with some arrays or settings changed, as a hand edit that also drops the digests leaves
    it: the values alone are judged (with the digests kept, any change is named by them: test_checkpoint_fields)."""
    with np.load(good) as z:
        data = {k: z[k] for k in z.files}
    info = json.loads(str(data["meta"]))
    info.pop("digests")
    if meta is not None:
        meta(info)
    data["meta"] = np.array(json.dumps(info))
    if arrays is not None:
        arrays(data)
    np.savez(out, **data)
    return out


def _drop(key):
    return lambda d: d.pop(key)


def _set(key, value):
    return lambda d: d.__setitem__(key, value)


def _drop_all(prefix):
    return lambda d: [d.pop(k) for k in [k for k in d if k.startswith(prefix)]]


def _retype(key, dtype):
    return lambda d: d.__setitem__(key, d[key].astype(dtype))


def _rng(name, value):
    """Set a field of the batch generator's state (``state``/``inc`` inside its ``state``)."""
    return lambda m: (m["rng"]["state"] if name in ("state", "inc") else m["rng"]).__setitem__(name, value)


def _config(name, value):
    return lambda m: m["config"].__setitem__(name, value)


DAMAGE = {
    "a missing parameter": (dict(arrays=_drop("p/W_f")), r"missing: W_f"),
    "a wrong shape": (dict(arrays=lambda d: d.__setitem__("p/b_f", np.zeros(7))), r"b_f has shape \(7,\)"),
    "float32 parameters": (dict(arrays=lambda d: d.__setitem__("p/b_f", d["p/b_f"].astype(np.float32))), "float32"),
    "a NaN parameter": (dict(arrays=lambda d: d["p/W_f"].__setitem__((0, 0), np.nan)), "NaN or infinite"),
    "bad optimiser state": (dict(arrays=_set("opt/m/p/W_f", np.zeros(3))), "optimiser's state opt/m/p/W_f is damaged"),
    "a bad step count": (dict(arrays=_set("opt/t", np.array([1.5, 2]))), "step count opt/t is damaged"),
    "lr = -1": (dict(meta=_config("lr", -1)), r"lr = -1 is not a positive number"),
    "hidden = 'sixteen'": (dict(meta=_config("hidden", "sixteen")), "hidden = 'sixteen' is not a whole number"),
    "hidden = 32 beside n_a = 4 arrays": (dict(meta=_config("hidden", 32)), r"has shape \(4, 5\), but hidden = 32"),
    "epoch = -5": (dict(meta=lambda m: m.__setitem__("epoch", -5)), "epoch -5 is not a whole number from 0"),
    "a damaged batch generator": (dict(meta=lambda m: m.__setitem__("rng", {"state": 3})), "batch generator"),
    "an unknown optimiser": (dict(meta=_config("optimizer", "rmsprop")), "optimizer = 'rmsprop'"),
    # issue 37, item 6 and its list: each was resumed (moments reset, a state rounded) or a raw traceback
    "Adam's first moments removed": (dict(arrays=_drop_all("opt/m/")), r"missing opt/m/head/W_y, opt/m/head/b_y"),
    "the step count removed": (dict(arrays=_drop("opt/t")), r"step count opt/t is missing"),
    "int64 moments": (dict(arrays=_retype("opt/v/p/W_f", np.int64)), r"opt/v/p/W_f is damaged \(int64"),
    "a moment of no parameter": (dict(arrays=_set("opt/m/p/W_zz", np.zeros(3))), r"holds opt/m/p/W_zz"),
    "a generator state of 1.5": (dict(meta=_rng("has_uint32", 1.5)), r"rng.has_uint32 = 1.5 is not a whole"),
    "a generator state of -1": (dict(meta=_rng("state", -1)), r"rng.state.state = -1 is not a whole"),
    "a generator state of 2**200": (dict(meta=_rng("inc", 2**200)), r"rng.state.inc = 1606.* is not a whole"),
    "an even generator increment": (dict(meta=_rng("inc", 2)), r"rng.state.inc = 2 is even"),
    "no generator state": (dict(meta=lambda m: m.pop("rng")), r"settings are missing or damaged: KeyError 'rng'"),
    "seed = -1": (dict(meta=_config("seed", -1)), r"seed = -1 is not a whole number of at least 0"),
    "holdout = 0.9999999": (dict(meta=_config("holdout", 0.9999999)), r"holdout = 0.9999999 holds out all"),
    "hidden = 10**6": (dict(meta=_config("hidden", 10**6)), r"hidden = 1000000 is above 4096"),
}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
def test_a_damaged_checkpoint_is_one_line_and_exit_2(good, tmp_path, damage):
    how, message = DAMAGE[damage]
    bad = _edited(good, tmp_path / "bad.npz", **how)
    r = CliRunner().invoke(main, ["train", "--resume", str(bad), "--epochs", "5"])
    assert r.exit_code == 2, (damage, r.output)
    assert "Traceback" not in r.output and isinstance(r.exception, SystemExit), r.output
    assert re.search(message, r.output.replace("\n", " ")), r.output


def _header_declaring(good: Path, out: Path, elements: int) -> Path:
    """A copy of ``good`` whose array p/W_f declares ``elements`` float64s in its .npy header (the bytes stay)."""
    import zipfile

    with zipfile.ZipFile(good) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "p/W_f.npy":
                old = re.search(rb"'shape': \([^)]*\)", data).group(0)
                new = b"'shape': (%d,)" % elements
                data = data.replace(old, new + b" " * max(0, len(old) - len(new)))
                data = data[: len(data) - max(0, len(new) - len(old))] if len(new) > len(old) else data
            dst.writestr(info, data)
    return out


def _zip_directory_lying(good: Path, out: Path) -> Path:
    """A copy of ``good`` whose zip directory says its first member holds 2**51 bytes (zip64), header to match."""
    import struct

    data = bytearray(good.read_bytes())
    central = data.rfind(b"PK\x01\x02")
    first = data.find(b"PK\x01\x02")
    assert 0 <= first <= central
    struct.pack_into("<II", data, first + 20, 0xFFFFFFFF, 0xFFFFFFFF)  # sizes: see the zip64 extra field
    name_len, extra_len = struct.unpack_from("<HH", data, first + 28)
    extra = struct.pack("<HHQQ", 1, 16, 2**51, 2**51)
    start = first + 46 + name_len
    data[start : start + extra_len] = extra
    struct.pack_into("<H", data, first + 30, len(extra))
    out.write_bytes(bytes(data))
    return out


def test_a_zip_directory_that_lies_about_sizes_allocates_nothing(good, tmp_path):
    """Found in review: the sizes in the zip directory are the writer's word; a member claiming 2 PiB was
    believed and allocated (a raw MemoryError).  No member may hold more than the file does."""
    bad = _zip_directory_lying(good, tmp_path / "bad.npz")
    r = CliRunner().invoke(main, ["train", "--resume", str(bad), "--epochs", "5"])
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.output
    assert "not a symbolic-lstm checkpoint" in " ".join(r.output.split()), r.output


@pytest.mark.parametrize("how", ["a lone .npy renamed .npz", "a header declaring 10**11 elements"])
@pytest.mark.parametrize("option", ["--resume", "--checkpoint"])
def test_an_archive_that_is_no_checkpoint_is_named_not_a_traceback(good, tmp_path, how, option):
    """Issue 37: these raised TypeError and MemoryError, on --resume and on --checkpoint alike."""
    if how.startswith("a lone"):
        bad = tmp_path / "bad.npz"
        np.save(tmp_path / "lone.npy", np.zeros(3))
        (tmp_path / "lone.npy").rename(bad)
        said = "holds a single array, not an .npz archive"
    else:
        bad = _header_declaring(good, tmp_path / "bad.npz", 10**11)
        said = "its array 'p/W_f' is damaged (its header declares 800000000000 bytes"
    args = ["--resume", str(bad), "--epochs", "5"] if option == "--resume" else [*SMALL, "--checkpoint", str(bad)]
    r = CliRunner().invoke(main, ["train", *args] if option == "--resume" else args)
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.output
    text = " ".join(r.output.split())
    assert (said if option == "--resume" else "is not a symbolic-lstm checkpoint") in text, r.output


def test_from_checkpoint_names_damage_too(good, tmp_path):
    torch = pytest.importorskip("torch")
    from symbolic_lstm.bridges.torch import RecurrentLayer

    layer = RecurrentLayer.from_checkpoint(good)
    assert layer.input_size == 1 and layer.hidden_size == 4 and layer.dtype == torch.float64
    with pytest.raises(ValueError, match="missing: W_f"):
        RecurrentLayer.from_checkpoint(_edited(good, tmp_path / "bad.npz", arrays=_drop("p/W_f")))
    np.savez(tmp_path / "one.npz", np.zeros(3))
    with pytest.raises(ValueError, match="not a symbolic-lstm checkpoint"):
        RecurrentLayer.from_checkpoint(tmp_path / "one.npz")


# -- a cell file: never run by a checkpoint itself; moved is fine, edited is refused unless told ---------------
@pytest.fixture
def user_run(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cells = tmp_path / "cells"
    cells.mkdir()
    (cells / "gated.py").write_text(CELL)
    ck = tmp_path / "run.npz"
    args = [*SMALL, "--cell", f"{cells / 'gated.py'}:build", "--epochs", "2", "--checkpoint", str(ck)]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0, r.output
    (cells / "cell-file-ran").unlink()
    return tmp_path, cells, ck


def test_a_checkpoint_never_runs_the_cell_file_it_names(user_run):
    _, cells, ck = user_run
    r = CliRunner().invoke(main, ["train", "--resume", str(ck), "--epochs", "3"])
    assert r.exit_code == 2 and "a checkpoint does not run code by itself: pass --cell" in r.output, r.output
    assert not (cells / "cell-file-ran").exists()
    torch = pytest.importorskip("torch")
    from symbolic_lstm.bridges.torch import RecurrentLayer

    with pytest.raises(ValueError, match="a checkpoint does not run code by itself"):
        RecurrentLayer.from_checkpoint(ck)
    assert not (cells / "cell-file-ran").exists()
    layer = RecurrentLayer.from_checkpoint(ck, cell=f"{cells / 'gated.py'}:build")
    assert layer.dtype == torch.float64 and set(layer.param_names) == {"W_f", "b_f", "W_h", "b_h"}


def test_a_moved_cell_file_resumes_and_an_edited_one_is_refused_unless_told(user_run):
    tmp_path, cells, ck = user_run
    moved = tmp_path / "elsewhere"
    moved.mkdir()
    shutil.move(cells / "gated.py", moved / "gated.py")
    again = [
        "train",
        "--resume",
        str(ck),
        "--epochs",
        "3",
        "--cell",
        f"{moved / 'gated.py'}:build",
        "--checkpoint",
        str(ck),
    ]
    r = CliRunner().invoke(main, again)
    assert r.exit_code == 0, r.output
    assert tr.load_checkpoint(ck)[0].cell == f"{moved / 'gated.py'}:build"  # the next resume finds it there
    (moved / "gated.py").write_text(CELL.replace('"W_h"', '"W_g"').replace('"b_h"', '"b_g"'))  # a parameter renamed
    args = ["train", "--resume", str(ck), "--epochs", "4", "--cell", f"{moved / 'gated.py'}:build"]
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and "its definition differs" in r.output and "--cell-changed" in r.output, r.output
    r = CliRunner().invoke(main, [*args, "--cell-changed"])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output
    assert "but cell" in r.output and "missing: W_g, b_g" in r.output.replace("\n", " "), r.output


# -- RecurrentLayer as torch users handle modules ------------------------------------------------------------
def test_a_layer_pickles_and_names_the_dtypes_it_cannot_run(tmp_path, monkeypatch):
    torch = pytest.importorskip("torch")
    import copy
    import io

    from symbolic_lstm import get_cell
    from symbolic_lstm.bridges.torch import RecurrentLayer

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "gated.py").write_text(CELL)
    x = torch.randn(5, 2, 3, dtype=torch.float64)
    for cell in ("lstm", get_cell(f"{tmp_path / 'gated.py'}:build")):
        layer = RecurrentLayer(cell, 3, 4, dtype=torch.float64, seed=1)
        twin = copy.deepcopy(layer)  # an EMA copy
        buf = io.BytesIO()
        torch.save(layer, buf)  # a whole-model save
        buf.seek(0)
        loaded = torch.load(buf, weights_only=False)
        for other in (twin, loaded):
            assert torch.equal(other(x)[0], layer(x)[0])
            other(x)[0].sum().backward()  # the kernels were found again: backward runs
    with pytest.raises(TypeError, match=r"W_f is torch\.bfloat16; the generated kernels run torch\.float32 and"):
        layer.to(torch.bfloat16)(x.to(torch.bfloat16))
    mixed = RecurrentLayer("lstm", 3, 4, dtype=torch.float64)
    mixed.b_u.data = mixed.b_u.data.float()
    with pytest.raises(TypeError, match=r"mix dtypes: b_u is torch\.float32"):
        mixed(x)


LOG_CELL = """
import sympy as sp
from symbolic_lstm import CellBuilder


def build():
    cell = CellBuilder("logcell", inputs=("x",), states=("a",), output="a", description="log of a sum")
    s = cell.linear("s", [cell.prev("a"), cell.input("x")], weight="W", bias="b")
    cell.stage("a", sp.tanh(sp.log(s + 2)))
    return cell.build()
"""


@pytest.mark.parametrize("command", ["check", "generate"])
def test_a_cell_whose_own_math_is_not_finite_is_named_not_blamed_on_the_template(tmp_path, monkeypatch, command):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    (tmp_path / "logcell.py").write_text(LOG_CELL)
    args = [command, "--cell", f"{tmp_path / 'logcell.py'}:build"] + (
        ["--out", str(tmp_path / "out")] if command == "generate" else []
    )
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 2 and isinstance(r.exception, SystemExit), r.output
    text = " ".join(r.output.split())
    assert (
        "the cell's own math is not finite" in text
        and "stage 'a' = tanh(log(s + 2)) is undefined (NaN, or a division by zero)" in text
    )
    assert "template" not in text and "Traceback" not in text and not (tmp_path / "out" / "logcell.py").exists()
