"""The outputs and durations the README and the docs pages show, from running them: refresh them, or check them.

    python scripts/readme_outputs.py --update              # rerun every shown output and time every duration
    python scripts/readme_outputs.py --update --no-times   # outputs only (the durations take ~15 minutes)
    python scripts/readme_outputs.py --check               # exit 1, with a diff, if a shown output is stale

An output block is a ```text fence right after ``<!-- output: CMD -->``: it shows ``$ CMD`` and what CMD prints
(standard output and error, as a terminal shows them), or, for ``<!-- output: python -->``, what the
```python block just above it prints.  A duration is the text between ``<!-- time: CMD -->`` and
``<!-- /time -->``; ``--update`` times CMD on this machine and writes it rounded ("50 s", "3.5 min").  The
test suite (``tests/test_readme_outputs.py``) checks every output; durations are approximate by nature and
are refreshed, not checked.

A shown output *matches* what runs now when it has the same structure — the same lines, the same words,
names, shapes, verdicts (✓, ✗, FAILED) and integers — and its other numbers agree within stated tolerances,
because the last digits of floating-point results differ between machines (OpenBLAS picks its kernels per
CPU, and thread counts change the order of sums):

* an error magnitude written with an exponent (``3.031e-10``): both at most ``ROUND_OFF`` (1e-9: round-off,
  far below check's 1e-7 bar), or else within a relative ``RTOL`` of each other;
* any other decimal (a loss, an RMSE, a timing-free result): within a relative ``RTOL`` (10 %);
* the text ``train`` samples from its model (after ``--- sample after epoch N (loss L) ---``) is not
  compared at all: which characters a model trained for minutes draws varies with the last digits of its
  weights.  The README says so where it shows a sample.

``--update`` rewrites only the blocks that no longer match, so a refresh on another machine changes nothing
that merely differs in round-off.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import shlex
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"


def pages() -> list[Path]:
    """The Markdown pages whose outputs are checked: the README and every page of docs/ (not its build)."""
    docs = ROOT / "docs"
    return [README, *sorted(p for p in docs.rglob("*.md") if "_build" not in p.parts and p.name != "README.md")]


OUTPUT = re.compile(r"<!-- output: (?P<cmd>[^>]+?) -->\n```text\n(?P<body>.*?)```\n", re.S)
TIME = re.compile(r"<!-- time: (?P<cmd>[^>]+?) -->(?P<value>[^<]*)<!-- /time -->")
PYTHON = re.compile(r"```python\n(?P<code>.*?)```\n", re.S)


@dataclass(frozen=True)
class Block:
    """One output block: its command, what the page shows, and where (character offsets of the body)."""

    cmd: str
    shown: str
    start: int
    end: int
    code: str | None = None  # for ``python``: the code block above the marker
    page: str = "README.md"

    @property
    def name(self) -> str:
        where = f"{self.page}: "
        return where + (self.cmd if self.code is None else f"python block before offset {self.start}")


def blocks(text: str, page: str = "README.md") -> list[Block]:
    """Every output block of a page's text."""
    out = []
    for m in OUTPUT.finditer(text):
        code = None
        if m["cmd"] == "python":
            before = list(PYTHON.finditer(text, 0, m.start()))
            if not before:
                raise ValueError(f"<!-- output: python --> at offset {m.start()} has no ```python block above it")
            code = before[-1]["code"]
        out.append(Block(m["cmd"], m["body"], m.start("body"), m.end("body"), code, page))
    return out


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTEST", "COV_"))}
    env["COLUMNS"] = "120"  # click wraps help text to the terminal; the README shows a fixed width
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def produce(block: Block) -> str:
    """What the README should show for ``block``, produced now."""
    with tempfile.TemporaryDirectory(prefix="symbolic-lstm-readme-") as tmp:
        if block.code is not None:
            argv = [sys.executable, "-c", block.code]
        else:
            words = shlex.split(block.cmd)
            if words[0] != "symbolic-lstm":
                raise ValueError(f"an output block runs symbolic-lstm or python, got {block.cmd!r}")
            argv = [sys.executable, "-m", "symbolic_lstm", *words[1:]]
        done = subprocess.run(
            argv, cwd=tmp, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, check=False
        )
    printed = done.stdout if done.stdout.endswith("\n") or not done.stdout else done.stdout + "\n"
    return printed if block.code is not None else f"$ {block.cmd}\n{printed}"


def duration(cmd: str) -> str:
    """Wall time of ``cmd`` on this machine, rounded as the README states durations."""
    t0 = time.perf_counter()
    done = subprocess.run(cmd, shell=True, cwd=ROOT, env=_env(), capture_output=True, text=True, check=False)
    s = time.perf_counter() - t0
    if done.returncode != 0:  # a failure's duration is no duration of the command
        raise SystemExit(
            f"{cmd!r} failed (exit {done.returncode}); not timed:\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        )
    if s < 10:
        return f"{s:.0f} s" if s >= 1.5 else "1 s"
    if s < 90:
        return f"{5 * round(s / 5):.0f} s"
    return f"{s / 60:.1f} min"


#: Error magnitudes at most this are round-off-sized: any two of them match.
ROUND_OFF = 1e-9
#: Relative tolerance for every other non-integer number.
RTOL = 0.1
NUMBER = re.compile(r"[-+]?(?:\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?")
SAMPLE = re.compile(r"^--- sample after epoch \d+ \(loss [\d.]+\) ---$")
VARIES = "<sampled text: varies between machines>"


def _without_samples(text: str) -> list[str]:
    """The lines of ``text``, each sample's text (after a sample header, up to the next ``---`` or ``training``
    line) replaced by one placeholder line."""
    out: list[str] = []
    inside = False
    for line in text.splitlines():
        if inside and (line.startswith("--- ") or line.startswith("training loss")):
            inside = False
        if inside:
            continue
        out.append(line)
        if SAMPLE.match(line):
            inside = True
            out.append(VARIES)
    return out


def _numbers_match(a: str, b: str) -> bool:
    if not any(c in a + b for c in ".eE"):  # integers: exact
        return a == b
    x, y = float(a), float(b)
    if "e" in (a + b).lower() and abs(x) <= ROUND_OFF and abs(y) <= ROUND_OFF:
        return True
    return abs(x - y) <= RTOL * max(abs(x), abs(y))


def mismatches(shown: str, now: str) -> list[str]:
    """Why ``now`` does not match ``shown`` (see the module docstring); empty when it does."""
    old, new = _without_samples(shown), _without_samples(now)
    if len(old) != len(new):
        return [f"{len(old)} lines shown, {len(new)} printed now"]
    found = []
    for n, (a, b) in enumerate(zip(old, new, strict=True), 1):
        if NUMBER.sub("#", a) != NUMBER.sub("#", b):
            found.append(f"line {n}: text differs: {a!r} vs {b!r}")
            continue
        for x, y in zip(NUMBER.findall(a), NUMBER.findall(b), strict=True):
            if not _numbers_match(x, y):
                found.append(f"line {n}: {x} vs {y} (beyond the stated tolerance)")
    return found


def diff(block: Block, now: str) -> str:
    return "".join(
        difflib.unified_diff(
            block.shown.splitlines(keepends=True),
            now.splitlines(keepends=True),
            f"{block.page} (shown)",
            "now (printed)",
        )
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    mode = ap.add_mutually_exclusive_group(required=True)
    mode.add_argument("--update", action="store_true", help="rewrite the pages' outputs (and durations)")
    mode.add_argument("--check", action="store_true", help="exit 1 if a shown output differs from what runs")
    ap.add_argument("--no-times", action="store_true", help="with --update: leave the durations as they are")
    args = ap.parse_args()
    stale = 0
    for path in pages():
        page = str(path.relative_to(ROOT))
        text = path.read_text(encoding="utf-8")
        for block in reversed(blocks(text, page)):  # from the end, so earlier offsets stay valid
            now = produce(block)
            why = mismatches(block.shown, now)
            if why:
                stale += 1
                print(
                    f"{'updated' if args.update else 'stale'}: {block.name}\n"
                    + "\n".join(why)
                    + f"\n{diff(block, now)}"
                )
                text = text[: block.start] + now + text[block.end :]
        if args.update and not args.no_times:
            text = TIME.sub(lambda m: f"<!-- time: {m['cmd']} -->{duration(m['cmd'])}<!-- /time -->", text)
        if args.update:
            path.write_text(text, encoding="utf-8")
    if args.update:
        print(f"{stale} output(s) refreshed" + ("" if args.no_times else ", durations timed"))
        return 0
    print(f"{stale} stale output(s)" if stale else "every shown output is what the code prints (within tolerance)")
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
