"""bitfit_edu: a runnable, notebook-first reproduction of BitFit (fine-tune only the bias terms)."""

from .errors import show_briefly_in_notebooks

__version__ = "0.2.0"  # the one place: pyproject.toml, CITATION.cff, the site and doctor read it

show_briefly_in_notebooks()
