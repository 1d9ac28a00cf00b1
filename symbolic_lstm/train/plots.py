"""The run's figure: the loss curve over whole epochs and, for a forecast, the held-out prediction against the truth;
written as PNG, PDF or SVG marked as ours, so a later run replaces its own plots and nothing else."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .loop import History

#: Written into every plot's metadata, so that a later run may overwrite it and nothing else.
PLOT_MARK = "symbolic-lstm train"
#: Formats a plot is written in (by the file's suffix), each able to carry the mark.
PLOT_FORMATS = ("png", "pdf", "svg")


def is_our_plot(path: str | Path) -> bool:
    """Whether ``path`` is a plot ``train --plot`` wrote: its metadata — not just any of its bytes — names
    PLOT_MARK as the software that made it (PNG: the ``Software`` text chunk; PDF: the ``/Creator`` entry;
    SVG: the creator in ``<metadata>``).  A user's own figure that mentions the command is not ours."""
    try:
        data = Path(path).read_bytes()
    except OSError:
        return False
    mark = PLOT_MARK.encode()
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return mark in _png_texts(data).get(b"Software", [])
    if data.startswith(b"%PDF-"):
        return re.search(rb"/Creator \(" + re.escape(mark) + rb"\)", data) is not None
    found = re.search(rb"<metadata>(.*?)</metadata>", data, re.S)
    creator = found and re.search(rb"<dc:creator>\s*<cc:Agent>\s*<dc:title>(.*?)</dc:title>", found.group(1), re.S)
    return bool(creator) and creator.group(1).strip() == mark


def _png_texts(data: bytes) -> dict[bytes, list[bytes]]:
    """The PNG's tEXt chunks, {keyword: [text, …]} (the chunk layout: length, type, data, CRC)."""
    texts: dict[bytes, list[bytes]] = {}
    at = 8
    while at + 8 <= len(data):
        length = int.from_bytes(data[at : at + 4], "big")
        kind, body = data[at + 4 : at + 8], data[at + 8 : at + 8 + length]
        if kind == b"tEXt" and b"\0" in body:
            key, _, text = body.partition(b"\0")
            texts.setdefault(key, []).append(text)
        if kind == b"IEND":
            break
        at += 12 + length
    return texts


def figure(history: History, title: str) -> object:
    """The run's figure (a matplotlib Figure): the loss curve over whole epochs, and for the sunspots the
    held-out prediction against the truth."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import MaxNLocator

    epochs = range(1, len(history.losses) + 1)
    if history.test_years is None:  # the character model: the loss curve alone
        fig, ax = plt.subplots(figsize=(6, 4))
        ax.plot(epochs, history.losses, label="training")
        ax.axhline(history.test_rmse, color="gray", linestyle="--", label="held-out (end)")
        ax.set(xlabel="epoch", ylabel="cross-entropy (nats per character)", title=title)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.legend()
        fig.tight_layout()
        return fig
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.semilogy(epochs, history.losses)
    ax1.set(xlabel="epoch", ylabel="training loss (½ squared error per window)", title="loss")
    ax1.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax2.plot(history.test_years, history.test_truth, label="truth")
    ax2.plot(history.test_years, history.test_pred, label=f"model (RMSE {history.test_rmse:.1f})")
    ax2.set(xlabel="year", ylabel="sunspot number", title=f"held-out years (naive RMSE {history.baseline_rmse:.1f})")
    ax2.legend()
    fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot(history: History, path: str | Path, title: str) -> None:
    """The run's :func:`figure` as PNG, PDF or SVG by the suffix (needs matplotlib: the ``plot`` extra), marked
    as ours in its metadata, written atomically."""
    import io

    import matplotlib.pyplot as plt

    from ..runtime.files import write_atomic

    fig = figure(history, title)
    fmt = Path(path).suffix.lower().lstrip(".")
    buf = io.BytesIO()
    fig.savefig(buf, format=fmt, dpi=100, metadata={"Software" if fmt == "png" else "Creator": PLOT_MARK})
    plt.close(fig)
    write_atomic(path, buf.getvalue())
