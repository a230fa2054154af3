"""The errors a user can cause, each with a message that says what to do.

Every error the package raises on bad input is a :class:`BitFitError`, so the CLI can print the
message and exit non-zero without a traceback.
"""


class BitFitError(ValueError):
    """Bad input: an unknown name, missing data, a model BitFit cannot apply to, a corrupt file."""


def unknown_choice(kind: str, value: object, choices: object) -> BitFitError:
    """The error for a name that is not one of ``choices``: it names both."""
    listed = ", ".join(str(c) for c in choices)  # type: ignore[attr-defined]
    return BitFitError(f"unknown {kind} {value!r}; choose one of: {listed}")
