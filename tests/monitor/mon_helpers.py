"""Helpers for the monitor tests: real processes, waits with deadlines, survivor checks."""

from __future__ import annotations

import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from helpers import ocrtrain, wait_until
from ocrtrain.procman import procfs
from ocrtrain.procman.api import RunHandle, start
from ocrtrain.procman.journal import Journal
from ocrtrain.procman.spec import RunSpec
from ocrtrain.procman.teardown import signal_identity

__all__ = ["ocrtrain", "wait_until"]  # re-exported: the monitor tests import them from here

BIN = Path(__file__).parent / "bin"
TRAINER = BIN / "trainer.py"
REPO = Path(__file__).resolve().parents[2]


Identity = tuple[int, int]  # (pid, start ticks)


def identity(pid: int) -> Identity:
    st = procfs.read_stat(pid)
    assert st is not None, f"pid {pid} is gone"
    return (pid, st.start)


def alive(ident: Identity) -> bool:
    return procfs.is_alive(*ident)


def assert_none_alive(idents: Iterable[Identity], timeout: float = 10.0) -> None:
    """Every process (by identity) must be gone within `timeout` (reaped or zombie)."""
    idents = list(idents)
    wait_until(
        lambda: not [i for i in idents if alive(i)],
        timeout,
        f"processes {[i for i in idents if alive(i)]} to end",
    )


def kill_all(idents: Iterable[Identity]) -> None:
    """Last-resort cleanup: SIGKILL whatever is still alive, by identity (pidfd)."""
    for pid, start_ticks in idents:
        signal_identity(pid, start_ticks, signal.SIGKILL)


def read_ready(path: Path, timeout: float = 20.0) -> dict[str, Any]:
    wait_until(path.exists, timeout, f"{path} to be written")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def trainer_argv(ready: Path, *flags: str) -> tuple[str, ...]:
    return (sys.executable, str(TRAINER), "--ready", str(ready), *flags)


def start_run(
    journal: Journal, tmp_path: Path, *flags: str, name: str = "t", **spec: Any
) -> tuple[RunHandle, dict[str, Any]]:
    """A real supervised, detached run of the stand-in trainer; returns once it is ready."""
    ready = tmp_path / f"ready-{time.monotonic_ns()}.json"
    handle = start(RunSpec(argv=trainer_argv(ready, *flags), name=name, **spec), journal)
    return handle, read_ready(ready)


def all_pids(info: dict[str, Any]) -> list[int]:
    out = [info["main"], *info["workers"]]
    for r in info.get("ranks", []):
        out += all_pids(r)
    return out


def crash_supervisor(journal: Journal, run_id: str) -> None:
    """SIGKILL a run's supervisor and watchdog without letting the watchdog react first."""
    rec = journal.get_run(run_id)
    assert rec is not None and rec.supervisor_pid and rec.watchdog_pid
    sup = (rec.supervisor_pid, rec.supervisor_start or 0)
    wd = (rec.watchdog_pid, rec.watchdog_start or 0)
    kill_sig(wd, signal.SIGSTOP)
    kill_sig(sup, signal.SIGKILL)
    kill_sig(wd, signal.SIGKILL)
    assert_none_alive([sup, wd])


def kill_sig(ident: Identity, sig: int) -> None:
    fd = os.pidfd_open(ident[0])
    try:
        assert procfs.is_alive(*ident)
        signal.pidfd_send_signal(fd, sig)
    finally:
        os.close(fd)


def run_of(doc: dict[str, Any], run_id: str) -> dict[str, Any]:
    runs = [r for r in doc["runs"] if r["id"] == run_id]
    assert len(runs) == 1, f"run {run_id} not in the snapshot"
    return runs[0]


def readable_monitor_script(dest: Path) -> Path:
    """A copy of `scripts/process_monitor.py` and the package sources it imports, in `dest`
    (world-readable), for a test that runs it as another user: that user may not be able to
    read the checkout (a clone in a mode-700 folder such as root's home)."""
    (dest / "scripts").mkdir(parents=True, exist_ok=True)
    script = shutil.copy(REPO / "scripts" / "process_monitor.py", dest / "scripts")
    shutil.copytree(
        REPO / "src" / "ocrtrain",
        dest / "src" / "ocrtrain",
        ignore=shutil.ignore_patterns("__pycache__", "static"),
        dirs_exist_ok=True,
    )
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)
    return Path(script)
