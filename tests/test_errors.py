"""A BitFitError in a notebook shows its message, not a traceback, and the cell still fails."""

import pytest
from IPython.core.interactiveshell import InteractiveShell

from bitfit_edu.errors import BitFitError, show_briefly_in_notebooks


@pytest.fixture
def shell(monkeypatch):
    shell = InteractiveShell.instance()
    shown = []
    monkeypatch.setattr(shell, "_showtraceback", lambda etype, value, stb: shown.append(stb))
    monkeypatch.setattr("IPython.get_ipython", lambda: shell)
    show_briefly_in_notebooks()
    yield shell, shown
    shell.set_custom_exc((), None)


def test_a_bitfit_error_is_its_message_and_fails_the_cell(shell):
    shell, shown = shell
    shell.user_ns["BitFitError"] = BitFitError
    result = shell.run_cell("raise BitFitError('GLUE_DIR=x is not a folder')")
    assert isinstance(result.error_in_exec, BitFitError)
    assert shown == [["BitFitError: GLUE_DIR=x is not a folder"]]


def test_other_errors_keep_their_traceback(shell):
    shell, shown = shell
    result = shell.run_cell("1 / 0")
    assert isinstance(result.error_in_exec, ZeroDivisionError)
    assert len(shown) == 1 and len(shown[0]) > 1
