"""Sphinx configuration of the course site (myst-nb and sphinx-book-theme, the Jupyter Book 1 stack).

The notebooks are rendered as committed, executed, and never re-executed (``nb_execution_mode = "off"``).
``pages.write_all`` writes the site's measured parts (course map, instructor guide, verdicts, figures)
and the teacher's slides into ``_generated/`` first. ``make site`` builds it into ``build/site/``.
"""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pages  # noqa: E402

pages.write_all()


def escape_bars(app, what, name, obj, options, lines: list[str]) -> None:
    """Docstrings write absolute values as |Δb|, which reStructuredText would read as substitutions."""
    lines[:] = [line.replace("|", "\\|") for line in lines]


def setup(app) -> None:
    app.connect("autodoc-process-docstring", escape_bars)


project = "bitfit_edu"
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
html_title = "BitFit, reproduced: a course"
html_theme_options = {
    "repository_url": pages.REPOSITORY,
    "use_repository_button": True,
    "show_toc_level": 2,
    "extra_footer": (
        'Code: <a href="https://opensource.org/license/mit">MIT licence</a>. Notebooks\' prose, figures and these '
        'pages: <a href="https://creativecommons.org/licenses/by/4.0/">CC BY 4.0</a>. '
        "BitFit is the work of Ben Zaken, Ravfogel and Goldberg (ACL 2022); its numbers here are labelled as theirs."
    ),
}
html_static_path = []
html_extra_path = ["_generated/extra"]  # the slides (pages.EXTRA)
