"""Sphinx configuration of the documentation site (``python -m sphinx -W -b html docs docs/_build/html``).

Sphinx because the three generated parts of the site have mature extensions there: the CLI reference from the
click commands themselves (sphinx-click), the API reference from the docstrings (autodoc with napoleon: our
docstrings are Google style), and the notebooks with their stored outputs (myst-nb, which also reads every page's
Markdown through MyST).  The site works offline: MathJax is served from the build (the copy that
``jupyter-server-mathjax`` ships), never from a CDN.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path.insert(0, str(ROOT))

from symbolic_lstm import __version__  # noqa: E402

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
autodoc_typehints = "description"
napoleon_google_docstring = True
napoleon_numpy_docstring = False
html_theme = "alabaster"
html_theme_options = {"page_width": "1100px", "sidebar_width": "230px"}
html_static_path = ["_static"]
html_title = f"symbolic_lstm {release}"


def _mathjax() -> str:
    """Copy MathJax 2.7 (from jupyter-server-mathjax) into the build's static files; its URL in the site."""
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = DOCS / "_static" / "mathjax"
    if not (target / "MathJax.js").is_file():
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(source, target)
    return "mathjax/MathJax.js?config=TeX-AMS-MML_HTMLorMML"


mathjax_path = _mathjax()
mathjax2_config = {"tex2jax": {"inlineMath": [["\\(", "\\)"]], "displayMath": [["\\[", "\\]"]]}}
nb_render_markdown_format = "myst"


def _notebooks() -> None:
    """The example notebooks, as the site shows them: copied from examples/ (the suite runs those)."""
    target = DOCS / "notebooks"
    target.mkdir(exist_ok=True)
    for nb in sorted((ROOT / "examples").glob("*.ipynb")):
        shutil.copyfile(nb, target / nb.name)


_notebooks()
