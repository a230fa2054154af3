"""Sphinx configuration of the course site (myst-nb and sphinx-book-theme, the Jupyter Book 1 stack).

The notebooks are rendered as committed, executed, and never re-executed (``nb_execution_mode = "off"``).
``pages.write_all`` writes the site's measured parts (course map, instructor guide, verdicts, figures)
and the teacher's slides into ``_generated/`` first. ``make site`` builds it into ``build/site/``.
"""

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pages  # noqa: E402

import bitfit_edu  # noqa: E402
from bitfit_edu.classroom import offline  # noqa: E402

SERVES_ITS_OWN_SCRIPTS = pages.write_all()
TEST_MARKER = re.compile(r'\s*"# NBVAL_[A-Z_]+(\\n)?",?')  # a line of a cell's source in the notebook's JSON


def escape_bars(app, what, name, obj, options, lines: list[str]) -> None:
    """Docstrings write absolute values as |Δb|, which reStructuredText would read as substitutions."""
    lines[:] = [line.replace("|", "\\|") for line in lines]


def hide_test_markers(app, docname: str, source: list[str]) -> None:
    """Leave nbval's markers (``# NBVAL_CHECK_OUTPUT``) out of the code cells readers see."""
    if docname.startswith("notebooks/"):
        source[0] = TEST_MARKER.sub("", source[0])


def setup(app) -> None:
    app.connect("autodoc-process-docstring", escape_bars)
    app.connect("source-read", hide_test_markers)


project = "bitfit_edu"
release = version = bitfit_edu.__version__
author = "The bitfit_edu authors"
copyright = "2026, the bitfit_edu authors"
extensions = ["myst_nb", "sphinx.ext.autodoc", "sphinx.ext.napoleon"]
exclude_patterns = ["_build", "_generated", "notebooks/*.md", "**/.ipynb_checkpoints", "README.md"]
nb_execution_mode = "off"
nb_output_stderr = "remove"
myst_enable_extensions = ["dollarmath", "colon_fence"]
myst_heading_anchors = 3
suppress_warnings = ["myst.header"]  # notebooks' section numbers start at their own level
autodoc_member_order = "bysource"
autodoc_typehints = "description"

html_theme = "sphinx_book_theme"
html_title = f"BitFit, reproduced: a course ({version})"
html_theme_options = {
    "repository_url": pages.REPOSITORY,
    "use_repository_button": True,
    "repository_branch": "main",
    "launch_buttons": {"binderhub_url": "https://mybinder.org", "colab_url": "https://colab.research.google.com",
                       "notebook_interface": "jupyterlab"},
    "show_toc_level": 2,
    "extra_footer": (
        'Code: <a href="https://opensource.org/license/mit">MIT licence</a>. Notebooks\' prose, figures and these '
        'pages: <a href="https://creativecommons.org/licenses/by/4.0/">CC BY 4.0</a>. '
        "BitFit is the work of Ben Zaken, Ravfogel and Goldberg (ACL 2022); its numbers here are labelled as theirs."
    ),
}
html_static_path = []
html_extra_path = ["_generated/extra"]  # the slides and the scripts (pages.EXTRA)
html_favicon = "favicon.svg"
html_context = {"default_mode": "light"}  # the theme's mode from the first visit on (else a console error)
if SERVES_ITS_OWN_SCRIPTS:  # so that the site works with no network (paths relative to _static)
    mathjax_path = f"../{pages.VENDOR}/{offline.MATHJAX}"
    nb_ipywidgets_js = {f"../{pages.VENDOR}/{offline.REQUIRE}": {}, f"../{pages.VENDOR}/{offline.WIDGET_ASSETS}": {},
                        f"../{pages.VENDOR}/{offline.WIDGETS}": {"data-jupyter-widgets-cdn": "https://cdn.jsdelivr.net/npm/"}}
