"""Exceptions that the CLI turns into one-line messages and exit codes.

Anything a user can cause by giving bad input (a corrupt file, a wrong flag, a model
directory of another model) is an `InputError`: exit code 2, no traceback.  A training run
whose loss stops being finite is a `DivergedError`: exit code 3.
"""

from __future__ import annotations


class VisionflowError(Exception):
    """Base class: a failure the user can act on, reported as one line."""

    exit_code = 2


class InputError(VisionflowError):
    """Bad input: a file, record, field or flag that cannot be used as given."""

    exit_code = 2


class DivergedError(VisionflowError):
    """The training loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 3

    def __init__(self, kind: str, step: int) -> None:
        super().__init__(f"loss diverged ({kind}) at step {step}")
        self.kind = kind
        self.step = step
