"""Sphinx configuration of the documentation site (``python -m sphinx -W -b html docs docs/_build/html``).

Sphinx because the three generated parts of the site have mature extensions there: the CLI reference from the
click commands themselves (sphinx-click), the API reference from the docstrings (autodoc with napoleon: our
docstrings are Google style), and the notebooks with their stored outputs (myst-nb, which also reads every page's
Markdown through MyST).  The site works offline: MathJax is served from the build (the copy that
``jupyter-server-mathjax`` ships), never from a CDN.
"""

from __future__ import annotations

import importlib.util
import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from symbolic_lstm.runtime.version import __version__  # noqa: E402

project = "symbolic_lstm"
author = "the symbolic_lstm team"
copyright = "2026, the symbolic_lstm team"  # Sphinx's name for it
release = version = __version__

extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon", "sphinx_click"]
source_suffix = {".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "README.md"]
myst_enable_extensions = ["dollarmath", "amsmath"]
myst_heading_anchors = 4
nb_execution_mode = "force"  # run at every build: the site shows what the code does now (committed bare)
nb_execution_timeout = 600
nb_execution_raise_on_error = True
nb_execution_in_temp = True
autodoc_member_order = "bysource"


# the bridges' optional libraries: documented from their docstrings whether or not torch / jax are installed
# (the README's build command installs the [docs] extra alone; -W would make "cannot import" an error)
def _importable(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


autodoc_mock_imports = [m for m in ("torch", "jax", "jaxlib") if not _importable(m)]
# typographic quotes and dashes would turn "--stale" into "–stale": text copied from the site must run
smartquotes = False
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
# furo: a navigation sidebar listing every page and its headings (so each command of the CLI guide is one
# click away), readable code and tables, light and dark, no JavaScript framework and nothing fetched from the
# network; _static/site.css widens its column for our command lines and wraps what is still longer
html_theme = "furo"
html_static_path = ["_static"]
html_css_files = ["site.css"]
html_title = f"symbolic_lstm {release}"


def _mathjax() -> str:
    """Copy MathJax 2.7 (from jupyter-server-mathjax) into the build's static files; its URL in the site."""
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = DOCS / "_static" / "mathjax"
    if not (target / "MathJax.js").is_file():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML-full"  # the configuration jupyter-server-mathjax ships


mathjax_path = _mathjax()
# MyST marks its pages ``tex2jax_ignore`` and each equation ``math``: MathJax 2 is told to typeset exactly those
# (and notebook outputs), as myst-nb's documentation asks for MathJax 2
mathjax2_config = {
    "tex2jax": {
        "inlineMath": [["\\(", "\\)"]],
        "displayMath": [["\\[", "\\]"]],
        "processEscapes": True,
        "ignoreClass": "document",
        "processClass": "math|output_area",
    },
    # the fonts jupyter-server-mathjax ships are STIX-Web (not the TeX fonts the default asks for, which 404)
    "HTML-CSS": {"availableFonts": ["STIX-Web"], "preferredFont": "STIX-Web", "webFont": "STIX-Web"},
}
nb_render_markdown_format = "myst"


def _notebooks() -> None:
    """The example notebooks, as the site shows them: copied from examples/ (the suite runs those)."""
    target = DOCS / "notebooks"
    target.mkdir(exist_ok=True)
    for nb in sorted((ROOT / "examples").glob("*.ipynb")):
        shutil.copyfile(nb, target / nb.name)


_notebooks()


def _addresses_as_literals(app: object, ctx: object, lines: list[str]) -> None:
    """``tcp://HOST:PORT`` in the command-line reference is a placeholder, not a link: shown as code."""
    for i, line in enumerate(lines):
        lines[i] = line.replace("tcp://HOST:PORT", "``tcp://HOST:PORT``").replace("````", "``")


def setup(app: object) -> None:
    for part in ("description", "usage", "options", "arguments", "epilog"):
        app.connect(f"sphinx-click-process-{part}", _addresses_as_literals)  # type: ignore[attr-defined]
