"""bitfit_edu: a runnable, notebook-first reproduction of BitFit (fine-tune only the bias terms)."""

__version__ = "0.1.0"
