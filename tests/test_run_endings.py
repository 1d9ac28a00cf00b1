"""Every way a run ends keeps the last good epoch: a diverging run stops with one line and saves, a second Ctrl-C
during the write waits for it, a failed periodic write is said when it happens, two runs never share a
checkpoint, what a killed writer left is cleaned up, read-only files and other people's plots need --force."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
from click.testing import CliRunner

from symbolic_lstm import load
from symbolic_lstm import train as tr
from symbolic_lstm.cli import main

SMALL = ["train", "--data", "sunspots", "--hidden", "4", "--window", "6", "--seed", "3", "-q"]
SERIES = tr.Config("lstm", "sunspots", window=6, hidden=4, epochs=6, seed=3)


def _problem():
    return tr.load_problem("sunspots", 6, 0.2)


def test_a_diverging_run_stops_with_one_line_and_keeps_the_last_finite_epoch(tmp_path):
    ck = tmp_path / "run.npz"
    args = [*SMALL, "--epochs", "20", "--optimizer", "sgd", "--lr", "1e6", "--no-clip", "--checkpoint", str(ck)]
    r = subprocess.run([sys.executable, "-m", "symbolic_lstm", *args], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "RuntimeWarning" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "is not finite at epoch" in errors[0] and ", step " in errors[0], r.stderr
    saved = tr.load_checkpoint(ck)[1]
    assert f"wrote {ck} at epoch {saved[0]}, the last whole epoch before it" in errors[0]
    assert all(np.isfinite(v).all() for v in saved[1].values())
    diverged_at = int(errors[0].split("at epoch ")[1].split(",")[0])
    assert saved[0] == diverged_at - 1


#: A ReLU RNN whose outputs overflow under a large step before its loss or gradients do.
RELU = """import sympy as sp
from symbolic_lstm import CellBuilder


def build():
    b = CellBuilder("relu_rnn", inputs=("x",), states=("a",), output="a")
    b.stage("a", sp.Rational(3, 2) * sp.Max(0, b.linear("s", [b.prev("a"), b.input("x")], weight="W", bias="b")))
    return b.build()
"""


@pytest.mark.parametrize("lr", ["0.3", "0.2"])
def test_outputs_that_overflow_end_the_run_as_any_divergence_does(tmp_path, lr):
    """Issue 37, item 7: at lr 0.3 the outputs overflow first, and the module's own input check raised a raw
    ``ValueError: a holds 256 non-finite value(s)`` with nothing written; at 0.2 the loss went first and the
    run ended well.  Both end the second way now: one line naming what, the last whole epoch written."""
    (tmp_path / "relu.py").write_text(RELU)
    ck = tmp_path / "n.npz"
    args = ["train", "--cell", "relu.py:build", "--data", "sunspots", "--optimizer", "sgd", "--lr", lr, "--no-clip"]
    args += ["--checkpoint", str(ck), "--checkpoint-every", "1", "--epochs", "20", "-q"]
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "cache")}
    r = subprocess.run(
        [sys.executable, "-m", "symbolic_lstm", *args], capture_output=True, text=True, cwd=tmp_path, env=env
    )
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    errors = [ln for ln in r.stderr.splitlines() if ln.startswith("error:")]
    assert len(errors) == 1 and "training diverged" in errors[0] and "is not finite at epoch" in errors[0], r.stderr
    saved = tr.load_checkpoint(ck)[1]
    assert f"wrote {ck} at epoch {saved[0]}" in errors[0]
    if lr == "0.3":
        assert "the cell's output a (" in errors[0], errors[0]


def test_a_second_ctrl_c_during_the_write_waits_for_it(tmp_path, monkeypatch):
    """The first Ctrl-C starts the write of the last whole epoch; a real SIGINT sent while it is being written
    (a 104 MiB file takes seconds) used to cut it short and leave no checkpoint at all."""
    ck = tmp_path / "run.npz"
    real = tr.loop.save_checkpoint
    sent = []

    def slow_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # the second Ctrl-C, mid-write
        sent.append(True)
        time.sleep(0.05)
        return real(*args, **kwargs)

    def first_ctrl_c(epoch, loss):
        if epoch == 3:
            monkeypatch.setattr(tr.loop, "save_checkpoint", slow_save)
            raise KeyboardInterrupt

    with pytest.raises(tr.TrainingInterrupted) as stop:
        tr.fit(load("lstm"), SERIES, _problem(), on_epoch=first_ctrl_c, checkpoint=ck)
    assert sent and stop.value.epoch == 3 and stop.value.error is None
    assert tr.load_checkpoint(ck)[1][0] == 3


@pytest.mark.parametrize("moment", ["__enter__", "__exit__"])
def test_a_signal_between_two_handler_installs_leaves_none_half_way(monkeypatch, moment):
    """Issue 37, item 9 (a Ctrl-C lost, the run not ending): ``signal.signal`` first runs a pending Python
    handler, which may raise — between installing the SIGINT and the SIGTERM handler, that left SIGTERM on
    the write's recording handler for good, and later signals went nowhere.  Every handler is restored now,
    and the interrupt is still raised."""
    from symbolic_lstm.train.loop import _Uninterruptible

    real = signal.signal
    outside = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    injected = []

    def pending_then_install(sig, handler):
        restoring = handler is outside.get(sig)
        if sig == signal.SIGTERM and not injected and (restoring == (moment == "__exit__")):
            injected.append(sig)
            raise KeyboardInterrupt  # the pending Ctrl-C's handler, run by signal.signal before it installs
        return real(sig, handler)

    monkeypatch.setattr(signal, "signal", pending_then_install)
    with pytest.raises(KeyboardInterrupt):
        with _Uninterruptible():
            pass
    monkeypatch.setattr(signal, "signal", real)
    assert injected
    assert {s: signal.getsignal(s) for s in outside} == outside


def test_a_ctrl_c_during_a_periodic_write_stops_after_it(tmp_path, monkeypatch):
    ck = tmp_path / "run.npz"
    real = tr.loop.save_checkpoint

    def interrupted_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)
        return real(*args, **kwargs)

    monkeypatch.setattr(tr.loop, "save_checkpoint", interrupted_save)
    with pytest.raises(tr.TrainingInterrupted) as stop:
        tr.fit(load("lstm"), SERIES, _problem(), checkpoint=ck, checkpoint_every=2)
    assert stop.value.epoch == 2 and tr.load_checkpoint(ck)[1][0] == 2


def test_a_failed_periodic_write_is_said_when_it_happens_and_training_goes_on(tmp_path, monkeypatch):
    """Rule: the run goes on (it is in memory), the next write tries again, the message says which epoch the
    file holds; the end writes the last epoch."""
    ck = tmp_path / "run.npz"
    real = tr.loop.save_checkpoint
    calls = []

    def full_once(path, config, epoch, *rest):
        calls.append(epoch)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, config, epoch, *rest)

    said: list[tuple[int, str]] = []
    losses: list[int] = []
    monkeypatch.setattr(tr.loop, "save_checkpoint", full_once)
    tr.fit(
        load("lstm"), SERIES, _problem(), checkpoint=ck, checkpoint_every=2,
        on_epoch=lambda e, _: losses.append(e), on_checkpoint_error=lambda m: said.append((len(losses), m)),
    )  # fmt: skip
    assert said == [
        (3, f"cannot write the checkpoint {ck} at epoch 4: No space left on device; the file holds epoch 2")
    ]  # said at epoch 4, before its on_epoch: when it happened
    assert calls == [2, 4, 6] and tr.load_checkpoint(ck)[1][0] == 6


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0, reason="mounting a small tmpfs needs root")
def test_a_full_disk_says_which_epoch_the_file_holds(tmp_path):
    """A real full disk: a tmpfs with room for one checkpoint, not for the second copy an atomic write needs."""
    args = [*SMALL, "--hidden", "24", "--epochs", "6", "--checkpoint-every", "2"]
    sized = tmp_path / "sized.npz"
    assert CliRunner().invoke(main, [*args, "--checkpoint", str(sized)]).exit_code == 0
    disk = tmp_path / "disk"
    disk.mkdir()
    size = sized.stat().st_size * 3 // 2
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip("this machine does not let the test mount a tmpfs (a container without CAP_SYS_ADMIN)")
    try:
        ck = disk / "run.npz"
        command = [sys.executable, "-m", "symbolic_lstm", *args, "--checkpoint", str(ck)]
        r = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
        said = f"cannot write the checkpoint {ck} at epoch 4: No space left on device; the file holds epoch 2"
        assert f"warning: {said}; training goes on" in r.stderr, r.stderr  # when it happened
        end = f"error: cannot write the checkpoint {ck} at epoch 6: No space left on device; the file holds epoch 2"
        assert end in r.stderr and "held-out RMSE" in r.stdout, r.stderr
        assert tr.load_checkpoint(ck)[1][0] == 2 and not list(disk.glob(".*.tmp"))
    finally:
        subprocess.run(["umount", str(disk)], capture_output=True)


def test_two_runs_never_write_the_same_checkpoint(tmp_path):
    ck = tmp_path / "run.npz"
    first = subprocess.Popen(
        [sys.executable, "-m", "symbolic_lstm", *SMALL, "--epochs", "100000", "--checkpoint", str(ck),
         "--checkpoint-every", "5"],
        cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        end = time.monotonic() + 120
        while not ck.exists():
            assert first.poll() is None and time.monotonic() < end, first.communicate()
            time.sleep(0.02)
        r = CliRunner().invoke(main, [*SMALL, "--epochs", "2", "--checkpoint", str(ck), "--force"])
        assert r.exit_code == 2, r.output
        assert f"is being written by another run (pid {first.pid} on" in r.output and "Traceback" not in r.output
    finally:
        first.kill()
        first.communicate()
    (tmp_path / ".run.npz.k1ll3d.tmp").write_bytes(b"half a checkpoint")  # what a SIGKILL mid-write leaves
    left = list(tmp_path.glob(".run.npz.*.tmp"))  # the SIGKILL above may itself have landed mid-write
    r = CliRunner().invoke(main, [*SMALL, "--epochs", "2", "--checkpoint", str(ck), "--force"])
    assert r.exit_code == 0, r.output  # the killed holder's lock went with it
    assert f"removed {len(left)} temporary file(s) a killed run left" in r.output
    assert not list(tmp_path.glob(".run.npz.*.tmp")) and not (tmp_path / "run.npz.lock").exists()


@pytest.mark.skipif(not hasattr(os, "geteuid"), reason="no file locks here")
def test_a_lock_unlinked_between_open_and_flock_is_not_taken(tmp_path, monkeypatch):
    """Issue 37, item 8: the lock file is unlinked while held, so a run that opened it just before could lock
    the orphan while a new run locks a fresh file — two writers.  The unlucky pause is made certain here: the
    second run's flock waits until the first run has ended and a third holds the new lock file."""
    import contextlib
    import fcntl

    from symbolic_lstm.train import checkpoints

    ck = tmp_path / "run.npz"
    first = checkpoints.checkpoint_lock(ck)
    first.__enter__()
    third = contextlib.ExitStack()
    real = fcntl.flock
    paused = []

    def unlucky(fd, op):
        if not paused:  # the second run, between its open and its flock
            paused.append(fd)
            first.__exit__(None, None, None)  # the first run ends: its lock file is unlinked
            third.enter_context(checkpoints.checkpoint_lock(ck))  # a third run takes a fresh lock file
        return real(fd, op)

    monkeypatch.setattr(fcntl, "flock", unlucky)
    with third, pytest.raises(tr.CheckpointLockedError, match="being written by another run"):
        with checkpoints.checkpoint_lock(ck):
            pass  # the second run got in beside the third
    assert paused


def test_a_lock_that_is_a_symbolic_link_is_refused_not_followed(tmp_path):
    """Found in review: the lock was opened through a link (root created or locked what it pointed to) and the
    check that the locked file is the named one then never held — a busy loop."""
    victim = tmp_path / "victim"
    ck = tmp_path / "run.npz"
    (tmp_path / "run.npz.lock").symlink_to(victim)
    with pytest.raises(tr.CheckpointLockedError, match="is a symbolic link"):
        with tr.checkpoint_lock(ck):
            pass
    assert not victim.exists()


def test_sigterm_during_a_write_ends_a_library_run_once_the_file_is_whole(tmp_path):
    """With SIGTERM's default handler (a script calling fit), a SIGTERM during a checkpoint write was dropped
    and the run went on; now it ends the process as SIGTERM does, after the write."""
    script = tmp_path / "run.py"
    script.write_text(
        "import os, signal\n"
        "from symbolic_lstm import load, train as tr\n"
        "import symbolic_lstm.train.loop as loop\n"
        "real = loop.save_checkpoint\n"
        "def save(*a, **k):\n"
        "    if a[2] == 1:\n"
        "        os.kill(os.getpid(), signal.SIGTERM)\n"
        "    return real(*a, **k)\n"
        "loop.save_checkpoint = save\n"
        "cfg = tr.Config(epochs=3, hidden=4, window=4)\n"
        "p = tr.load_problem(cfg.data, cfg.window, cfg.holdout)\n"
        f"tr.fit(load('lstm'), cfg, p, None, checkpoint={str(tmp_path / 'ck.npz')!r}, checkpoint_every=1)\n"
        "print('ran all epochs')\n"
    )
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert r.returncode == -signal.SIGTERM and "ran all epochs" not in r.stdout, (r.returncode, r.stderr)
    assert tr.load_checkpoint(tmp_path / "ck.npz")[1][0] == 1  # the file it was writing is whole


def test_a_read_only_output_needs_force(tmp_path):
    ck = tmp_path / "run.npz"
    assert CliRunner().invoke(main, [*SMALL, "--epochs", "2", "--checkpoint", str(ck)]).exit_code == 0
    ck.chmod(0o444)
    before = ck.read_bytes()
    r = CliRunner().invoke(main, [*SMALL, "--epochs", "3", "--checkpoint", str(ck)])
    assert r.exit_code == 2 and "is read-only (mode 0444); use --force" in r.output, r.output
    assert ck.read_bytes() == before
    assert CliRunner().invoke(main, [*SMALL, "--epochs", "3", "--checkpoint", str(ck), "--force"]).exit_code == 0
    assert tr.load_checkpoint(ck)[1][0] == 3


def test_a_plot_is_ours_by_its_metadata_not_by_a_mention(tmp_path):
    pytest.importorskip("matplotlib")
    history = tr.History(losses=[3.0, 2.0, 1.0], test_rmse=1.0)
    for fmt in tr.PLOT_FORMATS:
        tr.plot(history, tmp_path / f"ours.{fmt}", "a run")
        assert tr.is_our_plot(tmp_path / f"ours.{fmt}"), fmt
    mine = tmp_path / "mine.svg"
    mine.write_text(
        '<svg xmlns="http://www.w3.org/2000/svg"><text>made with: symbolic-lstm train --data tempest</text></svg>'
    )
    png = (tmp_path / "ours.png").read_bytes()
    (tmp_path / "mine.png").write_bytes(png.replace(b"Software\0symbolic-lstm train", b"Comment\0symbolic-lstm train"))
    for path in (mine, tmp_path / "mine.png"):
        assert not tr.is_our_plot(path)
        before = path.read_bytes()
        r = CliRunner().invoke(main, [*SMALL, "--epochs", "1", "--plot", str(path)])
        assert r.exit_code == 2 and "is not a plot symbolic-lstm wrote" in r.output, r.output
        assert path.read_bytes() == before
