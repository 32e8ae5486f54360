"""Shared test helpers: waiting on conditions, finding a run's processes, proving none remain."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

REPO = Path(__file__).resolve().parents[1]
WORKLOAD = REPO / "tests" / "fixtures" / "bin" / "workload.py"
T = TypeVar("T")


def wait_until(
    condition: Callable[[], T], timeout: float = 10.0, what: str = "", interval: float = 0.01
) -> T:
    """Poll `condition` until it returns something truthy; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what or condition}")
        time.sleep(interval)


def _environ(pid: int) -> list[bytes]:
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return []


def _state(pid: int) -> str | None:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0].decode()
    except (OSError, IndexError):
        return None


def tagged_pids(key: str, value: str | None = None) -> list[int]:
    """Live (non-zombie) processes whose environment has `key` (=`value`)."""
    needle = f"{key}=".encode() + (value.encode() if value is not None else b"")
    out = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        pid = int(name)
        env = _environ(pid)
        tagged = any(e == needle or (value is None and e.startswith(needle)) for e in env)
        if tagged and _state(pid) not in (None, "Z", "X"):
            out.append(pid)
    return out


def run_pids(run_id: str) -> list[int]:
    """Live processes carrying `OCRTRAIN_RUN_ID=run_id`."""
    return tagged_pids("OCRTRAIN_RUN_ID", run_id)


def alive(pids: Iterable[int]) -> list[int]:
    """Those of `pids` that are still running (zombies count as gone)."""
    return [p for p in pids if _state(p) not in (None, "Z", "X")]


def assert_gone_within(pids: Iterable[int], seconds: float, what: str = "processes") -> float:
    """Assert every pid is gone within `seconds`; returns how long it took."""
    pids = list(pids)
    t0 = time.monotonic()
    try:
        wait_until(lambda: not alive(pids), timeout=seconds, interval=0.005, what=what)
    except AssertionError:
        left = alive(pids)
        kill_all(left)
        raise AssertionError(f"{what}: {left} still alive {seconds} s later") from None
    return time.monotonic() - t0


def kill_all(pids: Iterable[int]) -> None:
    """Last-resort cleanup so that a failing test leaves nothing behind."""
    for pid in pids:
        try:
            os.kill(pid, 9)
        except (ProcessLookupError, PermissionError):
            pass


def read_ready(path: Path, timeout: float = 20.0) -> dict[str, Any]:
    """Wait for the workload's ready file and return its content."""
    wait_until(path.exists, timeout=timeout, what=f"{path.name} to appear")
    data: dict[str, Any] = json.loads(path.read_text())
    return data


def all_workload_pids(ready: dict[str, Any]) -> list[int]:
    return [ready["main"], *ready["workers"], *ready["extra"]]


def ocrtrain(
    *args: str, env: dict[str, str] | None = None, **kw: Any
) -> subprocess.CompletedProcess[str]:
    """Run the ocrtrain CLI to completion (no TTY, no stdin), capturing its output."""
    kw.setdefault("stdin", subprocess.DEVNULL)
    return subprocess.run(
        [sys.executable, "-m", "ocrtrain", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=kw.pop("timeout", 120),
        **kw,
    )


def ocrtrain_popen(*args: str, **kw: Any) -> subprocess.Popen[str]:
    """Start the ocrtrain CLI in the background (text pipes unless overridden)."""
    kw.setdefault("stdout", subprocess.PIPE)
    kw.setdefault("stderr", subprocess.PIPE)
    kw.setdefault("text", True)
    return subprocess.Popen([sys.executable, "-m", "ocrtrain", *args], **kw)


def workload_cmd(ready: Path, *flags: str) -> list[str]:
    return [sys.executable, str(WORKLOAD), "--ready", str(ready), *flags]
