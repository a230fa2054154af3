"""What a user sees on a console or in a notebook besides results: library progress bars and warnings, and
which process prints under torchrun.

A run shows one progress bar of its own (``experiments.training.RunProgress``); loading a model or tokenizing
a split shows none, and neither do transformers' warnings. Reading results imports nothing of training.
"""

from __future__ import annotations

import os

import datasets
import transformers


def set_progress_bars(enabled: bool) -> None:
    """Switch the progress bars of transformers and datasets on or off (notebook outputs stay small)."""
    if enabled:
        transformers.utils.logging.enable_progress_bar()
        datasets.enable_progress_bars()
    else:
        transformers.utils.logging.disable_progress_bar()
        datasets.disable_progress_bars()


def quiet_outputs() -> None:
    """Keep notebook and console outputs small: no progress bars while loading or tokenizing, no library
    warnings."""
    transformers.logging.set_verbosity_error()
    set_progress_bars(False)


def is_main_process() -> bool:
    """False in every process but the first under torchrun: those train too, but write and print nothing."""
    return int(os.environ.get("RANK", "0")) == 0
