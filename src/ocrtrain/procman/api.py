"""Starting, stopping and inspecting runs: the verbs of the core's public face
(`ocrtrain.procman` exports them). Everything here imports only the standard library and psutil.

Example:
    >>> from ocrtrain.procman import RunSpec, start
    >>> handle = start(RunSpec(argv=("python", "-c", "print('hi')"), name="demo"))
    >>> handle.wait(timeout=30).state
    <RunState.SUCCEEDED: 'succeeded'>
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from ocrtrain.procman.errors import OcrtrainError, UsageError
from ocrtrain.procman.journal import (
    ACTIVE_STATES,
    FINAL_STATES,
    EventKind,
    EventRecord,
    Journal,
    RunRecord,
    RunState,
)
from ocrtrain.procman.liveness import reconcile, supervisor_alive
from ocrtrain.procman.membership import Member, ProcessTable, members, run_scope
from ocrtrain.procman.spec import RunSpec
from ocrtrain.procman.supervisor import create_run, run_foreground
from ocrtrain.procman.teardown import Teardown, TeardownResult, signal_identity

__all__ = ["RunHandle", "request_stop", "run_foreground", "run_processes", "start"]

DETACH_START_TIMEOUT_S = 30.0


def run_processes(run: RunRecord) -> dict[int, Member]:
    """The live processes of a run (not its supervisor or watchdog), and why each is one."""
    table = ProcessTable.scan()
    return members(table, run_scope(run, table))


class RunHandle:
    """A run started through the API (or looked up by id)."""

    def __init__(self, journal: Journal, run_id: str) -> None:
        self.journal = journal
        self.id = run_id

    def record(self) -> RunRecord:
        """The run's current journal record."""
        rec = self.journal.get_run(self.id)
        if rec is None:  # pragma: no cover - runs are never deleted
            raise OcrtrainError(f"run {self.id} vanished from the journal")
        return rec

    def poll(self) -> RunRecord | None:
        """The final record once the run has ended, else None."""
        rec = self.record()
        return rec if rec.state in FINAL_STATES else None

    def wait(self, timeout: float | None = None) -> RunRecord:
        """Block until the run has ended.

        Raises:
            TimeoutError: it did not end within `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.01
        while True:
            rec = self.poll()
            if rec is not None:
                return rec
            if deadline is not None and time.monotonic() >= deadline:
                raise TimeoutError(f"run {self.id} still {self.record().state} after {timeout} s")
            if delay >= 0.2:
                reconcile(self.journal)  # a supervisor killed with its watchdog ends up lost
            time.sleep(delay)
            delay = min(delay * 2, 0.25)

    def stop(self, grace: float | None = None, force: bool = False) -> None:
        """Ask the run to stop (SIGTERM, then SIGKILL after the grace), or kill it (`force`)."""
        request_stop(self.journal, self.record(), grace=grace, force=force, source="api")

    def pids(self) -> list[int]:
        """pids of the run's live processes, supervisor included."""
        rec = self.record()
        pids = set(run_processes(rec))
        if rec.supervisor_pid and supervisor_alive(rec):
            pids.add(rec.supervisor_pid)
        return sorted(pids)

    def events(self) -> list[EventRecord]:
        return self.journal.events(self.id)


def start(spec: RunSpec, journal: Journal | None = None) -> RunHandle:
    """Start `spec` as a detached run and return once its command has been started (or has
    failed to start, which the record then says).

    Raises:
        UsageError: bad spec, unwritable home, `--max-runs` reached.
        OcrtrainError: the supervisor could not be started.
    """
    journal = journal or Journal()
    record = create_run(journal, spec)
    env = dict(os.environ)
    env.update(spec.env)
    log_path = Path(record.run_dir) / "supervisor.log"
    with open(log_path, "ab") as log_file:
        launcher = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ocrtrain.procman.detached",
                "--home",
                str(journal.home),
                "--run-id",
                record.id,
            ],
            start_new_session=True,
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=log_file,
            env=env,
            cwd=record.cwd,
        )
    launcher.wait()
    handle = RunHandle(journal, record.id)
    deadline = time.monotonic() + DETACH_START_TIMEOUT_S
    delay = 0.005
    while handle.record().state == RunState.STARTING:
        if time.monotonic() >= deadline:
            raise OcrtrainError(
                f"run {record.id}: the supervisor did not start within "
                f"{DETACH_START_TIMEOUT_S:g} s (see {log_path})"
            )
        time.sleep(delay)
        delay = min(delay * 2, 0.1)
    return handle


def request_stop(
    journal: Journal,
    run: RunRecord,
    grace: float | None = None,
    force: bool = False,
    source: str = "ocrtrain stop",
) -> TeardownResult | None:
    """Stop a run from anywhere.

    A live supervisor gets the request through the journal plus a SIGTERM, and tears the run
    down itself (so its journal stays the one story of the run). With `force`, this process
    also SIGKILLs the run's processes at once, in case the supervisor is stuck. A run whose
    supervisor is gone is torn down here directly and closed as `lost`.

    Returns:
        The teardown this process performed, if it did one.

    Raises:
        UsageError: the run has already ended.
    """
    if run.state in FINAL_STATES:
        raise UsageError(f"run {run.id} has already ended ({run.state})")
    if grace is not None and grace < 0:
        raise UsageError(f"--grace must be non-negative, got {grace}")
    journal.add_event(
        run.id, EventKind.STOP_REQUESTED, pid=os.getpid(), force=force, grace=grace, source=source
    )
    if supervisor_alive(run) and run.supervisor_pid and run.supervisor_start is not None:
        signal_identity(run.supervisor_pid, run.supervisor_start, signal.SIGTERM)
        if not force:
            return None
    scope = run_scope(run, ProcessTable.scan(with_env=False))  # the identities only

    def record(
        kind: EventKind, pid: int | None = None, signal: int | None = None, **kw: object
    ) -> None:
        journal.add_event(run.id, kind, pid=pid, signal=signal, source=source, **kw)

    teardown = Teardown(
        run.id,
        grace=0.0 if force else (run.grace if grace is None else grace),
        sid=scope.sid,
        cgroup=scope.cgroup,
        exclude=scope.exclude,
        on_event=record,
    )
    result = teardown.run()
    if not supervisor_alive(run):
        ended = len(set(result.signalled + result.killed))
        reason = f"supervisor gone; {source} ended {ended} process(es)"
        journal.transition(
            run.id,
            RunState.LOST,
            EventKind.FINISHED,
            only_from=ACTIVE_STATES,
            detail={"reason": reason, "survivors": result.survivors},
            reason=reason,
        )
    return result
