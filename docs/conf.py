"""Sphinx configuration for gradchain's documentation site.

The API reference and the catalog tables are generated from the package itself
(its namespaces' ``__all__`` and its registries) each time the site is built,
so a new public name or a new registered plug-in is documented without anyone
editing a page. The notebooks under ``notebooks/`` are executed by myst-nb and
rendered with their outputs; a cell that raises fails the build.
"""

from __future__ import annotations

import sys
from pathlib import Path

DOCS = Path(__file__).resolve().parent
sys.path.insert(0, str(DOCS.parent))
sys.path.insert(0, str(DOCS))

import _generate  # noqa: E402  (needs the repository on sys.path first)

import gradchain  # noqa: E402

project = "gradchain"
author = "the gradchain authors"
copyright = "2026, the gradchain authors"
release = gradchain.__version__
version = release

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
]

# Pages: Markdown (MyST) and notebooks; generated API pages are reST.
source_suffix = {".rst": "restructuredtext", ".md": "myst-nb", ".ipynb": "myst-nb"}
exclude_patterns = ["_build", "notebooks/.ipynb_checkpoints", "README.md"]
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3

# Notebooks: executed at build time (cached between local builds), errors fail.
nb_execution_mode = "cache"
nb_execution_cache_path = str(DOCS / "_build" / ".jupyter_cache")
nb_execution_timeout = 900
nb_execution_raise_on_error = True
nb_execution_show_tb = True

# API: signatures as written, members in source order, type hints in the text.
autodoc_member_order = "bysource"
autodoc_typehints = "description"
autodoc_default_options = {"members": True, "show-inheritance": True}
napoleon_google_docstring = True
napoleon_numpy_docstring = False
napoleon_use_rtype = False
napoleon_use_ivar = True

html_theme = "furo"
html_title = f"gradchain {release}"
html_static_path: list[str] = []

# No network at build time: no intersphinx inventories are fetched.
suppress_warnings = ["myst.header"]


def setup(app):  # type: ignore[no-untyped-def]
    app.connect("builder-inited", lambda app: _generate.write_all(DOCS))
