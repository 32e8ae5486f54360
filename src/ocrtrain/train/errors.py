"""Errors of the training area: bad user input is a `UsageError` (the CLIs exit 2)."""

from __future__ import annotations

from ocrtrain.procman.errors import UsageError


class ConfigError(UsageError):
    """The composed training config is invalid (unknown key, wrong type, bad value)."""


class DataError(UsageError):
    """A data folder, label file or image cannot be used."""


class CheckpointError(UsageError):
    """A checkpoint is missing, unreadable or belongs to another model."""


class OutputWriteError(RuntimeError):
    """A run output (checkpoint, metrics) could not be written: a full or read-only disk.

    Not bad input: the CLIs exit 1 with one `ERROR:` line; the previous checkpoint is kept."""
