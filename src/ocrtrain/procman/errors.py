"""The small error hierarchy of the process-management core."""

from __future__ import annotations


class OcrtrainError(Exception):
    """An error a CLI reports as one line; `exit_code` is what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class UsageError(OcrtrainError):
    """Bad input from the user: a CLI exits 2."""

    exit_code = 2


class HomeError(UsageError):
    """`$OCRTRAIN_HOME` cannot be created or written."""


class RunNotFound(UsageError):
    """No run in the journal matches the given id, prefix or name."""


class SpawnError(OcrtrainError):
    """The command of a run could not be started (missing or not executable)."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code
