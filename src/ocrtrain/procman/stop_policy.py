"""When a run stops and how: one small state machine, none -> graceful -> kill.

A stop request (a signal, `ocrtrain stop`, a breached limit) moves a running run from `none`
to `graceful`: the supervisor passes the signal on and the grace starts. A forced request, a
second Ctrl+C (or SIGTERM/SIGHUP) while stopping, or the end of the grace moves it to `kill`:
every process of the run gets SIGKILL now. The machine is pure (time is passed in) and only
says what to do; the supervisor does it.
"""

from __future__ import annotations

import enum
import signal
from dataclasses import dataclass


class StopPhase(enum.Enum):
    NONE = "none"
    GRACEFUL = "graceful"
    KILL = "kill"


class StopStep(enum.Enum):
    """What the supervisor does about a request."""

    NOTHING = "nothing"
    SIGNAL = "signal"  # pass the request's signal on and mark the run as stopping
    KILL = "kill"  # SIGKILL every process of the run now


@dataclass(frozen=True)
class StopRequest:
    """One request to stop a run.

    Attributes:
        source: who asks: a signal name, "ocrtrain stop", "limit timeout", ...
        signal: the signal passed on to the child when the stop is graceful.
        force: skip the grace.
        grace: this stop's grace in seconds (None: the run's own).
        by_signal: a signal sent to the supervisor; a second one while stopping means now.
        reason: how the run's end reads (default: "stopped by <source>").
    """

    source: str
    signal: int = signal.SIGTERM
    force: bool = False
    grace: float | None = None
    by_signal: bool = False
    reason: str | None = None

    @classmethod
    def from_signal(cls, sig: int) -> StopRequest:
        return cls(source=signal_name(sig), signal=sig, by_signal=True)


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


class StopPolicy:
    """The stop state of one run."""

    def __init__(self, grace: float) -> None:
        self.phase = StopPhase.NONE
        self.request: StopRequest | None = None  # the first request; None: nobody asked
        self.reason: str | None = None  # how the run's end reads, once a stop decided it
        self.deadline: float | None = None  # when `graceful` becomes `kill`
        self.kill_why = ""  # why the last move to `kill` happened (for the log)
        self._default_grace = grace

    @property
    def grace(self) -> float:
        if self.request is not None and self.request.grace is not None:
            return self.request.grace
        return self._default_grace

    def teardown_grace(self) -> float:
        """The grace left to the run's other processes once its main process has exited."""
        return 0.0 if self.phase is StopPhase.KILL else self.grace

    def ask(
        self, request: StopRequest, now: float, *, child_running: bool, killing: bool = False
    ) -> StopStep:
        """Take a request. `killing`: after the child's exit, the teardown already SIGKILLs."""
        if not child_running:
            # Only a forced request changes a teardown that is already under way.
            if request.force and not killing:
                return self._kill(f"forced by {request.source}")
            return StopStep.NOTHING
        first = self.request is None
        if first:
            self.request = request
            self.reason = request.reason or f"stopped by {request.source}"
        if request.force:
            self.reason = f"killed by {request.source} (force)"
            return self._kill(f"forced by {request.source}")
        if not first:
            if request.by_signal:
                return self._kill(f"second {signal_name(request.signal)} while stopping")
            return StopStep.NOTHING
        self.phase = StopPhase.GRACEFUL
        self.deadline = now + self.grace
        return StopStep.SIGNAL

    def expire(self, now: float) -> StopStep:
        """Move to `kill` once the grace has run out (while the main process runs)."""
        if self.deadline is not None and now >= self.deadline:
            return self._kill(f"grace of {self.grace:g} s expired")
        return StopStep.NOTHING

    def _kill(self, why: str) -> StopStep:
        self.phase = StopPhase.KILL
        self.deadline = None
        self.kill_why = why
        if self.reason is None or "force" not in self.reason:
            self.reason = (self.reason or "stopped") + f"; SIGKILL after {why}"
        return StopStep.KILL
