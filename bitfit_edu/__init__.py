"""bitfit_edu: a runnable, notebook-first reproduction of BitFit (fine-tune only the bias terms)."""

from .errors import show_briefly_in_notebooks

__version__ = "0.1.0"

show_briefly_in_notebooks()
