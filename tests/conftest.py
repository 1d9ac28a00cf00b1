"""Shared fixtures: the article's cell, its derivation, the committed kernels, and a name lookup for atoms."""

from __future__ import annotations

import numpy as np
import pytest
import sympy as sp

from symbolic_lstm import derive, get_cell, load
from symbolic_lstm.engine.notation import Partial


@pytest.fixture(scope="session")
def lstm():
    return get_cell("lstm")


@pytest.fixture(scope="session")
def lstm_derivation(lstm):
    return derive(lstm)


@pytest.fixture(scope="session")
def k():
    """The committed generated module, as users load it."""
    return load("lstm")


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


def by_name(expr: sp.Expr) -> dict[str, sp.Expr]:
    """Every symbol and unevaluated partial of ``expr``, keyed by its printed name (``Gamma_f<t>`` …)."""
    out: dict[str, sp.Expr] = {}
    for e in sp.preorder_traversal(expr):
        if isinstance(e, (sp.Symbol, Partial)):
            out[str(e)] = e
    return out


def same(a: sp.Expr, b: sp.Expr) -> bool:
    """a and b are the same function (their difference expands to 0)."""
    return sp.expand(a - b) == 0


@pytest.fixture(scope="session", autouse=True)
def _private_proof_cache(tmp_path_factory):
    """No test reads or writes the user's cache of proved rules (``prove``'s every-n obligations): one folder of
    its own for the session, subprocesses included."""
    import os

    from symbolic_lstm.proof.cache import FOLDER_VARIABLE

    os.environ[FOLDER_VARIABLE] = str(tmp_path_factory.mktemp("proof-cache"))
