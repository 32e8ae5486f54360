"""The watchdog: a small process in its own session that outlives a SIGKILLed supervisor.

The supervisor holds the write end of a pipe whose read end only the watchdog has (the run's
processes never inherit it). A supervisor that ends normally writes `done` first; when the pipe
closes without it, the supervisor was killed, and the watchdog ends every process of the run at
once (cgroup, session, run id; no grace: nobody is left to forward output or signals), removes
what the run left (its cgroup, recorded temp folders), then closes the run in the journal as
`lost`.

Run as `python -m ocrtrain.procman.watchdog --run-id ID --fd N --home DIR [--cgroup PATH]`.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrtrain.procman import procfs
from ocrtrain.procman.cgroup import RunCgroup
from ocrtrain.procman.envnames import RUN_DIR_ENV, RUN_ID_ENV, WATCHDOG_ENV
from ocrtrain.procman.journal import ACTIVE_STATES, EventKind, Journal, RunState
from ocrtrain.procman.leftovers import remove_run_leftovers
from ocrtrain.procman.teardown import Teardown

log = logging.getLogger(__name__)


@dataclass
class WatchdogLink:
    """The supervisor's end of the link to its watchdog."""

    pid: int
    start: int
    fd: int
    popen: subprocess.Popen[bytes]

    @classmethod
    def launch(cls, home: Path, run_id: str, cgroup: RunCgroup | None) -> WatchdogLink:
        """Start a watchdog for `run_id` in its own session."""
        read_end, write_end = os.pipe()  # close-on-exec: the run never inherits them
        env = {k: v for k, v in os.environ.items() if k not in (RUN_ID_ENV, RUN_DIR_ENV)}
        env[WATCHDOG_ENV] = run_id
        argv = [
            sys.executable,
            "-m",
            "ocrtrain.procman.watchdog",
            "--run-id",
            run_id,
            "--fd",
            str(read_end),
            "--home",
            str(home),
            "--supervisor",
            str(os.getpid()),
        ]
        if cgroup is not None:
            argv += ["--cgroup", str(cgroup.path)]
        try:
            popen = subprocess.Popen(
                argv,
                pass_fds=(read_end,),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                env=env,
            )
        finally:
            os.close(read_end)
        st = procfs.read_stat(popen.pid)
        return cls(popen.pid, st.start if st else 0, write_end, popen)

    def tell_child(self, pid: int, start: int) -> None:
        """Tell the watchdog the main child's identity (its session id)."""
        with contextlib.suppress(OSError):
            os.write(self.fd, f"child {pid} {start}\n".encode())

    def release(self) -> None:
        """The run ended normally: tell the watchdog to exit without acting."""
        with contextlib.suppress(OSError):
            os.write(self.fd, b"done\n")
        with contextlib.suppress(OSError):
            os.close(self.fd)
        self.popen.returncode = 0  # reaped by the supervisor's own waitpid loop


def _read_until_eof(fd: int) -> tuple[bool, int | None]:
    """Block until the supervisor closes the pipe; (said done, child pid)."""
    buf = b""
    child: int | None = None
    while True:
        try:
            chunk = os.read(fd, 4096)
        except InterruptedError:
            continue
        except OSError:
            chunk = b""
        if not chunk:
            break
        buf += chunk
        *lines, buf = buf.split(b"\n")
        for line in lines:
            parts = line.split()
            if parts[:1] == [b"done"]:
                return True, child
            if parts[:1] == [b"child"] and len(parts) >= 2:
                child = int(parts[1])
    return False, child


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ocrtrain-watchdog")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--fd", type=int, required=True)
    parser.add_argument("--home", required=True)
    parser.add_argument("--supervisor", type=int, required=True)
    parser.add_argument("--cgroup")
    args = parser.parse_args(argv)
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTSTP):
        signal.signal(sig, signal.SIG_IGN)

    done, child = _read_until_eof(args.fd)
    if done:
        return 0

    lost_at = time.time()
    # The child dies of its parent-death signal only now: whatever leads session `child`
    # from here on started before this moment or is not the run's.
    lost_ticks = procfs.now_ticks()
    events: list[tuple[Any, dict[str, Any]]] = []

    def record(kind: Any, **fields: Any) -> None:
        events.append((kind, fields))

    cgroup = RunCgroup(Path(args.cgroup)) if args.cgroup else None
    teardown = Teardown(
        args.run_id,
        grace=0.0,
        sid=child,
        sid_until=lost_ticks,
        cgroup=cgroup,
        exclude=[os.getpid(), args.supervisor],
        on_event=record,
    )
    result = teardown.run()
    if not result.survivors:
        remove_run_leftovers(Path(args.home), args.run_id, args.cgroup)

    journal = Journal(Path(args.home))
    journal.add_event(
        args.run_id, EventKind.SUPERVISOR_LOST, pid=args.supervisor, detected_at=lost_at
    )
    for kind, fields in events:
        pid = fields.pop("pid", None)
        sig = fields.pop("signal", None)
        journal.add_event(args.run_id, kind, pid=pid, signal=sig, source="watchdog", **fields)
    n = len(set(result.killed))
    reason = f"supervisor (pid {args.supervisor}) was killed; the watchdog ended {n} process(es)"
    if result.survivors:
        reason += f"; {len(result.survivors)} survived"
    journal.transition(
        args.run_id,
        RunState.LOST,
        EventKind.FINISHED,
        only_from=ACTIVE_STATES,
        detail={"state": "lost", "reason": reason, "survivors": result.survivors},
        reason=reason,
        exit_signal=signal.SIGKILL,
    )
    journal.close()
    return 1 if result.survivors else 0


if __name__ == "__main__":
    sys.exit(main())
