"""BLAS threads chosen for the work (symbolic_lstm.runtime.threads): one thread for small products, the library's
default for large ones, the user's setting first; train, check and the torch bridge run under it."""

from __future__ import annotations

import importlib.util

import pytest
from click.testing import CliRunner

from symbolic_lstm.cli import main
from symbolic_lstm.runtime import threads
from symbolic_lstm.runtime.threads import SMALL, blas_threads, threads_for

HAVE = importlib.util.find_spec("threadpoolctl") is not None


@pytest.fixture(autouse=True)
def _no_user_setting(monkeypatch):
    for name in (threads.OURS, *threads.THEIRS):
        monkeypatch.delenv(name, raising=False)


def test_small_work_gets_one_thread_and_large_work_the_default():
    assert threads_for(16, 64, 64) == 1  # 16·64·4·128 = 0.5 M multiply-adds a step
    assert threads_for(1, 128, 128) == 1  # batch-1 latency
    assert threads_for(128, 512, 512) is None  # 134 M: every core
    assert threads_for(SMALL, 1, 1, gates=1) is None and threads_for(SMALL // 2 - 1, 1, 1, gates=1) == 1


def test_the_users_setting_comes_first(monkeypatch):
    monkeypatch.setenv("OPENBLAS_NUM_THREADS", "2")
    assert threads_for(1, 8, 8) is None  # the library reads its own variable: left alone
    monkeypatch.setenv("SYMBOLIC_LSTM_THREADS", "3")
    assert threads_for(1, 8, 8) == 3 and threads_for(512, 512, 512) == 3
    for bad in ("0", "4097", "99999999999999999999", "٣", "-1"):  # a huge count overflowed the C int (issue 37)
        monkeypatch.setenv("SYMBOLIC_LSTM_THREADS", bad)
        with pytest.raises(ValueError, match="SYMBOLIC_LSTM_THREADS must be a whole number from 1 to 4096"):
            threads_for(1, 8, 8)


@pytest.mark.parametrize("command", [["train", "--epochs", "1"], ["derive"]])
@pytest.mark.parametrize("value", ["many", "99999999999999999999"])
def test_a_bad_setting_is_a_usage_error_before_any_work(monkeypatch, command, value):
    """Said by every command, including those that never call BLAS (an absurd count was accepted there)."""
    monkeypatch.setenv("SYMBOLIC_LSTM_THREADS", value)
    r = CliRunner().invoke(main, command)
    assert r.exit_code == 2 and "SYMBOLIC_LSTM_THREADS must be a whole number from 1 to 4096" in r.output
    assert "Traceback" not in r.output and "training loss" not in r.output


@pytest.mark.skipif(not HAVE, reason="threadpoolctl not installed (pip install '.[threads]')")
def test_the_limit_holds_inside_and_is_lifted_after():
    from threadpoolctl import threadpool_info

    def blas() -> set[int]:
        return {i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"}

    before = blas()
    with blas_threads(4, 8, 8) as limit:
        assert limit == 1 and blas() == {1}
    assert blas() == before
    with blas_threads(512, 512, 512) as limit:
        assert limit is None and blas() == before


@pytest.mark.skipif(not HAVE, reason="threadpoolctl not installed (pip install '.[threads]')")
def test_training_runs_its_small_products_on_one_thread(monkeypatch):
    """The sunspots run (batch 32, n_a 16): every step under one BLAS thread, and the loss is the same as with
    the limit set by hand (one thread either way: bit for bit)."""
    from threadpoolctl import threadpool_info

    from symbolic_lstm import load
    from symbolic_lstm import train as tr

    seen: set[int] = set()
    k = load("lstm")
    real = k.backward

    def spy(*args, **kwargs):
        seen.update(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
        return real(*args, **kwargs)

    monkeypatch.setattr(k, "backward", spy)
    config = tr.new_config("lstm", "sunspots", hidden=16, epochs=2)
    problem = tr.load_problem("sunspots", config.window, config.holdout)
    history, *_ = tr.fit(k, config, problem)
    assert seen == {1}
    monkeypatch.setenv("SYMBOLIC_LSTM_THREADS", "1")
    again, *_ = tr.fit(k, config, problem)
    assert again.losses == history.losses


@pytest.mark.skipif(not HAVE, reason="threadpoolctl not installed (pip install '.[threads]')")
def test_the_libraries_are_looked_up_once_not_per_call(monkeypatch):
    """A fresh threadpool_limits walks every loaded library (~0.4 ms, more than a small step's backward): the
    torch bridge enters the limit twice a call, so the lookup happens once per process."""
    import threadpoolctl

    built = []
    real = threadpoolctl.ThreadpoolController.__init__

    def counted(self, *args, **kwargs):
        built.append(1)
        real(self, *args, **kwargs)

    monkeypatch.setattr(threadpoolctl.ThreadpoolController, "__init__", counted)
    threads._controller.cache_clear()
    try:
        for _ in range(3):
            with blas_threads(4, 8, 8) as limit:
                assert limit == 1
        assert built == [1]
        libraries = threads.blas_kernels()  # what bench/peers.py prints: the kernels NumPy's BLAS chose
        expected = {i["filepath"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"}
        assert {b["filepath"] for b in libraries} == expected  # the BLAS libraries threadpoolctl sees, none else
        assert all({"internal_api", "version", "num_threads"} <= set(b) for b in libraries)
    finally:
        threads._controller.cache_clear()
