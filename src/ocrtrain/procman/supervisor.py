"""The supervisor: starts one command as a run and guarantees that no process of it survives.

It reads straight through, like tini's main: set up signals (collected synchronously through a
wakeup pipe, never acted on in handlers), become a child subreaper, start the watchdog, spawn
the child in its own session (and cgroup, and with a parent-death signal), then loop: forward
signals, fan output out, reap zombies, sample resources, enforce limits. Once the main child
has exited, every remaining process of the run gets SIGTERM, then SIGKILL after the grace, and
is reaped. The exit status is the child's, or 128+N when it died of signal N.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import getpass
import logging
import os
import pty
import selectors
import signal
import socket
import subprocess
import sys
import termios
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ocrtrain.procman import procfs
from ocrtrain.procman.cgroup import CgroupUnavailable, RunCgroup
from ocrtrain.procman.errors import SpawnError, UsageError
from ocrtrain.procman.handoff import RUN_DIR_ENV, RUN_ID_ENV
from ocrtrain.procman.home import HOME_ENV, runs_dir
from ocrtrain.procman.journal import (
    ACTIVE_STATES,
    EventKind,
    Journal,
    RunRecord,
    RunState,
    SampleRecord,
    new_run_id,
)
from ocrtrain.procman.lifeline import become_subreaper, set_parent_death_signal
from ocrtrain.procman.output import LogFile, TerminalSink
from ocrtrain.procman.resources import gpu_memory_by_pid
from ocrtrain.procman.spec import RunSpec
from ocrtrain.procman.teardown import Teardown, find_members
from ocrtrain.procman.watchdog import WatchdogLink

log = logging.getLogger(__name__)

FORWARDED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2)
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
HANDLED = (*FORWARDED, signal.SIGCHLD, signal.SIGWINCH, signal.SIGTSTP, signal.SIGCONT)
READ_CHUNK = 65536


def signal_name(sig: int) -> str:
    try:
        return signal.Signals(sig).name
    except ValueError:
        return f"signal {sig}"


def exit_status(wait_status: int) -> tuple[int, int | None]:
    """(shell-style exit code, signal number or None) from a waitpid status."""
    if os.WIFSIGNALED(wait_status):
        sig = os.WTERMSIG(wait_status)
        return 128 + sig, sig
    return os.waitstatus_to_exitcode(wait_status), None


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


@dataclass
class _StopRequest:
    force: bool = False
    grace: float | None = None
    source: str = "signal"


@dataclass
class _Sampler:
    last_ts: float = 0.0
    last_cpu_ticks: dict[tuple[int, int], int] = field(default_factory=dict)


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
        self.stdout_fd = stdout_fd
        self.stderr_fd = stderr_fd
        self.stdin_fd = stdin_fd
        self.use_pty = stdout_fd is not None and os.isatty(stdout_fd)
        self.forward_stdin = self.use_pty and stdin_fd is not None and os.isatty(stdin_fd)
        self.child_pid: int | None = None
        self.child_start: int | None = None
        self.child_status: int | None = None
        self.child_reaped_at: int | None = None  # clock ticks since boot
        self.cgroup: RunCgroup | None = None
        self.tiers: dict[str, Any] = {}
        self.stop: _StopRequest | None = None
        self.stop_deadline: float | None = None
        self.stop_reason: str | None = None
        self.kill_all = False
        self.teardown: Teardown | None = None
        self.watchdog: WatchdogLink | None = None
        self._sel = selectors.DefaultSelector()
        self._wake_r = -1
        self._wake_w = -1
        self._old_handlers: dict[int, Any] = {}
        self._old_wakeup = -1
        self._outputs: dict[int, tuple[TerminalSink | None, str]] = {}
        self._master_fd: int | None = None
        self._sinks: list[TerminalSink] = []
        self._logfile: LogFile | None = None
        self._sampler = _Sampler()
        self._last_stop_seq = 0
        self._started_mono = time.monotonic()
        self._popen: subprocess.Popen[bytes] | None = None

    # -- events ---------------------------------------------------------------------------

    def event(
        self, kind: EventKind, pid: int | None = None, signal: int | None = None, **detail: Any
    ) -> None:
        try:
            self.journal.add_event(self.run_id, kind, pid=pid, signal=signal, **detail)
        except Exception:  # the journal must never take the run down
            log.exception("run %s: could not record %s", self.run_id, kind)

    # -- setup ----------------------------------------------------------------------------

    def _install_signals(self) -> None:
        # os.pipe() fds are close-on-exec (PEP 446); pipe2 would be Linux-only.
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._old_wakeup = signal.set_wakeup_fd(self._wake_w, warn_on_full_buffer=False)
        for sig in HANDLED:
            self._old_handlers[sig] = signal.signal(sig, _noop_handler)
        # Reading the terminal from the background must fail (EIO), not stop the supervisor.
        self._old_handlers[signal.SIGTTIN] = signal.signal(signal.SIGTTIN, signal.SIG_IGN)
        self._old_handlers[signal.SIGTTOU] = signal.signal(signal.SIGTTOU, signal.SIG_IGN)
        self._sel.register(self._wake_r, selectors.EVENT_READ, "signals")

    def _restore_signals(self) -> None:
        for sig, handler in self._old_handlers.items():
            with contextlib.suppress(ValueError, TypeError):
                signal.signal(sig, handler)
        with contextlib.suppress(ValueError):
            signal.set_wakeup_fd(self._old_wakeup)

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

    def _child_env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.update(self.spec.env)
        env[RUN_ID_ENV] = self.run_id
        env[RUN_DIR_ENV] = self.record.run_dir
        env[HOME_ENV] = str(self.journal.home)
        env["OCRTRAIN_SUPERVISOR_PID"] = str(os.getpid())
        return env

    def _spawn(self) -> None:
        parent = os.getpid()
        cgroup = self.cgroup
        use_pty = self.use_pty

        def in_child() -> None:
            # Runs in the child between fork and exec (start_new_session already ran setsid).
            if cgroup is not None:
                cgroup.add_self()  # a failure aborts this spawn; it is retried without cgroup
            set_parent_death_signal(signal.SIGKILL, expected_parent=parent)
            if use_pty:
                fcntl.ioctl(1, termios.TIOCSCTTY, 0)
            for sig in (signal.SIGTTIN, signal.SIGTTOU):
                signal.signal(sig, signal.SIG_DFL)

        stdin: int | None = None
        if self.use_pty:
            master, slave = pty.openpty()
            self._copy_winsize(master_slave=slave)
            if self.forward_stdin:
                attrs = termios.tcgetattr(slave)
                attrs[3] &= ~termios.ECHO  # the user's terminal already echoes what they type
                termios.tcsetattr(slave, termios.TCSANOW, attrs)
                stdin = slave
            stdout = stderr = slave
        else:
            out_r, out_w = os.pipe()  # close-on-exec; Popen dup2()s the write ends
            err_r, err_w = os.pipe()
            stdout, stderr = out_w, err_w
            if self.stdin_fd is None:
                stdin = subprocess.DEVNULL
        try:
            try:
                self._popen = self._popen_child(stdin, stdout, stderr, in_child)
            except subprocess.SubprocessError:
                # The child could not join the run cgroup (e.g. no write access to
                # cgroup.procs): run without that tier rather than not at all.
                assert cgroup is not None
                cgroup.remove()
                self.cgroup = cgroup = None
                self.tiers["cgroup"] = False
                self.tiers["cgroup_reason"] = "the command could not join the run cgroup"
                self._popen = self._popen_child(stdin, stdout, stderr, in_child)
        except FileNotFoundError as exc:
            self._close_spawn_fds(use_pty, locals())
            raise SpawnError(f"command not found: {self.spec.argv[0]}", 127) from exc
        except PermissionError as exc:
            self._close_spawn_fds(use_pty, locals())
            raise SpawnError(f"command not executable: {self.spec.argv[0]}", 126) from exc
        except OSError as exc:
            self._close_spawn_fds(use_pty, locals())
            raise SpawnError(f"cannot execute {self.spec.argv[0]}: {exc.strerror}", 126) from exc
        self.child_pid = self._popen.pid
        st = procfs.read_stat(self.child_pid)
        self.child_start = st.start if st else None
        if self.use_pty:
            os.close(slave)
            self._master_fd = master
            sink = self._make_sink(self.stdout_fd, "stdout")
            self._register_output(master, sink, "pty")
            if self.forward_stdin and self.stdin_fd is not None:
                self._sel.register(self.stdin_fd, selectors.EVENT_READ, "stdin")
        else:
            os.close(out_w)
            os.close(err_w)
            self._register_output(out_r, self._make_sink(self.stdout_fd, "stdout"), "stdout")
            self._register_output(err_r, self._make_sink(self.stderr_fd, "stderr"), "stderr")

    def _popen_child(
        self, stdin: int | None, stdout: int, stderr: int, in_child: Callable[[], None]
    ) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            list(self.spec.argv),
            cwd=self.record.cwd,
            env=self._child_env(),
            stdin=stdin,
            stdout=stdout,
            stderr=stderr,
            start_new_session=True,
            preexec_fn=in_child,  # noqa: PLW1509 (single-threaded at this point)
        )

    @staticmethod
    def _close_spawn_fds(use_pty: bool, scope: dict[str, Any]) -> None:
        names = ("master", "slave") if use_pty else ("out_r", "out_w", "err_r", "err_w")
        for name in names:
            fd = scope.get(name)
            if isinstance(fd, int):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _make_sink(self, fd: int | None, name: str) -> TerminalSink | None:
        if fd is None:
            return None
        sink = TerminalSink(fd, name=name)
        self._sinks.append(sink)
        return sink

    def _register_output(self, fd: int, sink: TerminalSink | None, stream: str) -> None:
        os.set_blocking(fd, False)
        self._outputs[fd] = (sink, stream)
        self._sel.register(fd, selectors.EVENT_READ, "output")

    def _copy_winsize(self, master_slave: int | None = None) -> None:
        target = master_slave if master_slave is not None else self._master_fd
        if target is None or self.stdout_fd is None:
            return
        try:
            size = fcntl.ioctl(self.stdout_fd, termios.TIOCGWINSZ, b"\0" * 8)
            fcntl.ioctl(target, termios.TIOCSWINSZ, size)
        except OSError:
            pass

    # -- the loop -------------------------------------------------------------------------

    def run(self) -> int:
        """Supervise the run to its end; returns the exit status to report.

        Raises:
            SpawnError: the command could not be started (after recording it in the journal).
        """
        self._install_signals()
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

    def _run(self) -> int:
        self._setup_tiers()
        sup = procfs.read_stat(os.getpid())
        self.watchdog = WatchdogLink.launch(self.journal.home, self.run_id, self.cgroup)
        self.event(EventKind.WATCHDOG_STARTED, pid=self.watchdog.pid)
        self._logfile = LogFile(self.record.log_path)
        try:
            self._spawn()
        except SpawnError as exc:
            self.event(EventKind.SPAWN_FAILED, error=str(exc), exit_code=exc.exit_code)
            self._logfile.write(f"ocrtrain: {exc}\n".encode())
            self._finish(exc.exit_code, None, RunState.FAILED, str(exc))
            raise
        assert self.child_pid is not None
        self.watchdog.tell_child(self.child_pid, self.child_start or 0)
        self.journal.transition(
            self.run_id,
            RunState.RUNNING,
            EventKind.STARTED,
            only_from=[RunState.STARTING],
            detail={"pid": self.child_pid, "tiers": self.tiers},
            supervisor_pid=os.getpid(),
            supervisor_start=sup.start if sup else None,
            child_pid=self.child_pid,
            child_start=self.child_start,
            pgid=self.child_pid,
            sid=self.child_pid,
            cgroup=str(self.cgroup.path) if self.cgroup else None,
            watchdog_pid=self.watchdog.pid,
            watchdog_start=self.watchdog.start,
            started_at=time.time(),
            tiers=self.tiers,
        )
        log.info("run %s: started pid %d: %s", self.run_id, self.child_pid, self.spec.argv)
        self._loop()
        code, sig = exit_status(self.child_status if self.child_status is not None else 0)
        if self.stop is not None:
            state = RunState.STOPPED
        elif code == 0:
            state = RunState.SUCCEEDED
        else:
            state = RunState.FAILED
        reason = self.stop_reason or (
            f"killed by {signal_name(sig)}" if sig is not None else f"exit code {code}"
        )
        self._finish(code, sig, state, reason)
        return code

    def _loop(self) -> None:
        while True:
            timeout = self._next_timeout()
            for key, _ in self._sel.select(timeout):
                if key.data == "signals":
                    self._drain_signals()
                elif key.data == "output":
                    self._read_output(int(key.fd))
                elif key.data == "stdin":
                    self._forward_stdin(int(key.fd))
            self._reap()
            now = time.monotonic()
            if self.child_status is None:
                if self.stop_deadline is not None and now >= self.stop_deadline:
                    self._escalate(f"grace of {self._stop_grace():g} s expired")
                self._sample_and_check_limits()
                continue
            if self.teardown is None:
                self._begin_teardown()
            assert self.teardown is not None
            if self.teardown.step():
                self._reap()  # the last members died after the step's own reap
                self._drain_outputs()
                return

    def _next_timeout(self) -> float:
        now = time.monotonic()
        candidates = [self._sampler.last_ts + self.spec.sample_interval - now]
        if self.stop_deadline is not None and self.child_status is None:
            candidates.append(self.stop_deadline - now)
        if self.spec.timeout is not None:
            candidates.append(self._started_mono + self.spec.timeout - now)
        if self.teardown is not None:
            candidates.append(min(0.05, self.teardown.deadline() - now))
        if self.child_status is not None and self.teardown is None:
            candidates.append(0.0)
        return max(0.0, min(candidates))

    # -- signals --------------------------------------------------------------------------

    def _drain_signals(self) -> None:
        try:
            data = os.read(self._wake_r, 4096)
        except BlockingIOError:
            return
        for sig in data:
            self._on_signal(sig)

    def _on_signal(self, sig: int) -> None:
        if sig == signal.SIGCHLD:
            return  # reaping happens once per loop turn
        if sig == signal.SIGWINCH:
            self._copy_winsize()  # the kernel sends SIGWINCH to the child's foreground group
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
        if request is None:
            request = _StopRequest(source=signal_name(sig))
        self._request_stop(request, sig)

    def _pending_stop_request(self) -> _StopRequest | None:
        """A stop asked for by `ocrtrain stop` (journal event + SIGTERM to us)."""
        events = self.journal.events(
            self.run_id, after_seq=self._last_stop_seq, kinds=[EventKind.STOP_REQUESTED]
        )
        if not events:
            return None
        self._last_stop_seq = events[-1].seq
        force = any(bool(e.detail.get("force")) for e in events)
        grace = events[-1].detail.get("grace")
        return _StopRequest(
            force=force,
            grace=float(grace) if grace is not None else None,
            source=str(events[-1].detail.get("source", "ocrtrain stop")),
        )

    def _request_stop(self, request: _StopRequest, sig: int) -> None:
        if self.child_status is not None:
            if request.force and self.teardown is not None and not self.teardown.escalated:
                self._escalate(f"forced by {request.source}")
            return
        already = self.stop is not None
        if self.stop is None:
            self.stop = request
            self.stop_reason = f"stopped by {request.source}"
        if request.force:
            self.stop_reason = f"killed by {request.source} (force)"
            self._escalate(f"forced by {request.source}")
            return
        if already:
            if request.source.startswith("SIG"):
                # A second Ctrl+C (or SIGTERM/SIGHUP) while stopping: the user means now.
                self._escalate(f"second {signal_name(sig)} while stopping")
            return
        self._forward(sig)
        self.stop_deadline = time.monotonic() + self._stop_grace()
        self.journal.transition(
            self.run_id, RunState.STOPPING, only_from=[RunState.RUNNING, RunState.STARTING]
        )

    def _stop_grace(self) -> float:
        if self.stop is not None and self.stop.grace is not None:
            return self.stop.grace
        return self.spec.grace

    def _forward(self, sig: int) -> None:
        """Pass a signal on the way a terminal would: SIGINT to the child's process group (the
        child and the workers it forked, as Ctrl+C does), every other signal to the child."""
        if self.child_pid is None or self.child_status is not None:
            return
        try:
            # The child is our own unreaped child: its pid (and so its pgid) cannot be reused.
            if sig == signal.SIGINT:
                os.killpg(self.child_pid, sig)
            else:
                os.kill(self.child_pid, sig)
        except ProcessLookupError:
            return
        target = "child process group" if sig == signal.SIGINT else "child"
        self.event(EventKind.SIGNAL_SENT, pid=self.child_pid, signal=sig, to=target)

    def _signal_child_group(self, sig: int) -> None:
        if self.child_pid is None or self.child_status is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(self.child_pid, sig)

    def _escalate(self, why: str) -> None:
        """SIGKILL the whole run now (child included); later stragglers get no grace either."""
        self.stop_deadline = None
        self.kill_all = True
        if self.stop_reason is None or "force" not in self.stop_reason:
            self.stop_reason = (self.stop_reason or "stopped") + f"; SIGKILL after {why}"
        log.warning("run %s: %s; killing every process of the run", self.run_id, why)
        teardown = self._make_teardown(grace=0.0)
        teardown.begin()
        if self.child_status is not None:
            self.teardown = teardown  # replaces a teardown still inside its grace

    # -- teardown ---------------------------------------------------------------------------

    def _make_teardown(self, grace: float) -> Teardown:
        exclude = [self.watchdog.pid] if self.watchdog else []
        return Teardown(
            self.run_id,
            grace=grace,
            sid=self.child_pid,
            sid_until=self.child_reaped_at,
            cgroup=self.cgroup,
            root_pid=os.getpid(),
            exclude=exclude,
            on_event=self.event,
            reap=self._reap,
        )

    def _begin_teardown(self) -> None:
        grace = 0.0 if self.kill_all else self._stop_grace()
        self.teardown = self._make_teardown(grace)
        self.teardown.begin()

    # -- reaping ----------------------------------------------------------------------------

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if pid == self.child_pid:
                self.child_status = status
                self.child_reaped_at = procfs.now_ticks()
                if self._popen is not None:
                    self._popen.returncode = exit_status(status)[0]
                code, sig = exit_status(status)
                self.event(EventKind.CHILD_EXITED, pid=pid, signal=sig, exit_code=code)
            elif self.watchdog is not None and pid == self.watchdog.pid:
                self.event(EventKind.WATCHDOG_LOST, pid=pid, status=status)
                if self.child_status is None:
                    self.watchdog = WatchdogLink.launch(self.journal.home, self.run_id, self.cgroup)
                    if self.child_pid is not None:
                        self.watchdog.tell_child(self.child_pid, self.child_start or 0)
                    self.event(EventKind.WATCHDOG_STARTED, pid=self.watchdog.pid)
                    self.journal.update_run(
                        self.run_id,
                        watchdog_pid=self.watchdog.pid,
                        watchdog_start=self.watchdog.start,
                    )
            else:
                self.event(EventKind.REAPED, pid=pid, status=status)

    # -- output ---------------------------------------------------------------------------

    def _read_output(self, fd: int) -> bool:
        """Read one chunk; returns False (and unregisters) at end of stream."""
        try:
            data = os.read(fd, READ_CHUNK)
        except BlockingIOError:
            return True
        except OSError as exc:
            if exc.errno != errno.EIO:  # EIO: the pty's last slave closed
                log.warning("reading run output failed: %s", exc)
            data = b""
        if not data:
            self._sel.unregister(fd)
            os.close(fd)
            del self._outputs[fd]
            return False
        assert self._logfile is not None
        self._logfile.write(data)
        sink, _ = self._outputs[fd]
        if sink is not None:
            sink.write(data)
        return True

    def _drain_outputs(self) -> None:
        """Read what is left once every process of the run is gone."""
        for fd in list(self._outputs):
            while fd in self._outputs and self._read_output(fd):
                pass

    def _forward_stdin(self, fd: int) -> None:
        try:
            data = os.read(fd, READ_CHUNK)
        except OSError:
            data = b""
        if not data or self._master_fd is None:
            self._sel.unregister(fd)
            return
        with contextlib.suppress(OSError):
            os.write(self._master_fd, data)

    # -- resources and limits -------------------------------------------------------------

    def _sample_and_check_limits(self) -> None:
        now = time.monotonic()
        if self.spec.timeout is not None and now - self._started_mono >= self.spec.timeout:
            self._limit_stop("timeout", f"ran longer than --timeout {self.spec.timeout:g} s")
        if now - self._sampler.last_ts < self.spec.sample_interval:
            return
        wall = now - self._sampler.last_ts if self._sampler.last_ts else 0.0
        self._sampler.last_ts = now
        members = find_members(
            self.run_id,
            sid=self.child_pid,
            sid_until=self.child_reaped_at,
            cgroup=self.cgroup,
            root_pid=os.getpid(),
            exclude=[self.watchdog.pid] if self.watchdog else [],
        )
        page = os.sysconf("SC_PAGE_SIZE")
        rss = sum(st.rss_pages for st in members.values()) * page
        ticks = {(st.pid, st.start): st.utime + st.stime for st in members.values()}
        cpu = 0.0
        if wall > 0:
            delta = sum(t - self._sampler.last_cpu_ticks.get(k, t) for k, t in ticks.items())
            cpu = 100.0 * delta / procfs.CLOCK_TICKS / wall
        self._sampler.last_cpu_ticks = ticks
        gpu = gpu_memory_by_pid()
        gpu_bytes = sum(gpu.get(pid, 0) for pid in members) if gpu is not None else None
        try:
            self.journal.add_sample(
                SampleRecord(self.run_id, time.time(), len(members), cpu, rss, gpu_bytes)
            )
        except Exception:
            log.exception("run %s: could not store a resource sample", self.run_id)
        if self.spec.max_memory is not None and rss > self.spec.max_memory:
            self._limit_stop(
                "max_memory",
                f"RSS {rss // 2**20} MiB exceeded --max-memory {self.spec.max_memory // 2**20} MiB",
            )

    def _limit_stop(self, limit: str, why: str) -> None:
        if self.stop is not None:
            return
        self.event(EventKind.LIMIT_EXCEEDED, limit=limit, reason=why)
        log.warning("run %s: %s; stopping it", self.run_id, why)
        self._request_stop(_StopRequest(source=f"limit {limit}"), signal.SIGTERM)
        self.stop_reason = f"stopped: {why}"

    # -- the end --------------------------------------------------------------------------

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
                "log_bytes": self._logfile.bytes_written if self._logfile else 0,
                "terminal_bytes_dropped": sum(sink.total_dropped for sink in self._sinks),
                "supervisor_peak_rss": _peak_rss(),
            },
            exit_code=code,
            exit_signal=sig,
            reason=reason,
        )
        if result is not None and result.survivors:
            log.warning("run %s: processes survived teardown: %s", self.run_id, result.survivors)

    def _cleanup(self) -> None:
        for sink in self._sinks:
            sink.close()
        if self._logfile is not None:
            self._logfile.close()
        for fd in list(self._outputs):
            with contextlib.suppress(OSError):
                os.close(fd)
        if self.watchdog is not None:
            self.watchdog.release()
            self._reap_watchdog()
        if self.cgroup is not None:
            self.cgroup.remove()
        self._sel.close()
        self._restore_signals()
        for fd in (self._wake_r, self._wake_w):
            with contextlib.suppress(OSError):
                os.close(fd)

    def _reap_watchdog(self) -> None:
        assert self.watchdog is not None
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            try:
                pid, _ = os.waitpid(self.watchdog.pid, os.WNOHANG)
            except ChildProcessError:
                return
            if pid:
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


def _noop_handler(signum: int, frame: object) -> None:
    """Signals are read from the wakeup pipe by the loop; the handler only has to exist."""
    del signum, frame


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
