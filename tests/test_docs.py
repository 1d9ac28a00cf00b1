"""The docs: a short README as the front door, every other page in docs/ built into a site (Sphinx, warnings as
errors, offline MathJax, the notebooks executed), a synopsis that names every option, pictures and equations
that fit a notebook's column."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

from symbolic_lstm.cli import main

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [ROOT / "README.md", *sorted(p for p in DOCS.rglob("*.md") if "_build" not in p.parts)]
SITE_NEEDS = ("sphinx", "myst_nb", "sphinx_click", "jupyter_server_mathjax", "ipykernel", "furo")
#: What only the [docs] extra gives: the bridges' libraries are hidden from the build, as in a venv without them.
HIDDEN = ("torch", "jax", "jaxlib")


def test_the_readme_is_a_front_door_to_every_page():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 250
    for section in ("## Set up", "## Five minutes with it", "## What is trusted", "## Documentation"):
        assert section in text
    linked = set(re.findall(r"\]\((docs/[^)#]+)", text))
    pages = {str(p.relative_to(ROOT)) for p in PAGES[1:] if p.name not in ("index.md", "getting-started.md")}
    assert pages <= linked, pages - linked


def test_every_relative_link_between_pages_resolves():
    for page in PAGES:
        for target in re.findall(r"\]\(([^)#:]+\.md)(?:#[^)]*)?\)", page.read_text(encoding="utf-8")):
            assert (page.parent / target).is_file(), f"{page.relative_to(ROOT)} links to {target}, which is not there"


def _synopsis() -> dict[str, str]:
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    block = re.search(r"```text\n(symbolic-lstm derive.*?)```", text, re.S).group(1)
    found: dict[str, str] = {}
    command = ""
    for line in block.splitlines():
        named = re.match(r"symbolic-lstm (\w+)", line)
        command = named.group(1) if named else command
        found[command] = found.get(command, "") + line + "\n"
    return found


def test_the_synopsis_names_every_command_and_option():
    synopsis = _synopsis()
    for name, command in main.commands.items():
        assert name in synopsis, name
        for p in command.params:
            if isinstance(p, click.Option) and not p.hidden and p.name != "help":
                assert any(o in synopsis[name] for o in p.opts + p.secondary_opts), f"{name}: {p.opts[0]}"


def test_no_timing_marker_opens_a_line():
    """An HTML comment at the start of a line opens an HTML block in Markdown: on the site the sentence around a
    ``<!-- time -->`` marker split in two ("takes / 90 s on 2 cores")."""
    for page in PAGES:
        for n, line in enumerate(page.read_text(encoding="utf-8").splitlines(), 1):
            assert not re.match(r"\s*<!-- /?time", line), f"{page.relative_to(ROOT)}:{n}: {line.strip()}"


def test_the_cli_guide_has_a_heading_per_command():
    """So each command is in the site's navigation (train was not)."""
    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^## (\S+)$", text, re.M))
    assert set(main.commands) <= headings, set(main.commands) - headings


def test_extras_are_installed_editable():
    """`pip install ".[torch]"` after set-up command 2 replaced the editable checkout with a copy."""
    for page in PAGES:
        for line in page.read_text(encoding="utf-8").splitlines():
            assert not re.search(r"pip install (?!-e)[\"']?\.\[", line), f"{page.relative_to(ROOT)}: {line.strip()}"


def test_a_notebook_graph_fits_the_column():
    if shutil.which("dot") is None:
        pytest.skip("Graphviz's dot is not installed")
    from symbolic_lstm.document import notebook

    g = notebook.graph("lstm")
    svg = g.svg()
    assert svg.startswith('<svg width="100%" style="max-width: ') and "viewBox=" in svg.split(">")[0]
    natural = float(re.search(r"max-width: ([\d.]+)pt", svg).group(1))
    assert natural <= 750  # ≤ 1 000 px: laid out by the forward stages, numbers beside their branches (was 1 034 pt)
    # every backward branch is a number in the picture and its partial an entry of the legend beneath
    assert len(g.legend) == 21 and "∂sum_f<t>/∂x<t> = W_f^(x)" in g.legend
    assert "(21)" in svg and "∂sum_f" not in svg
    bundle = g._repr_mimebundle_()
    assert bundle["text/html"].startswith("<div><svg") and bundle["text/html"].count("<li>") == 21
    assert "image/svg+xml" in bundle
    assert "∂sum_f<t>/∂x<t> = W_f^(x)" in g.dot  # the command line's picture keeps its labels inline


def test_equations_in_markdown_break_for_a_notebook_column():
    from symbolic_lstm import get_cell
    from symbolic_lstm.document.emit_latex import DerivationDocument
    from symbolic_lstm.document.latex_layout import COLUMN, LINE, width

    def widest(text: str, pattern: str) -> float:
        lines = [ln for block in re.findall(pattern, text, re.S) for ln in re.split(r"\\\\\n", block)]
        return max(width(ln.replace("&= ", "").replace(r"&\quad ", "")) for ln in lines)

    for cell, unroll in (("lstm", 3), ("peephole", None), ("gru", 2)):
        doc = DerivationDocument(get_cell(cell), unroll=unroll)
        assert widest(doc.markdown(), r"\$\$\\begin\{aligned\}\n(.*?)\n\\end\{aligned\}\$\$") <= COLUMN
        page = widest(doc.standalone(), r"\\begin\{align\*\}\n(.*?)\n\\end\{align\*\}")
        assert COLUMN < page <= LINE + 2  # the PDF keeps its landscape page's lines


@pytest.mark.slow  # executes both notebooks in a kernel: ~20 s
@pytest.mark.skipif(
    any(importlib.util.find_spec(m) is None for m in SITE_NEEDS), reason="the [docs] extra is not installed"
)
def test_the_site_builds_with_warnings_as_errors_and_works_offline(tmp_path):
    """The README's build command, where only the [docs] extra is installed (torch and jax hidden: the bridges'
    reference is read from their docstrings all the same); then what a reader sees, in Chromium."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "sitecustomize.py").write_text(
        "import sys\n\n\nclass _Absent:\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        f"        if name.split('.')[0] in {HIDDEN!r}:\n"
        "            raise ModuleNotFoundError(f'No module named {name!r}', name=name)\n\n\n"
        "sys.meta_path.insert(0, _Absent())\n"
    )  # as if not installed: nothing imports them, though Sphinx's mocks (put in front) still may
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(hide), str(ROOT)])}
    out = tmp_path / "html"
    done = subprocess.run(
        [sys.executable, "-m", "sphinx", "-W", "-b", "html", str(DOCS), str(out)],
        capture_output=True, text=True, timeout=900, env=env,
    )  # fmt: skip
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-5000:]
    assert "RecurrentLayer" in (out / "reference" / "api.html").read_text(encoding="utf-8")
    if importlib.util.find_spec("matplotlib") is not None:  # in [docs]: the notebooks end in their loss curves
        for page in ("article", "your_own_cell"):
            html = (out / "notebooks" / f"{page}.html").read_text(encoding="utf-8")
            assert ".png" in html and "History(losses=" not in html, page
    _read_in_chromium(out)
    for page in ("index", "getting-started", "cli", "api", "cells", "bridges", "jupyter", "dask", "speed", "internals"):
        assert (out / f"{page}.html").is_file(), page
    assert (out / "_static" / "mathjax" / "MathJax.js").is_file()
    for html in out.rglob("*.html"):
        scripts = re.findall(r'<script[^>]*src="([^"]+)"', html.read_text(encoding="utf-8"))
        assert not [s for s in scripts if s.startswith(("http:", "https:", "//"))], (html.name, scripts)
    article = (out / "notebooks" / "article.html").read_text(encoding="utf-8")
    assert article.count("cell_output") >= 5 and "_static/mathjax/MathJax.js" in article  # executed, typeset here
    reference = (out / "reference" / "cli.html").read_text(encoding="utf-8")
    assert 'href="tcp' not in reference  # a placeholder address is code, not a link
    for name, command in main.commands.items():
        assert f'id="symbolic-lstm-{name}"' in reference, name
        for p in command.params:
            if isinstance(p, click.Option) and p.opts[0].startswith("--"):
                assert p.opts[0] in reference, (name, p.opts[0])
    api = (out / "reference" / "api.html").read_text(encoding="utf-8")
    assert "RecurrentLayer" in api and "check_module" in api and "UntrustedPathError" in api


def _read_in_chromium(site: Path) -> None:
    """Every page at a 1280 px window: no code block cut off, no option shown with a dash; on the notebook
    pages every equation typeset by MathJax, none left as raw TeX, no MathJax error."""
    from browser import chromium, read_page, serve

    if chromium() is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium); the site was built, not read")
    skip = ("genindex", "search", "py-modindex")
    pages = sorted(p.relative_to(site).as_posix() for p in site.rglob("*.html") if not p.name.startswith(skip))
    problems = []
    with serve(site) as url:
        for page in pages:
            seen = read_page(f"{url}/{page}")
            if seen["clipped"] or seen["dashes"] or seen["missing"]:
                problems.append((page, "clipped", seen["clipped"], "dashes", seen["dashes"], seen["missing"]))
            if page in ("index.html", "cli.html", "speed.html"):  # a laptop window, where the panel shows
                wide = read_page(f"{url}/{page}", width=1500)
                if wide["toc_width"] is not None and wide["toc_width"] < 150:
                    problems.append((page, "the 'on this page' panel is", wide["toc_width"], "px wide at 1500 px"))
            if page.startswith("notebooks/"):
                if seen["typeset"] < 20 or seen["raw_count"] or seen["errors"]:
                    problems.append((page, "typeset", seen["typeset"], "raw TeX", seen["raw_tex"], seen["errors"]))
    assert "notebooks/article.html" in pages and "notebooks/your_own_cell.html" in pages
    assert not problems, problems
