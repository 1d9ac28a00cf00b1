"""The shipped datasets: yearly sunspot numbers (``data/sunspots.csv``, 1700–2008) and Shakespeare's *The Tempest*
(``data/tempest.txt``), read from the package, never downloaded."""

from __future__ import annotations

import csv
from dataclasses import dataclass

import numpy as np

from ..runtime.paths import data_dir

DATASETS = ("sunspots", "tempest")
TEXTS = ("tempest",)


@dataclass(frozen=True)
class Series:
    """A yearly series: ``years`` (N,) and ``values`` (N,)."""

    name: str
    years: np.ndarray
    values: np.ndarray


def load_text(name: str = "tempest") -> str:
    """Read a shipped text (ValueError for an unknown name or a damaged file)."""
    if name not in TEXTS:
        raise ValueError(f"unknown text {name!r}; shipped: {', '.join(TEXTS)}")
    path = data_dir() / f"{name}.txt"
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None


def load_series(name: str = "sunspots") -> Series:
    """Read a shipped series (ValueError for an unknown name or a damaged file)."""
    if name not in DATASETS or name in TEXTS:
        raise ValueError(f"unknown dataset {name!r}; shipped: {', '.join(DATASETS)}")
    path = data_dir() / f"{name}.csv"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            rows = list(csv.DictReader(f))
        years = np.array([int(float(r["YEAR"])) for r in rows])
        values = np.array([float(r["SUNACTIVITY"]) for r in rows])
    except (OSError, KeyError, ValueError) as e:
        raise ValueError(f"cannot read {path}: {e}") from None
    return Series(name, years, values)
