"""The heap a run allocates from (symbolic_lstm.train.heap): train and the benches keep freed memory in their
process, so arrays allocated afresh every batch are not page-faulted in again; the user's MALLOC_* setting wins;
the results do not depend on it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from symbolic_lstm.cli import main
from symbolic_lstm.train import heap

LINUX = Path("/proc/self").exists()

_FAULTS = """
import resource
import numpy as np
from symbolic_lstm.train.heap import keep_for_run
print(keep_for_run({keep!r}))
def touch():  # 64 MiB, above glibc's largest dynamic mmap threshold (32 MiB): mapped afresh each time by default
    a = np.empty(1 << 24, dtype=np.float32)
    a.fill(1.0)
    return float(a[-1])
touch()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(5):
    touch()
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


@pytest.fixture(autouse=True)
def _no_user_setting(monkeypatch):
    for name in heap.THEIRS:
        monkeypatch.delenv(name, raising=False)


def _faults(keep: bool) -> tuple[str, int]:
    code = _FAULTS.format(keep=keep)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split("\n")
    return out[0], int(out[1])


@pytest.mark.skipif(not LINUX, reason="page faults counted on Linux")
def test_kept_memory_is_not_page_faulted_in_again():
    said, kept = _faults(keep=True)
    if "no glibc" in said:
        pytest.skip(said)
    assert said.startswith("glibc") and "keeps freed memory" in said
    default_said, default = _faults(keep=False)
    assert default_said == "malloc's defaults"
    # glibc's defaults map each 64 MiB array afresh: ~16 thousand faults (4 KiB pages) or ~160 (2 MiB huge pages)
    assert default >= 100
    assert kept * 8 <= default  # the block is reused: nothing is faulted in again


def test_the_users_malloc_setting_wins(monkeypatch):
    def refused():
        raise AssertionError("mallopt called although the environment sets the thresholds")

    monkeypatch.setattr(heap, "keep_freed_memory", refused)
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "131072")
    assert heap.keep_for_run() == "malloc as the environment sets it (MALLOC_TRIM_THRESHOLD_=131072)"


def test_train_keeps_freed_memory_for_its_process(monkeypatch):
    calls = []
    monkeypatch.setattr(heap, "keep_for_run", lambda keep=True: calls.append(keep) or "kept")
    r = CliRunner().invoke(main, ["train", "--data", "sunspots", "-n", "4", "--epochs", "1", "-q"])
    assert r.exit_code == 0, r.output
    assert calls == [True]


@pytest.mark.skipif(not LINUX, reason="glibc's thresholds")
def test_training_is_bit_identical_with_freed_memory_kept_or_not(tmp_path):
    """Keeping freed memory moves arrays to other addresses, nothing else: the checkpoints agree bit for bit."""
    args = ["-m", "symbolic_lstm", "train", "--data", "sunspots", "-n", "8", "--epochs", "3", "-q", "--checkpoint"]
    glibc_defaults = {"MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_TRIM_THRESHOLD_": "131072"}
    env = {k: v for k, v in os.environ.items() if k not in heap.THEIRS}
    for name, extra in (("kept.npz", {}), ("default.npz", glibc_defaults)):
        run = [sys.executable, *args, str(tmp_path / name)]
        subprocess.run(run, env={**env, **extra}, check=True, capture_output=True)
    kept, default = np.load(tmp_path / "kept.npz"), np.load(tmp_path / "default.npz")
    assert kept.files == default.files
    for name in kept.files:
        if kept[name].dtype.kind in "fiub":
            assert np.array_equal(kept[name], default[name]), name


@pytest.mark.parametrize("libc", [lambda name: object(), lambda name: (_ for _ in ()).throw(OSError(name))])
def test_without_glibc_nothing_is_changed_and_the_header_says_so(monkeypatch, libc):
    """macOS's and musl's C libraries have no gnu_get_libc_version (macOS no mallopt); Windows none by that name."""
    monkeypatch.setattr(heap.ctypes, "CDLL", libc)
    assert heap.keep_for_run() == "the platform's allocator (no glibc mallopt)"
