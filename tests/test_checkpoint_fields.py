"""Every field of a checkpoint, removed, retyped or with one bit flipped (issue 37): the resume is refused with
exit 2 naming the field — or, where the change leaves the field as it was, the resumed run is bit for bit the
uninterrupted one.  Never a traceback, never a run that quietly continues from something else."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from symbolic_lstm import train as tr
from symbolic_lstm.cli import main

SMALL = ["train", "--data", "sunspots", "--hidden", "3", "--window", "4", "--seed", "5", "-q"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> tuple[Path, dict]:
    """A checkpoint at epoch 2 of 3, and the arrays the uninterrupted 3-epoch run ends with."""
    folder = tmp_path_factory.mktemp("fields")
    half, whole = folder / "half.npz", folder / "whole.npz"
    assert CliRunner().invoke(main, [*SMALL, "--epochs", "2", "--checkpoint", str(half)]).exit_code == 0
    assert CliRunner().invoke(main, [*SMALL, "--epochs", "3", "--checkpoint", str(whole)]).exit_code == 0
    with np.load(whole) as z:
        end = {k: z[k] for k in z.files if k != "meta"}
    return half, end


def _meta_fields(meta: dict) -> list[tuple[str, ...]]:
    paths = [("config", k) for k in meta["config"]] + [("epoch",), ("rng", "bit_generator"), ("rng", "has_uint32")]
    paths += [("rng", "uinteger"), ("rng", "state", "state"), ("rng", "state", "inc")]
    return paths + [("digests", k) for k in meta["digests"]]


def _flip_value(value: object, bit: int) -> object:
    if isinstance(value, bool):
        return not value
    if isinstance(value, int):
        return value ^ (1 << (bit % 64))
    if isinstance(value, float):
        (n,) = struct.unpack("<Q", struct.pack("<d", value))
        return struct.unpack("<d", struct.pack("<Q", n ^ (1 << (bit % 64))))[0]
    if isinstance(value, str) and value:
        i = bit % len(value)
        return value[:i] + chr(ord(value[i]) ^ (1 << (bit % 7))) + value[i + 1 :]
    return value


RETYPES = [str, lambda v: [v], lambda v: None, lambda v: {"v": v}, lambda v: 1.5, lambda v: True]
ARRAY_RETYPES = [
    lambda a: a.astype(np.float32), lambda a: a.astype(np.int64), lambda a: a.astype(np.complex128),
    lambda a: a.reshape(-1), lambda a: np.asarray(a, dtype=object).astype(str),
]  # fmt: skip


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_a_field_removed_retyped_or_flipped_is_named_or_changes_nothing(runs, tmp_path, data):
    half, end = runs
    with np.load(half) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    how = data.draw(st.sampled_from(["remove", "retype", "flip"]))
    if data.draw(st.booleans()):  # an array
        key = data.draw(st.sampled_from(sorted(arrays)))
        name = key
        if how == "remove":
            arrays.pop(key)
        elif how == "retype":
            arrays[key] = data.draw(st.sampled_from(ARRAY_RETYPES))(arrays[key])
        else:
            raw = bytearray(np.ascontiguousarray(arrays[key]).tobytes())
            if raw:
                bit = data.draw(st.integers(0, 8 * len(raw) - 1))
                raw[bit // 8] ^= 1 << (bit % 8)
            arrays[key] = np.frombuffer(bytes(raw), dtype=arrays[key].dtype).reshape(arrays[key].shape)
    else:  # a setting, the epoch, the generator's state, a digest
        path = data.draw(st.sampled_from(_meta_fields(meta)))
        name = path[-1]
        parent = meta
        for part in path[:-1]:
            parent = parent[part]
        if how == "remove":
            parent.pop(path[-1])
        elif how == "retype":
            parent[path[-1]] = data.draw(st.sampled_from(RETYPES))(parent[path[-1]])
        else:
            parent[path[-1]] = _flip_value(parent[path[-1]], data.draw(st.integers(0, 63)))
    bad = tmp_path / f"bad-{how}.npz"
    np.savez(bad, meta=np.array(json.dumps(meta)), **arrays)
    r = CliRunner().invoke(main, ["train", "--resume", str(bad), "--epochs", "3", "--checkpoint", str(bad)])
    assert r.exception is None or isinstance(r.exception, SystemExit), (how, name, r.output)
    assert "Traceback" not in r.output
    if r.exit_code == 2:
        assert "Error:" in r.output, r.output
        return
    assert r.exit_code == 0, (how, name, r.output)  # accepted: then it must be the uninterrupted run exactly
    with np.load(bad) as z:
        got = {k: z[k] for k in z.files if k != "meta"}
    assert got.keys() == end.keys() and all(np.array_equal(got[k], end[k]) for k in end), (how, name)


def test_each_field_is_named_when_its_bits_change(runs, tmp_path):
    """The digests name the field: an array, a setting, the generator's state."""
    half, _ = runs
    with np.load(half) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    cases = {
        "p/W_f": lambda a, m: a.__setitem__("p/W_f", np.nextafter(a["p/W_f"], 1)),
        "setting lr": lambda a, m: m["config"].__setitem__("lr", 0.0100000001),
        "field rng": lambda a, m: m["rng"].__setitem__("uinteger", m["rng"]["uinteger"] ^ 1),
        "setting seed is missing": lambda a, m: m["config"].pop("seed"),
    }
    for said, change in cases.items():
        a, m = dict(arrays), json.loads(json.dumps(meta))
        change(a, m)
        bad = tmp_path / "bad.npz"
        np.savez(bad, meta=np.array(json.dumps(m)), **a)
        r = CliRunner().invoke(main, ["train", "--resume", str(bad), "--epochs", "3"])
        assert r.exit_code == 2 and said in r.output, (said, r.output)
    assert tr.load_checkpoint(half)[1][0] == 2
