"""What happened to a process that was to be ended: one vocabulary for teardown and cleanup."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


class Outcome(StrEnum):
    """The fate of one process (the values are what reports and the journal show)."""

    SIGTERM = "SIGTERM"  # ended after SIGTERM
    SIGKILL = "SIGKILL"  # ended after SIGKILL
    EXITED = "exited"  # ended on its own before it was signalled
    SUPERVISOR = "supervisor"  # ended by its run's supervisor
    GONE = "gone"  # gone before it could be signalled
    REUSED = "pid reused"  # its pid now names another process: never signalled
    DENIED = "permission denied"  # this user may not signal it
    SURVIVED = "survived"  # outlived SIGKILL (see the reason)


@dataclass(frozen=True, slots=True)
class ProcessOutcome:
    """One process's fate and, in words, why."""

    pid: int
    outcome: Outcome
    reason: str
