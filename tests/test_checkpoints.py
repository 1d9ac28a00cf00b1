"""Checkpoints that survive a kill: --checkpoint-every writes atomically as training goes, Ctrl-C writes the last
whole epoch, and a run SIGKILLed mid-training and resumed ends with the uninterrupted run's parameters."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from symbolic_lstm import train as tr
from symbolic_lstm.cli import main

SMALL = ["train", "--data", "sunspots", "--hidden", "4", "--window", "6", "--seed", "3", "-q"]


def start(args: list[str], tmp_path: Path) -> subprocess.Popen:
    """The CLI in a process group of its own (as a terminal's foreground job is), SIGINT not ignored."""
    return subprocess.Popen(
        [sys.executable, "-m", "symbolic_lstm", *args],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def wait_for_epoch(ck: Path, epoch: int, proc: subprocess.Popen, limit: float = 120) -> int:
    """Poll the checkpoint until it holds at least ``epoch`` whole epochs (it is written atomically)."""
    end = time.monotonic() + limit
    while time.monotonic() < end:
        assert proc.poll() is None, proc.communicate()
        if ck.exists():
            done = tr.load_checkpoint(ck)[1][0]
            if done >= epoch:
                return done
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint at epoch {epoch} within {limit} s")


def same(a: Path, b: Path) -> None:
    _, (e1, p1, h1, s1, r1) = tr.load_checkpoint(a)
    _, (e2, p2, h2, s2, r2) = tr.load_checkpoint(b)
    assert e1 == e2 and r1 == r2
    for x, y in ((p1, p2), (h1, h2), (s1, s2)):
        assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


def test_sigkilled_run_resumed_ends_as_the_uninterrupted_run(tmp_path):
    ck = tmp_path / "run.npz"
    proc = start([*SMALL, "--epochs", "1000000", "--checkpoint", str(ck), "--checkpoint-every", "1"], tmp_path)
    try:
        wait_for_epoch(ck, 3, proc)
    finally:
        proc.kill()  # SIGKILL: no handler runs, nothing is written after this
        proc.communicate()
    done = tr.load_checkpoint(ck)[1][0]  # the last write was whole (atomic rename)
    assert 3 <= done < 1000000
    runner = CliRunner()
    r = runner.invoke(main, ["train", "-q", "--resume", str(ck), "--epochs", str(done + 3), "--checkpoint", str(ck)])
    assert r.exit_code == 0, r.output
    whole = tmp_path / "whole.npz"
    r = runner.invoke(main, [*SMALL, "--epochs", str(done + 3), "--checkpoint", str(whole)])
    assert r.exit_code == 0, r.output
    same(ck, whole)


def test_checkpoint_every_writes_as_training_goes(tmp_path):
    ck = tmp_path / "run.npz"
    seen = []
    real = tr.save_checkpoint

    def spy(path, config, epoch, *rest):
        seen.append(epoch)
        return real(path, config, epoch, *rest)

    config = tr.Config("lstm", "sunspots", window=6, hidden=4, epochs=7, seed=3)
    problem = tr.Problem(tr.load_series("sunspots"), 6, 0.2)
    from symbolic_lstm import load

    with pytest.MonkeyPatch.context() as m:
        m.setattr(tr.loop, "save_checkpoint", spy)
        tr.train(load("lstm"), config, problem, checkpoint=ck, checkpoint_every=3)
    assert seen == [3, 6, 7]  # every 3 epochs, and the end
    with pytest.raises(ValueError, match="at least 1 epoch"):
        tr.train(load("lstm"), config, problem, checkpoint=ck, checkpoint_every=0)


@pytest.mark.parametrize("how", ["SIGINT", "SIGTERM"])
def test_ctrl_c_writes_the_last_whole_epoch_and_says_how_to_continue(tmp_path, how):
    ck = tmp_path / "run.npz"
    proc = start([*SMALL, "--epochs", "1000000", "--checkpoint", str(ck), "--checkpoint-every", "50"], tmp_path)
    try:
        wait_for_epoch(ck, 50, proc)
        if how == "SIGINT":
            os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole foreground group
        else:
            proc.terminate()
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 128 + getattr(signal, how), err
    assert "Traceback" not in err
    done = tr.load_checkpoint(ck)[1][0]
    assert f"interrupted: wrote {ck} at epoch {done}; continue with" in err
    assert f"--resume {ck} --epochs 1000000" in err
    assert done >= 50  # not only the periodic one: the last whole epoch


def _signals_during_evaluation(monkeypatch, *signals):
    """The held-out evaluation, after the last epoch was saved, receives ``signals`` (as a batch system's
    SIGTERM or a user's Ctrl-C would arrive there)."""
    real = tr.loop._held_out

    def evaluate(*args):
        for sig in signals:
            os.kill(os.getpid(), sig)
        time.sleep(5)  # the handler runs here
        return real(*args)

    monkeypatch.setattr(tr.loop, "_held_out", evaluate)


@pytest.mark.parametrize(
    "signals, code",
    [((signal.SIGTERM,), 143), ((signal.SIGINT,), 130), ((signal.SIGINT, signal.SIGTERM), 130)],
    ids=["SIGTERM", "SIGINT", "SIGINT-then-SIGTERM"],
)
def test_a_signal_after_the_last_epoch_says_the_run_is_whole_and_exits_by_the_first(
    tmp_path, monkeypatch, signals, code
):
    """Issue 37, item 10: SIGTERM during the held-out evaluation printed "Aborted!" and exited 1; Ctrl-C then
    SIGTERM exited 143.  The first signal decides (130 / 143), the checkpoint already holds every epoch."""
    ck = tmp_path / "run.npz"
    _signals_during_evaluation(monkeypatch, *signals)
    r = CliRunner().invoke(main, [*SMALL, "--epochs", "3", "--checkpoint", str(ck)])
    assert r.exit_code == code, r.output
    assert "Aborted" not in r.output and "Traceback" not in r.output
    assert f"interrupted after the last epoch (3), before the report; {ck} holds the whole run" in r.output
    assert tr.load_checkpoint(ck)[1][0] == 3


def test_damaged_checkpoints_are_named_not_a_traceback(tmp_path):
    ck = tmp_path / "run.npz"
    assert CliRunner().invoke(main, [*SMALL, "--epochs", "2", "--checkpoint", str(ck)]).exit_code == 0
    data = ck.read_bytes()
    for name, content in {
        "truncated.npz": data[: len(data) // 2],
        "cut-at-the-end.npz": data[:-10],
        "empty.npz": b"",
        "foreign.npz": None,
    }.items():
        bad = tmp_path / name
        if content is None:
            np.savez(bad, weights=np.zeros(3))
        else:
            bad.write_bytes(content)
        r = CliRunner().invoke(main, ["train", "--resume", str(bad), "--epochs", "4"])
        assert r.exit_code == 2, (name, r.output)
        assert "Traceback" not in r.output and "not a symbolic-lstm checkpoint" in r.output, r.output


def test_ctrl_c_during_a_proof_stops_every_process_quietly(tmp_path):
    """prove's local worker processes leave Ctrl-C to the parent: one line, exit 130, no tracebacks."""
    proc = start(["prove", "--cell", "peephole", "--unrolled", "--exact", "-j", "2"], tmp_path)
    try:
        time.sleep(4)  # past start-up, into the differentiations (the whole proof takes minutes)
        assert proc.poll() is None
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "Traceback" not in err and "interrupted: the proof is incomplete" in err
