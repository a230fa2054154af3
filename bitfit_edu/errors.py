"""The errors a user can cause, each with a message that says what to do.

Every error the package raises on bad input is a :class:`BitFitError`, so the CLI can print the
message and exit non-zero without a traceback.
"""

import signal
import sys
import threading
import warnings


class BitFitError(ValueError):
    """Bad input: an unknown name, missing data, a model BitFit cannot apply to, a corrupt file."""


class Terminated(KeyboardInterrupt):
    """SIGTERM (a scheduler, ``docker stop``, Binder culling), raised where the process was, as Ctrl-C is: the
    run in progress stops, its lock is released, and every finished run is kept."""


TERMINATION = threading.Event()  # set by SIGTERM, for the code that checks ``raise_if_terminated``


def _raise_terminated(signum, frame) -> None:
    TERMINATION.set()
    raise Terminated


def _drop_lost_termination(unraisable) -> None:
    """``sys.unraisablehook``: a ``Terminated`` raised inside a finalizer is not printed as a traceback
    (``raise_if_terminated`` raises it again); anything else is reported as Python would."""
    if not isinstance(unraisable.exc_value, Terminated):
        sys.__unraisablehook__(unraisable)


def stop_on_sigterm() -> None:
    """Turn SIGTERM into ``Terminated`` (from the main thread; elsewhere the default stays)."""
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _raise_terminated)
        sys.unraisablehook = _drop_lost_termination


def raise_if_terminated() -> None:
    """Raise ``Terminated`` again if SIGTERM came and its first one was lost. Python raises it in whatever code
    runs when the signal lands: in a finalizer (a ``__del__``, a ``weakref.finalize``) Python drops it, and a
    library's bare ``except:`` swallows it (``datasets`` hashing a ``map`` function did, see ``glue.tokenize``).
    A grid checks this before each run and a run after every training step, so the process still stops."""
    if TERMINATION.is_set():
        raise Terminated


def unknown_choice(kind: str, value: object, choices: object) -> BitFitError:
    """The error for a name that is not one of ``choices``: it names both."""
    listed = ", ".join(str(c) for c in choices)  # type: ignore[attr-defined]
    return BitFitError(f"unknown {kind} {value!r}; choose one of: {listed}")


def _show_message_only(shell, exc_type, error, tb, tb_offset=None) -> list[str]:
    """IPython's handler for a BitFitError: the message that says what to do, not a traceback."""
    lines = [f"BitFitError: {error}"]
    shell._showtraceback(exc_type, error, lines)  # an error output: the cell fails, nbval sees it
    return lines


def show_briefly_in_notebooks() -> None:
    """In a notebook, show a BitFitError as its one-line message (the cell still fails, for nbval too)."""
    shell = sys.modules["IPython"].get_ipython() if "IPython" in sys.modules else None
    if shell is not None:
        shell.set_custom_exc((BitFitError,), _show_message_only)
        # trio (imported by the hub's HTTP client) warns that it now leaves IPython's handlers alone
        warnings.filterwarnings("ignore", message="IPython detected, but you already have a custom exception",
                                category=RuntimeWarning)
