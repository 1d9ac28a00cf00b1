"""``symbolic-lstm train``: a tiny run on the shipped sunspots, checkpoints and resume, the optimisers."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
from click.testing import CliRunner

from symbolic_lstm import load
from symbolic_lstm import train as tr
from symbolic_lstm.cli import main


def test_shipped_series_is_real_and_whole():
    s = tr.load_series("sunspots")
    assert s.years[0] == 1700 and s.years[-1] == 2008 and len(s.values) == 309
    assert s.values.min() >= 0 and s.values.max() > 150  # yearly means peak near 190 (1957)
    with pytest.raises(ValueError, match="unknown dataset"):
        tr.load_series("tides")


def test_windows_are_chronological_and_unleaky():
    p = tr.Problem(tr.load_series(), window=5, holdout=0.2)
    assert p.x.shape == (5, 304, 1) and p.y.shape == (304, 1)
    np.testing.assert_allclose(p.x[:, 10, 0] * p.scale, tr.load_series().values[10:15])
    np.testing.assert_allclose(p.y[10, 0] * p.scale, tr.load_series().values[15])
    assert p.n_train + p.n_test == 304 and p.target_years[p.n_train] > p.target_years[p.n_train - 1]


def test_sgd_is_the_articles_rule_and_clipping_bounds_the_norm():
    W = {"W": np.array([1.0, 2.0])}
    tr.Optimizer("sgd", 0.1, None).step(W, {"W": np.array([3.0, 4.0])})
    np.testing.assert_allclose(W["W"], [0.7, 1.6])
    W = {"W": np.zeros(2)}
    norm = tr.Optimizer("sgd", 1.0, 1.0).step(W, {"W": np.array([3.0, 4.0])})
    assert norm == 5.0 and np.linalg.norm(W["W"]) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="optimizer"):
        tr.Optimizer("lbfgs", 0.1, None)


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_tiny_run_lowers_the_loss(cell):
    k = load(cell)
    config = tr.Config(cell=cell, hidden=6, epochs=25, window=8)
    problem = tr.Problem(tr.load_series(), config.window, config.holdout)
    history, _, _ = tr.train(k, config, problem)
    assert len(history.losses) == 25
    assert history.losses[-1] < 0.5 * history.losses[0]
    assert np.isfinite(history.test_rmse) and history.baseline_rmse > 0


def test_cli_train_checkpoint_and_resume(tmp_path):
    run = CliRunner().invoke
    ck = tmp_path / "run.npz"
    r = run(main, ["train", "--data", "sunspots", "--hidden", "4", "--epochs", "6", "-q", "--checkpoint", str(ck)])
    assert r.exit_code == 0, r.output
    assert "held-out RMSE" in r.output and "next year = this year" in r.output
    config, (epoch, _params, head, state, rng) = tr.load_checkpoint(ck)
    assert epoch == 6 and config.hidden == 4 and set(head) == {"W_y", "b_y"} and int(state["t"]) > 0
    assert rng["bit_generator"] == "PCG64"  # the batch generator's state: resuming draws the same batches
    r = run(main, ["train", "--data", "sunspots", "--resume", str(ck), "--epochs", "9", "-q", "--checkpoint", str(ck)])
    assert r.exit_code == 0, r.output
    assert "epochs 7–9" in r.output
    assert tr.load_checkpoint(ck)[1][0] == 9
    r = run(main, ["train", "--data", "sunspots", "--resume", str(ck), "--epochs", "9"])
    assert r.exit_code == 2 and "is at epoch 9; give the epoch to continue to with --epochs" in r.output
    r = run(main, ["train", "--data", "sunspots", "--cell", "gru", "--resume", str(ck), "--epochs", "12"])
    assert r.exit_code == 2 and "--cell gru conflicts with" in r.output and "cell = 'lstm'" in r.output
    r = run(main, ["train", "--resume", str(ck), "--epochs", "12", "-q"])  # the checkpoint's data and cell
    assert r.exit_code == 0 and "lstm on sunspots" in r.output, r.output
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a checkpoint")
    r = run(main, ["train", "--resume", str(bad)])
    assert r.exit_code == 2 and "not a symbolic-lstm checkpoint" in r.output
    for args in (["--epochs", "0"], ["--lr", "0"], ["--window", "0"], ["--data", "tides"]):
        assert run(main, ["train", *args]).exit_code == 2, args


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is not None, reason="matplotlib is installed")
def test_plot_without_matplotlib_is_a_usage_error(tmp_path):
    r = CliRunner().invoke(main, ["train", "--epochs", "1", "--plot", str(tmp_path / "loss.png")])
    assert r.exit_code == 2 and "matplotlib" in r.output


@pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None, reason="matplotlib not installed")
def test_plot_writes_a_png(tmp_path):
    out = tmp_path / "loss.png"
    r = CliRunner().invoke(
        main, ["train", "--data", "sunspots", "--epochs", "3", "--hidden", "4", "-q", "--plot", str(out)]
    )
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_shipped_text_is_the_tempest():
    text = tr.load_text("tempest")
    assert text.startswith("THE TEMPEST\n\nby William Shakespeare") and len(text) == 98439
    p = tr.TextProblem(text, window=16, holdout=0.1)
    x, labels = p.batch(np.random.default_rng(0), 3)
    assert x.shape == (16, 3, p.vocab) and labels.shape == (16, 3)
    np.testing.assert_array_equal(x[1:].argmax(-1), labels[:-1])  # each label is the next input


def test_character_model_learns_and_samples():
    k = load("lstm")
    p = tr.TextProblem(tr.load_text(), window=32, holdout=0.1)
    config = tr.Config(cell="lstm", data="tempest", window=32, hidden=32, epochs=8, batch=16, holdout=0.1)
    seen = []
    history, params, head = tr.train_text(k, config, p, on_sample=lambda e, s: seen.append(s), sample_every=4,
                                          steps_per_epoch=10)  # fmt: skip
    assert history.losses[-1] < history.losses[0] - 0.5  # from ~ln 70 = 4.2 nats, measurably down
    assert history.test_rmse < history.baseline_rmse
    assert len(seen) == 2 and all(s.startswith("PROSPERO:") and len(s) == len("PROSPERO:\n") + 200 for s in seen)
    assert set(tr.sample(k, p, params, head, np.random.default_rng(1), length=50)) <= set(p.chars)


def test_cli_character_model_tiny(tmp_path):
    r = CliRunner().invoke(
        main, ["train", "--hidden", "16", "--window", "16", "--epochs", "2", "--sample-every", "1", "-q"]
    )
    assert r.exit_code == 0, r.output
    assert "sample after epoch 2" in r.output and "nats/char" in r.output


def test_every_shipped_data_file_is_packaged():
    """An installed package must carry data/ whole (a .txt once was left out of the wheel)."""
    import configparser
    import fnmatch
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent
    cfg = configparser.ConfigParser()
    cfg.read(root / "setup.cfg")
    patterns = [p.strip() for p in cfg["options.package_data"]["symbolic_lstm.data"].split(",")]
    for f in (root / "data").iterdir():
        assert any(fnmatch.fnmatch(f.name, pat) for pat in patterns), f"data/{f.name} is not in package_data"
