"""train keeps its word: every output path is checked before training, no file symbolic-lstm did not write is
overwritten without --force, a resumed run is the uninterrupted run bit for bit, and a write that fails at the
end costs one line, not the run."""

from __future__ import annotations

import errno
import os

import numpy as np
import pytest
from click.testing import CliRunner

from symbolic_lstm import train as tr
from symbolic_lstm.cli import main

QUICK = ["train", "--data", "sunspots", "--hidden", "4", "-q"]


def _has_matplotlib() -> bool:
    import importlib.util

    return importlib.util.find_spec("matplotlib") is not None


def run(*args):
    return CliRunner().invoke(main, [*QUICK, *args])


def test_output_paths_are_checked_before_training(tmp_path):
    options = (("--checkpoint", "nodir/run.npz"),) + ((("--plot", "nodir/loss.png"),) if _has_matplotlib() else ())
    for option, name in options:
        r = run("--epochs", "2", option, str(tmp_path / name))
        assert r.exit_code == 2 and "does not exist" in r.output and "training loss" not in r.output, r.output
    r = run("--epochs", "2", "--plot", str(tmp_path / "plot.txt"))  # the format is checked with or without matplotlib
    assert r.exit_code == 2 and "png, pdf, svg" in r.output and "Traceback" not in r.output
    r = run("--epochs", "2", "--checkpoint", "")
    assert r.exit_code == 2 and "empty" in r.output
    r = run("--epochs", "2", "--checkpoint", str(tmp_path))
    assert r.exit_code == 2 and "is a folder" in r.output


@pytest.mark.parametrize("spelling", ["same", "dot-dot", "symlink", "hard link"])
def test_outputs_naming_one_file_are_refused_before_any_work(tmp_path, spelling):
    """Issue 37, item 4: --checkpoint same.png --plot same.png said "wrote same.png" twice; the checkpoint was
    gone.  Any spelling of one file is refused, before training, naming both options."""
    (tmp_path / "sub").mkdir()
    ck = tmp_path / "run.png"
    plot = {
        "same": ck,
        "dot-dot": tmp_path / "sub" / ".." / "run.png",
        "symlink": tmp_path / "link.png",
        "hard link": tmp_path / "hard.png",
    }[spelling]
    if spelling in ("symlink", "hard link"):
        ck.write_bytes(b"")
        os.symlink(ck, plot) if spelling == "symlink" else os.link(ck, plot)
    r = run("--epochs", "2", "--checkpoint", str(ck), "--plot", str(plot), "--force")
    assert r.exit_code == 2 and "--plot" in r.output and "is the file --checkpoint names" in r.output, r.output
    assert "training loss" not in r.output


def test_a_plot_over_the_checkpoint_being_resumed_is_refused(tmp_path):
    ck = tmp_path / "run.npz"
    assert run("--epochs", "2", "--checkpoint", str(ck)).exit_code == 0
    r = CliRunner().invoke(main, ["train", "--resume", str(ck), "--epochs", "3", "--plot", str(ck), "--force"])
    assert r.exit_code == 2 and "is the file --resume names" in r.output, r.output
    assert tr.load_checkpoint(ck)[1][0] == 2  # untouched


@pytest.mark.parametrize(
    "option, value", [("--clip", "inf"), ("--clip", "nan"), ("--lr", "nan"), ("--lr", "inf"), ("--seed", "-1")]
)
def test_a_setting_no_checkpoint_could_keep_is_refused_up_front(tmp_path, option, value):
    """Issue 37, item 5: --clip inf ran and wrote a checkpoint --resume called damaged; NaN got through
    click's FloatRange; --seed -1 was a raw ValueError from NumPy.  Every accepted setting round-trips."""
    ck = tmp_path / "run.npz"
    r = run("--epochs", "1", option, value, "--checkpoint", str(ck))
    assert r.exit_code == 2 and option in r.output and "Traceback" not in r.output, r.output
    assert not ck.exists()


@pytest.mark.parametrize("setting", [("--clip", "1e300"), ("--lr", "1e-300"), ("--seed", str(2**70)), ("--no-clip",)])
def test_every_accepted_setting_round_trips_through_the_checkpoint(tmp_path, setting):
    ck = tmp_path / "run.npz"
    r = run("--epochs", "1", *setting, "--checkpoint", str(ck))
    assert r.exit_code == 0, r.output
    config, _ = tr.load_checkpoint(ck)  # a damaged checkpoint would raise here
    r = CliRunner().invoke(main, ["train", "--resume", str(ck), "--epochs", "2", "-q"])
    assert r.exit_code == 0, r.output
    if setting[0] != "--no-clip":
        key = setting[0].lstrip("-")
        assert getattr(config, key) == type(getattr(config, key))(setting[1])


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_folder_is_a_usage_error(tmp_path):
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    r = run("--epochs", "2", "--checkpoint", str(ro / "run.npz"))
    assert r.exit_code == 2 and "not writable" in r.output


def test_files_we_did_not_write_are_not_overwritten(tmp_path):
    pytest.importorskip("matplotlib")
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    r = run("--epochs", "2", "--checkpoint", str(notes))
    assert r.exit_code == 2 and "--force" in r.output and notes.read_text() == "my notes"
    photo = tmp_path / "photo.png"
    photo.write_bytes(b"\x89PNG someone else's picture")
    r = run("--epochs", "2", "--plot", str(photo))
    assert r.exit_code == 2 and "--force" in r.output
    ck, plot = tmp_path / "run.npz", tmp_path / "loss.png"
    r = run("--epochs", "2", "--checkpoint", str(ck), "--plot", str(plot))
    assert r.exit_code == 0, r.output
    before = ck.read_bytes()
    # another run's checkpoint is refused (it holds that run's state), naming it and the way to continue it
    r = run("--epochs", "3", "--data", "tempest", "--checkpoint", str(ck))
    assert r.exit_code == 2 and "holds another run's checkpoint (cell lstm on sunspots, epoch 2)" in r.output
    assert f"--resume {ck}" in r.output and "--force" in r.output and ck.read_bytes() == before
    r = run("--resume", str(ck), "--epochs", "3", "--checkpoint", str(ck))  # the run it holds continues it
    assert r.exit_code == 0, r.output
    assert "training loss: " in r.output and "(epoch 3)" in r.output and "→" not in r.output  # one epoch: one number
    r = run("--epochs", "2", "--checkpoint", str(ck), "--plot", str(plot), "--force")  # our plot: overwritten
    assert r.exit_code == 0, r.output
    assert tr.is_checkpoint(ck) and tr.is_our_plot(plot)
    r = run("--epochs", "2", "--checkpoint", str(notes), "--force")
    assert r.exit_code == 0 and tr.is_checkpoint(notes)


@pytest.mark.parametrize("data", ["sunspots", "tempest"])
def test_resumed_run_equals_uninterrupted_run_bit_for_bit(tmp_path, data):
    small = ["train", "--data", data, "--hidden", "4", "-q", "--seed", "3"]
    if data == "tempest":
        small += ["--window", "8", "--batch", "4", "--sample-every", "100"]
    runner = CliRunner()
    whole, half = tmp_path / "whole.npz", tmp_path / "half.npz"
    assert runner.invoke(main, [*small, "--epochs", "4", "--checkpoint", str(whole)]).exit_code == 0
    assert runner.invoke(main, [*small, "--epochs", "2", "--checkpoint", str(half)]).exit_code == 0
    r = runner.invoke(main, ["train", "-q", "--resume", str(half), "--epochs", "4", "--checkpoint", str(half)])
    assert r.exit_code == 0, r.output
    _, (e1, p1, h1, s1, _) = tr.load_checkpoint(whole)
    _, (e2, p2, h2, s2, _) = tr.load_checkpoint(half)
    assert e1 == e2 == 4
    for a, b in ((p1, p2), (h1, h2), (s1, s2)):
        assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_resume_keeps_its_settings_and_names_a_conflict(tmp_path):
    ck = tmp_path / "run.npz"
    assert run("--epochs", "2", "--checkpoint", str(ck)).exit_code == 0
    r = CliRunner().invoke(main, ["train", "-q", "--resume", str(ck), "--epochs", "3", "--hidden", "32"])
    assert r.exit_code == 2 and "--hidden 32 conflicts with" in r.output and "hidden = 4" in r.output
    r = CliRunner().invoke(main, ["train", "-q", "--resume", str(ck), "--epochs", "3", "--hidden", "4"])
    assert r.exit_code == 0 and "n_a = 4" in r.output  # agreeing with the checkpoint is fine


def test_resume_from_something_else_says_what_it_is(tmp_path):
    script = tmp_path / "some.py"
    script.write_text("print('hello')\n")
    r = CliRunner().invoke(main, ["train", "--resume", str(script), "--epochs", "3"])
    assert r.exit_code == 2 and "not a symbolic-lstm checkpoint" in r.output
    assert "allow_pickle" not in r.output and "Traceback" not in r.output
    arrays = tmp_path / "arrays.npz"
    np.savez(arrays, w=np.zeros(3))
    r = CliRunner().invoke(main, ["train", "--resume", str(arrays), "--epochs", "3"])
    assert r.exit_code == 2 and "an .npz archive but not a symbolic-lstm checkpoint" in r.output


def test_a_write_failing_at_the_end_costs_one_line_not_the_run(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tr.loop, "save_checkpoint", full)
    plot = tmp_path / "loss.png"
    r = run("--epochs", "2", "--checkpoint", str(tmp_path / "run.npz"), "--plot", str(plot))
    assert r.exit_code == 1
    assert "held-out RMSE" in r.output  # the run's result is kept …
    assert plot.exists()  # … and so is what could be written
    errors = [ln for ln in r.output.splitlines() if ln.startswith("error:")]
    assert errors == [
        f"error: cannot write the checkpoint {tmp_path / 'run.npz'} at epoch 2: No space left on device; no checkpoint "
        "of this run is on disk"
    ]
    assert "Traceback" not in r.output


def test_output_that_is_not_a_terminal_has_no_progress_line():
    r = CliRunner().invoke(main, ["train", "--data", "sunspots", "--hidden", "4", "--epochs", "2"])
    assert r.exit_code == 0
    assert not any(ln.strip().startswith("training") and "loss:" not in ln for ln in r.output.splitlines())


def test_the_loss_plot_counts_whole_epochs():
    pytest.importorskip("matplotlib")
    history = tr.History(losses=[3.0, 2.0, 1.5], test_rmse=1.7, baseline_rmse=4.2)
    fig = tr.figure(history, "three epochs")
    ticks = [t for t in fig.axes[0].get_xticks() if 1 <= t <= 3]
    assert ticks and all(float(t).is_integer() for t in ticks)
