"""Find every process of a run and end it: SIGTERM, one shared deadline, SIGKILL, reap.

Which processes are the run's is `ocrtrain.procman.membership`'s answer, asked again while
the teardown lasts so that forks are caught. Every signal goes through a pidfd opened and then
re-checked against the process's start time, so a reused pid is never hit.
"""

from __future__ import annotations

import logging
import os
import select
import signal
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from ocrtrain.procman import procfs
from ocrtrain.procman.cgroup import RunCgroup
from ocrtrain.procman.journal import EventKind
from ocrtrain.procman.membership import ProcessTable, RunScope, find_members, members
from ocrtrain.procman.outcomes import Outcome

__all__ = ["Signaller", "Teardown", "TeardownResult", "find_members", "signal_identity"]

log = logging.getLogger(__name__)

KILL_WAIT_S = 3.0  # after SIGKILL: how long to wait before calling a process a survivor
RESCAN_S = 0.05  # how often the process table is scanned again for newcomers (forks)

EventSink = Callable[..., Any]  # (kind, pid=None, signal=None, **detail)


def _ignore_event(*args: Any, **kwargs: Any) -> None:
    del args, kwargs


@dataclass
class _Target:
    pid: int
    start: int
    fd: int | None  # pidfd, or None where the kernel has none (then a start-time check)
    exited: bool = False


class Signaller:
    """Signals processes by identity (pid + start time), through pidfds where available."""

    def __init__(self) -> None:
        self._targets: dict[tuple[int, int], _Target] = {}

    def adopt(self, st: procfs.ProcStat) -> _Target | None:
        """Pin a process for signalling; None if it is already gone or its pid was reused."""
        key = (st.pid, st.start)
        if key in self._targets:
            return self._targets[key]
        fd: int | None
        try:
            fd = os.pidfd_open(st.pid)
        except ProcessLookupError:
            return None
        except (OSError, AttributeError):
            fd = None  # no pidfd support: fall back to a start-time check before each signal
        # Re-check identity *after* pinning: the pid may have been reused since the scan.
        now = procfs.read_stat(st.pid)
        if now is None or now.start != st.start:
            if fd is not None:
                os.close(fd)
            return None
        target = _Target(st.pid, st.start, fd)
        self._targets[key] = target
        return target

    def send(self, target: _Target, sig: int) -> Outcome | None:
        """Send `sig`; returns None on success, else why it could not be delivered."""
        if target.exited:
            return Outcome.GONE
        try:
            if target.fd is not None:
                signal.pidfd_send_signal(target.fd, sig)
            else:
                now = procfs.read_stat(target.pid)
                if now is None or now.start != target.start:
                    return Outcome.GONE
                os.kill(target.pid, sig)
        except ProcessLookupError:
            # Exited between the scan and the signal: nothing left to do.
            return Outcome.GONE
        except PermissionError:
            return Outcome.DENIED
        return None

    def alive(self, target: _Target) -> bool:
        """True while the process has not exited (a zombie counts as exited)."""
        if target.fd is not None:
            poller = select.poll()
            poller.register(target.fd, select.POLLIN)
            if poller.poll(0):
                return False
        return procfs.is_alive(target.pid, target.start)

    def forget_exited(self, live: dict[int, procfs.ProcStat]) -> None:
        """Close the pidfds of processes no longer among `live` (keeps poll() from spinning)."""
        for t in self._targets.values():
            st = live.get(t.pid)
            if (st is None or st.start != t.start) and not t.exited:
                if t.fd is not None:
                    os.close(t.fd)
                    t.fd = None
                t.exited = True

    def targets(self) -> list[_Target]:
        return list(self._targets.values())

    def fds(self) -> list[int]:
        return [t.fd for t in self._targets.values() if t.fd is not None]

    def close(self) -> None:
        for t in self._targets.values():
            if t.fd is not None:
                os.close(t.fd)
        self._targets.clear()


def signal_identity(pid: int, start: int, sig: int) -> Outcome | None:
    """Send `sig` to the process (pid, start ticks) only if that very process still runs.

    Returns:
        None once sent, else why not (GONE for an exited or reused pid, DENIED).
    """
    signaller = Signaller()
    try:
        st = procfs.read_stat(pid)
        if st is None or st.start != start:
            return Outcome.GONE
        target = signaller.adopt(st)
        return Outcome.GONE if target is None else signaller.send(target, sig)
    finally:
        signaller.close()


def survivor_reason(pid: int, why: Outcome | None = None) -> str:
    """A human reason why a process outlived SIGKILL (`why`: it could not be signalled)."""
    if why is not None:
        return str(why)
    st = procfs.read_stat(pid)
    if st is None:
        return "gone"
    if st.state == "D":
        return "uninterruptible sleep (D state: blocked in the kernel, e.g. I/O or a driver)"
    if st.state == "Z":
        return "zombie (its parent has not reaped it)"
    return f"still alive in state {st.state}"


@dataclass
class TeardownResult:
    """What a teardown did."""

    signalled: list[int] = field(default_factory=list)
    killed: list[int] = field(default_factory=list)
    survivors: dict[int, str] = field(default_factory=dict)
    started_at: float = 0.0
    ended_at: float = 0.0

    @property
    def clean(self) -> bool:
        return not self.survivors

    def outcome(self, pid: int) -> Outcome:
        """What happened to `pid`, one of the processes this teardown was to end."""
        if pid in self.survivors:
            return Outcome.SURVIVED
        if pid in self.killed:
            return Outcome.SIGKILL
        return Outcome.SIGTERM if pid in self.signalled else Outcome.EXITED


class Teardown:
    """Ends every process of a run: SIGTERM, a shared deadline of `grace` seconds, then SIGKILL.

    Drive it with `begin()` then `step()` from an event loop (the supervisor does, so that it
    keeps draining output and reaping), or call `run()` to block until done.
    """

    def __init__(
        self,
        run_id: str | None,
        *,
        grace: float,
        sid: int | None = None,
        sid_until: int | None = None,
        cgroup: RunCgroup | None = None,
        root_pid: int | None = None,
        exclude: Iterable[int] = (),
        on_event: EventSink = _ignore_event,
        reap: Callable[[], object] | None = None,
        only: Iterable[procfs.ProcStat] | None = None,
    ) -> None:
        self.run_id = run_id
        self.grace = max(0.0, grace)
        self.scope = RunScope(run_id, sid, sid_until, cgroup, root_pid, frozenset(exclude))
        self.cgroup = cgroup
        self.on_event = on_event
        self.reap = reap
        self.only = list(only) if only is not None else None
        self.signaller = Signaller()
        self.result = TeardownResult()
        self._deadline = 0.0
        self._kill_deadline = 0.0
        self._escalated = False
        self._done = False
        self._last_scan = 0.0
        self._failed: dict[tuple[int, int], Outcome] = {}

    @property
    def done(self) -> bool:
        return self._done

    @property
    def escalated(self) -> bool:
        return self._escalated

    def deadline(self) -> float:
        """The monotonic time of the next escalation step."""
        return self._kill_deadline if self._escalated else self._deadline

    def _discover(self) -> dict[int, procfs.ProcStat]:
        self._last_scan = time.monotonic()
        if self.only is not None:
            return {st.pid: st for st in self.only if procfs.is_alive(st.pid, st.start)}
        table = ProcessTable.scan(with_env=self.run_id is not None)
        return {pid: m.stat for pid, m in members(table, self.scope).items()}

    def _signal(self, st: procfs.ProcStat, sig: int) -> None:
        target = self.signaller.adopt(st)
        if target is None:
            return
        why = self.signaller.send(target, sig)
        if why == Outcome.GONE:
            return
        if why is not None:
            self._failed[(st.pid, st.start)] = why
            return
        if sig == signal.SIGTERM:
            # A stopped process only acts on SIGTERM once continued.
            self.signaller.send(target, signal.SIGCONT)
            self.result.signalled.append(st.pid)
        else:
            self.result.killed.append(st.pid)
        self.on_event(EventKind.SIGNAL_SENT, pid=st.pid, signal=sig, pgid=st.pgid, comm=st.comm)

    def begin(self, members: dict[int, procfs.ProcStat] | None = None) -> None:
        """Signal every member: SIGTERM, or SIGKILL at once when the grace is zero."""
        self.result.started_at = time.time()
        now = time.monotonic()
        self._deadline = now + self.grace
        found = self._discover() if members is None else members
        if found:
            self.on_event(
                EventKind.SURVIVORS_FOUND,
                pids=sorted(found),
                grace=self.grace,
            )
        if self.grace <= 0:
            self._escalate(found)
            return
        for st in found.values():
            self._signal(st, signal.SIGTERM)
        self.step()

    def _escalate(self, members: dict[int, procfs.ProcStat]) -> None:
        self._escalated = True
        self._kill_deadline = time.monotonic() + KILL_WAIT_S
        if members:
            for st in members.values():
                log.warning(
                    "%s: pid %d (pgid %d, %s) still alive; sending SIGKILL",
                    f"run {self.run_id}" if self.run_id else "teardown",
                    st.pid,
                    st.pgid,
                    st.comm,
                )
            self.on_event(EventKind.ESCALATED, pids=sorted(members), signal_name="SIGKILL")
        if self.cgroup is not None and self.only is None:
            self.cgroup.kill()
        for st in members.values():
            self._signal(st, signal.SIGKILL)

    def step(self) -> bool:  # noqa: PLR0912 - the escalation steps read best in one place
        """Advance: reap, look for newcomers, escalate at the deadline. True once finished."""
        if self._done:
            return True
        if self.reap is not None:
            self.reap()
        members = self._discover()
        self.signaller.forget_exited(members)
        pending = {pid: st for pid, st in members.items() if (st.pid, st.start) not in self._failed}
        if not members:
            return self._finish()
        now = time.monotonic()
        if not self._escalated:
            if now >= self._deadline:
                self._escalate(members)
            else:
                signalled = {(t.pid, t.start) for t in self.signaller.targets()}
                for st in pending.values():
                    if (st.pid, st.start) not in signalled:
                        self._signal(st, signal.SIGTERM)  # forked during the teardown
        else:
            killed = set(self.result.killed)
            for st in pending.values():
                if st.pid not in killed:
                    self._signal(st, signal.SIGKILL)
            if self.cgroup is not None and self.only is None:
                self.cgroup.kill()
            if now >= self._kill_deadline or not pending:
                return self._declare_survivors(members)
        if not pending and self._failed and not self._escalated:
            # Only processes we may not signal remain: waiting will not change that.
            return self._declare_survivors(members)
        return False

    def _declare_survivors(self, members: dict[int, procfs.ProcStat]) -> bool:
        for pid, st in members.items():
            reason = survivor_reason(pid, self._failed.get((st.pid, st.start)))
            self.result.survivors[pid] = reason
            self.on_event(EventKind.SURVIVOR_REMAINS, pid=pid, reason=reason)
        return self._finish()

    def _finish(self) -> bool:
        self._done = True
        self.result.ended_at = time.time()
        self.signaller.close()
        return True

    def wait_fds(self) -> list[int]:
        """pidfds that become readable when a signalled process exits (for select/poll)."""
        return self.signaller.fds()

    def run(self) -> TeardownResult:
        """Block until every member is gone or has been declared a survivor."""
        self.begin()
        while not self.step():
            timeout = max(0.0, min(self.deadline() - time.monotonic(), RESCAN_S))
            fds = self.wait_fds()
            if fds:
                poller = select.poll()
                for fd in fds:
                    poller.register(fd, select.POLLIN)
                poller.poll(timeout * 1000)
            else:
                time.sleep(timeout)
        return self.result
