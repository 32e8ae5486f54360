"""The supervisor: starts one command as a run and guarantees that no process of it survives.

It reads straight through, like tini's main: set up signals (collected synchronously through a
wakeup pipe, never acted on in handlers), become a child subreaper, start the watchdog, spawn
the child in its own session (and cgroup, and with a parent-death signal), then loop: forward
signals, reap zombies, sample resources, enforce limits (output moves on its own threads, see
output.py; only a pty is read in the loop). Once the main child
has exited, every remaining process of the run gets SIGTERM, then SIGKILL after the grace, and
is reaped. The exit status is the child's, or 128+N when it died of signal N.
"""

from __future__ import annotations

import contextlib
import getpass
import logging
import os
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ocrtrain.procman import procfs
from ocrtrain.procman.cgroup import CgroupUnavailable, RunCgroup
from ocrtrain.procman.envnames import HOME_ENV, RUN_DIR_ENV, RUN_ID_ENV, SUPERVISOR_PID_ENV
from ocrtrain.procman.errors import SpawnError, UsageError
from ocrtrain.procman.home import runs_dir
from ocrtrain.procman.journal import (
    ACTIVE_STATES,
    EventKind,
    Journal,
    RunRecord,
    RunState,
    SampleRecord,
    new_run_id,
)
from ocrtrain.procman.leftovers import remove_run_leftovers
from ocrtrain.procman.lifeline import become_subreaper, set_parent_death_signal
from ocrtrain.procman.output import LogFile, RunOutput
from ocrtrain.procman.rankreports import ranks_dir
from ocrtrain.procman.sampling import Sampler, memory_breach, timeout_breach
from ocrtrain.procman.signal_inbox import SignalInbox
from ocrtrain.procman.spawn import BACKGROUND_TTY, MainChild, exit_status, start_child
from ocrtrain.procman.spec import RunSpec
from ocrtrain.procman.stop_policy import StopPolicy, StopRequest, StopStep, signal_name
from ocrtrain.procman.teardown import Teardown, find_members
from ocrtrain.procman.terminal import ChildStdio, UserTerminal
from ocrtrain.procman.watchdog import WatchdogLink

log = logging.getLogger(__name__)

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
HANDLED = (*FORWARDED, signal.SIGCHLD, signal.SIGWINCH, signal.SIGTSTP, signal.SIGCONT)


def create_run(journal: Journal, spec: RunSpec, run_id: str | None = None) -> RunRecord:
    """Write the journal row of a new run (state `starting`) and create its folder.

    Raises:
        UsageError: `--max-runs` is reached and the spec does not wait for a slot.
    """
    run_id = run_id or new_run_id()
    folder = runs_dir(journal.home) / run_id
    record = RunRecord(
        id=run_id,
        name=spec.display_name,
        argv=list(spec.argv),
        cwd=os.path.abspath(spec.cwd or os.getcwd()),
        user=_user(),
        host=socket.gethostname(),
        state=RunState.STARTING,
        created_at=time.time(),
        grace=float(spec.grace),
        log_path=str(folder / "output.log"),
        run_dir=str(folder),
        detached=spec.detach,
        limits=spec.limits(),
    )
    while True:
        created = journal.create_run(record, max_active=spec.max_runs)
        if created:
            break
        if not spec.wait_for_slot:
            raise UsageError(
                f"--max-runs {spec.max_runs}: {spec.max_runs} run(s) already active; "
                "wait for one to end, or pass --wait"
            )
        _reconcile_quietly(journal)
        time.sleep(1.0)
    folder.mkdir(parents=True, exist_ok=True)
    return record


def _reconcile_quietly(journal: Journal) -> None:
    from ocrtrain.procman.liveness import reconcile

    reconcile(journal)


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return str(os.getuid())


class Supervisor:
    """Runs one command to completion under every teardown tier available here."""

    def __init__(
        self,
        journal: Journal,
        record: RunRecord,
        spec: RunSpec,
        *,
        stdout_fd: int | None = 1,
        stderr_fd: int | None = 2,
        stdin_fd: int | None = 0,
    ) -> None:
        self.journal = journal
        self.record = record
        self.spec = spec
        self.run_id = record.id
        self.term = UserTerminal(stdout_fd, stderr_fd, stdin_fd)
        self.child: MainChild | None = None
        self.cgroup: RunCgroup | None = None
        self.tiers: dict[str, Any] = {}
        self.stop = StopPolicy(spec.grace)
        self.teardown: Teardown | None = None
        self.watchdog: WatchdogLink | None = None
        self.output: RunOutput | None = None
        self.sampler = Sampler(record.id, spec.sample_interval)
        self._sel = selectors.DefaultSelector()
        self._signals: SignalInbox | None = None
        self._last_stop_seq = 0
        self._started_mono = time.monotonic()

    def run(self) -> int:
        """Supervise the run to its end; returns the exit status to report.

        Raises:
            SpawnError: the command could not be started (after recording it in the journal).
        """
        self._signals = SignalInbox(HANDLED, ignored=BACKGROUND_TTY)
        self._sel.register(self._signals.fd, selectors.EVENT_READ, self._drain_signals)
        try:
            return self._run()
        except SpawnError:
            raise
        except BaseException as exc:
            # A bug or a broken journal must not leave the run behind: the watchdog will be
            # told "done" by the cleanup, so end every process of the run here first.
            self._emergency_teardown(exc)
            raise
        finally:
            self._cleanup()

    def _run(self) -> int:
        self._setup_tiers()
        self._start_watchdog()
        self.output = output = RunOutput(LogFile(self.record.log_path), on_end=self._unwatch)
        try:
            self.child = child = self._spawn(output)
        except SpawnError as error:
            self.event(EventKind.SPAWN_FAILED, error=str(error), exit_code=error.exit_code)
            output.log.write(f"ocrtrain: {error}\n".encode())
            self._finish(error.exit_code, None, RunState.FAILED, str(error))
            raise
        self._mark_running(child)
        self._loop(child, output)
        return self._finish_run(child)

    def _loop(self, child: MainChild, output: RunOutput) -> None:
        """Wait for output and signals, reap; once the main child is gone, end the rest."""
        while True:
            for key, _ in self._sel.select(self._next_timeout()):
                key.data(key.fd)
            self._reap()
            if child.running:
                self._check_deadlines(time.monotonic())
                continue
            if self.teardown is None:
                self.teardown = self._make_teardown(self.stop.teardown_grace())
                self.teardown.begin()
            if self.teardown.step():
                self._reap()  # the last members died after the step's own reap
                output.drain()
                return

    def _next_timeout(self) -> float:
        now = time.monotonic()
        candidates = [self.sampler.next_due() - now]
        running = self.child is not None and self.child.running
        if self.stop.deadline is not None and running:
            candidates.append(self.stop.deadline - now)
        if self.spec.timeout is not None:
            candidates.append(self._started_mono + self.spec.timeout - now)
        if self.teardown is not None:
            candidates.append(min(0.05, self.teardown.deadline() - now))
        elif not running:
            candidates.append(0.0)
        return max(0.0, min(candidates))

    # -- start ----------------------------------------------------------------------------

    def event(
        self, kind: EventKind, pid: int | None = None, signal: int | None = None, **detail: Any
    ) -> None:
        try:
            self.journal.add_event(self.run_id, kind, pid=pid, signal=signal, **detail)
        except Exception:  # the journal must never take the run down
            log.exception("run %s: could not record %s", self.run_id, kind)

    def _setup_tiers(self) -> None:
        self.tiers["session"] = True
        self.tiers["subreaper"] = become_subreaper()
        if not self.spec.detach:
            # Tie the run to its launcher: a shell or script that dies takes the run with it.
            self.tiers["launcher_tie"] = set_parent_death_signal(signal.SIGTERM)
        try:
            self.cgroup = RunCgroup.create(self.run_id)
            self.tiers["cgroup"] = str(self.cgroup.path)
        except CgroupUnavailable as exc:
            self.tiers["cgroup"] = False
            self.tiers["cgroup_reason"] = str(exc)
        self.tiers["pidfd"] = hasattr(os, "pidfd_open")
        self.tiers["pdeathsig"] = sys.platform.startswith("linux")

    def _start_watchdog(self) -> None:
        self.watchdog = WatchdogLink.launch(self.journal.home, self.run_id, self.cgroup)
        self.event(EventKind.WATCHDOG_STARTED, pid=self.watchdog.pid)

    def _spawn(self, output: RunOutput) -> MainChild:
        stdio = self.term.open_stdio()
        try:
            child = self._start_child(stdio)
        except BaseException:
            stdio.close()
            raise
        stdio.close_child_ends()
        for fd, dest in stdio.outputs:
            copy = output.copy_to(self.term.out[dest], dest)
            if output.add(fd, copy, pipe=not stdio.is_pty, name=dest):
                self._sel.register(fd, selectors.EVENT_READ, output.pump)
        if self.term.takes_input and self.term.stdin_fd is not None:
            self._sel.register(self.term.stdin_fd, selectors.EVENT_READ, self._pass_input)
        return child

    def _start_child(self, stdio: ChildStdio) -> MainChild:
        env = {
            **os.environ,
            **self.spec.env,
            RUN_ID_ENV: self.run_id,
            RUN_DIR_ENV: self.record.run_dir,
            HOME_ENV: str(self.journal.home),
            SUPERVISOR_PID_ENV: str(os.getpid()),
        }
        args = (list(self.spec.argv), self.record.cwd, env, stdio)
        try:
            return start_child(*args, self.cgroup)
        except subprocess.SubprocessError:
            if self.cgroup is None:
                raise
            # The child could not join the run cgroup (e.g. no write access to
            # cgroup.procs): run without that tier rather than not at all.
            self.cgroup.remove()
            self.cgroup = None
            self.tiers["cgroup"] = False
            self.tiers["cgroup_reason"] = "the command could not join the run cgroup"
            return start_child(*args, None)

    def _mark_running(self, child: MainChild) -> None:
        assert self.watchdog is not None
        self.watchdog.tell_child(child.pid, child.start or 0)
        sup = procfs.read_stat(os.getpid())
        self.journal.transition(
            self.run_id,
            RunState.RUNNING,
            EventKind.STARTED,
            only_from=[RunState.STARTING],
            detail={"pid": child.pid, "tiers": self.tiers},
            supervisor_pid=os.getpid(),
            supervisor_start=sup.start if sup else None,
            child_pid=child.pid,
            child_start=child.start,
            pgid=child.pid,
            sid=child.pid,
            cgroup=str(self.cgroup.path) if self.cgroup else None,
            watchdog_pid=self.watchdog.pid,
            watchdog_start=self.watchdog.start,
            started_at=time.time(),
            tiers=self.tiers,
        )
        log.info("run %s: started pid %d: %s", self.run_id, child.pid, self.spec.argv)

    # -- in the loop ----------------------------------------------------------------------

    def _unwatch(self, fd: int) -> None:
        self._sel.unregister(fd)

    def _pass_input(self, fd: int) -> None:
        if not self.term.pass_input():
            self._sel.unregister(fd)

    def _drain_signals(self, fd: int) -> None:
        assert self._signals is not None
        for sig in self._signals.read():
            self._on_signal(sig)

    def _on_signal(self, sig: int) -> None:
        if sig == signal.SIGCHLD:
            return  # reaping happens once per loop turn
        if sig == signal.SIGWINCH:
            self.term.resized()
            return
        if sig == signal.SIGTSTP:
            # The child's group is orphaned (its own session): the kernel would discard a
            # SIGTSTP, so stop it with SIGSTOP; SIGCONT (fg) continues both.
            self._signal_child_group(signal.SIGSTOP)
            os.kill(os.getpid(), signal.SIGSTOP)
            return
        if sig == signal.SIGCONT:
            self._signal_child_group(signal.SIGCONT)
            return
        self.event(EventKind.SIGNAL_RECEIVED, pid=os.getpid(), signal=sig, name=signal_name(sig))
        if sig not in STOP_SIGNALS:
            self._forward(sig)
            return
        request = self._pending_stop_request() if sig == signal.SIGTERM else None
        self._ask_stop(request or StopRequest.from_signal(sig))

    def _pending_stop_request(self) -> StopRequest | None:
        """A stop asked for by `ocrtrain stop` (journal event + SIGTERM to us)."""
        events = self.journal.events(
            self.run_id, after_seq=self._last_stop_seq, kinds=[EventKind.STOP_REQUESTED]
        )
        if not events:
            return None
        self._last_stop_seq = events[-1].seq
        grace = events[-1].detail.get("grace")
        return StopRequest(
            source=str(events[-1].detail.get("source", "ocrtrain stop")),
            force=any(bool(e.detail.get("force")) for e in events),
            grace=float(grace) if grace is not None else None,
        )

    def _ask_stop(self, request: StopRequest) -> None:
        assert self.child is not None
        step = self.stop.ask(
            request,
            time.monotonic(),
            child_running=self.child.running,
            killing=self.teardown is None or self.teardown.escalated,
        )
        if step is StopStep.SIGNAL:
            self._forward(request.signal)
            self.journal.transition(
                self.run_id, RunState.STOPPING, only_from=[RunState.RUNNING, RunState.STARTING]
            )
        elif step is StopStep.KILL:
            self._kill_now()

    def _check_deadlines(self, now: float) -> None:
        """While the main child runs: the end of a stop's grace, the limits, the samples."""
        if self.stop.expire(now) is StopStep.KILL:
            self._kill_now()
        breach = timeout_breach(self.spec, now - self._started_mono)
        if self.sampler.due(now):
            sample = self._sample(now)
            try:
                self.journal.add_sample(sample)
            except Exception:
                log.exception("run %s: could not store a resource sample", self.run_id)
            breach = breach or memory_breach(self.spec, sample)
        if breach is not None and self.stop.request is None:
            self.event(EventKind.LIMIT_EXCEEDED, limit=breach.limit, reason=breach.reason)
            log.warning("run %s: %s; stopping it", self.run_id, breach.reason)
            reason = f"stopped: {breach.reason}"
            self._ask_stop(StopRequest(source=f"limit {breach.limit}", reason=reason))

    def _sample(self, now: float) -> SampleRecord:
        """The run's resource use now, and each of its ranks' (those it recorded)."""
        members = find_members(self.run_id, **self._membership())
        try:
            ranks = self.journal.ranks(self.run_id)
        except Exception:
            log.exception("run %s: could not read its ranks", self.run_id)
            ranks = []
        return self.sampler.take(members, now, ranks, ranks_dir(self.record.run_dir))

    def _forward(self, sig: int) -> None:
        """Pass a signal on the way a terminal would: SIGINT to the child's process group (the
        child and the workers it forked, as Ctrl+C does), every other signal to the child."""
        if self.child is None or not self.child.running:
            return
        try:
            # The child is our own unreaped child: its pid (and so its pgid) cannot be reused.
            if sig == signal.SIGINT:
                os.killpg(self.child.pid, sig)
            else:
                os.kill(self.child.pid, sig)
        except ProcessLookupError:
            return
        target = "child process group" if sig == signal.SIGINT else "child"
        self.event(EventKind.SIGNAL_SENT, pid=self.child.pid, signal=sig, to=target)

    def _signal_child_group(self, sig: int) -> None:
        if self.child is None or not self.child.running:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child.pid, sig)

    def _kill_now(self) -> None:
        """SIGKILL the whole run now (child included); later stragglers get no grace either."""
        log.warning("run %s: %s; killing every process of the run", self.run_id, self.stop.kill_why)
        teardown = self._make_teardown(grace=0.0)
        teardown.begin()
        if self.child is not None and not self.child.running:
            self.teardown = teardown  # replaces a teardown still inside its grace

    def _membership(self) -> dict[str, Any]:
        """Who belongs to the run, as find_members and Teardown take it."""
        return {
            "sid": self.child.pid if self.child else None,
            "sid_until": self.child.reaped_at if self.child else None,
            "cgroup": self.cgroup,
            "root_pid": os.getpid(),
            "exclude": [self.watchdog.pid] if self.watchdog else [],
        }

    def _make_teardown(self, grace: float) -> Teardown:
        return Teardown(
            self.run_id, grace=grace, on_event=self.event, reap=self._reap, **self._membership()
        )

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.child is not None and pid == self.child.pid:
                self.child.reaped(status)
                code, sig = exit_status(status)
                self.event(EventKind.CHILD_EXITED, pid=pid, signal=sig, exit_code=code)
            elif self.watchdog is not None and pid == self.watchdog.pid:
                self.event(EventKind.WATCHDOG_LOST, pid=pid, status=status)
                if self.child is None or self.child.running:
                    self._restart_watchdog()
            else:
                self.event(EventKind.REAPED, pid=pid, status=status)

    def _restart_watchdog(self) -> None:
        self._start_watchdog()
        assert self.watchdog is not None
        if self.child is not None:
            self.watchdog.tell_child(self.child.pid, self.child.start or 0)
        self.journal.update_run(
            self.run_id, watchdog_pid=self.watchdog.pid, watchdog_start=self.watchdog.start
        )

    # -- the end --------------------------------------------------------------------------

    def _finish_run(self, child: MainChild) -> int:
        code, sig = exit_status(child.status if child.status is not None else 0)
        if self.stop.request is not None:
            state = RunState.STOPPED
        elif code == 0:
            state = RunState.SUCCEEDED
        else:
            state = RunState.FAILED
        reason = self.stop.reason or (
            f"killed by {signal_name(sig)}" if sig is not None else f"exit code {code}"
        )
        self._finish(code, sig, state, reason)
        return code

    def _finish(self, code: int, sig: int | None, state: RunState, reason: str) -> None:
        result = self.teardown.result if self.teardown is not None else None
        self.journal.transition(
            self.run_id,
            state,
            EventKind.FINISHED,
            only_from=ACTIVE_STATES,
            detail={
                "state": str(state),
                "exit_code": code,
                "signal": sig,
                "reason": reason,
                "survivors": result.survivors if result else {},
                "log_bytes": self.output.log.bytes_written if self.output else 0,
                "terminal_bytes_dropped": self.output.terminal_bytes_dropped if self.output else 0,
                "supervisor_peak_rss": _peak_rss(),
            },
            exit_code=code,
            exit_signal=sig,
            reason=reason,
        )
        if result is not None and result.survivors:
            log.warning("run %s: processes survived teardown: %s", self.run_id, result.survivors)

    def _emergency_teardown(self, exc: BaseException) -> None:
        log.error("run %s: supervisor error %r; killing the run", self.run_id, exc)
        with contextlib.suppress(Exception):
            self._make_teardown(grace=0.0).run()
            self._reap()
        with contextlib.suppress(Exception):
            self.journal.transition(
                self.run_id,
                RunState.FAILED,
                EventKind.FINISHED,
                only_from=ACTIVE_STATES,
                detail={"state": "failed", "reason": f"supervisor error: {exc!r}"},
                reason=f"supervisor error: {exc!r}",
            )

    def _cleanup(self) -> None:
        if self.output is not None:
            self.output.close()
        if self.watchdog is not None:
            self.watchdog.release()
            _reap_within(self.watchdog.pid, 2.0)
        if self.cgroup is not None:
            self.cgroup.remove()
        with contextlib.suppress(Exception):  # a tidy-up, never a reason to fail the run
            remove_run_leftovers(self.journal.home, self.run_id, None)
        self._sel.close()
        if self._signals is not None:
            self._signals.close()


def _reap_within(pid: int, timeout: float) -> None:
    """Reap our child `pid` if it exits within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            return
        if done:
            return
        time.sleep(0.01)


def _peak_rss() -> int | None:
    """This process's peak RSS in bytes since its exec (VmHWM; ru_maxrss would include the
    memory of the process we were forked from)."""
    try:
        with open("/proc/self/status", "rb") as f:
            for line in f:
                if line.startswith(b"VmHWM:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def run_foreground(spec: RunSpec, journal: Journal) -> tuple[str, int]:
    """Supervise `spec` in this process (the `ocrtrain run` CLI). Returns (run id, exit status).

    Raises:
        SpawnError: the command could not be started (exit 127 / 126).
        UsageError: `--max-runs` reached.
    """
    record = create_run(journal, spec)
    sup = Supervisor(journal, record, spec)
    return record.id, sup.run()


def supervise_recorded(home: Path, run_id: str, env: dict[str, str] | None = None) -> int:
    """Run a journal-recorded run in this (detached) process; the body of `--detach`."""
    journal = Journal(home)
    record = journal.get_run(run_id)
    if record is None:
        raise UsageError(f"no run {run_id!r} in the journal")
    spec = RunSpec(
        argv=tuple(record.argv),
        name=record.name,
        grace=record.grace,
        cwd=record.cwd,
        env=env or {},
        detach=True,
        max_memory=record.limits.get("max_memory"),
        timeout=record.limits.get("timeout"),
    )
    sup = Supervisor(journal, record, spec, stdout_fd=None, stderr_fd=None, stdin_fd=None)
    try:
        return sup.run()
    except SpawnError as exc:
        return exc.exit_code
