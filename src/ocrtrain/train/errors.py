"""Errors of the training area: bad user input is a `UsageError` (the CLIs exit 2)."""

from __future__ import annotations

from ocrtrain.procman import UsageError


class ConfigError(UsageError):
    """The composed training config is invalid (unknown key, wrong type, bad value)."""


class DataError(UsageError):
    """A data folder, label file or image cannot be used."""


class CheckpointError(UsageError):
    """A checkpoint is missing, unreadable or belongs to another model."""


class RunFailed(RuntimeError):
    """The run could not go on, through no fault of its input: the CLIs exit 1 with one
    `ERROR:` line saying what happened and which checkpoint a resumed run starts from."""


class OutputWriteError(RunFailed):
    """A run output (checkpoint, metrics) could not be written: a full or read-only disk.
    The previous checkpoint is kept."""


class NothingToTrain(Exception):
    """The checkpoint to resume has already reached the run's end (`trainer.max_epochs`,
    `max_steps` or its time budget): the CLIs say so in one line and exit 0."""
