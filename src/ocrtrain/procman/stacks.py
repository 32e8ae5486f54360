"""Python stacks on demand: every ocrtrain process registers `faulthandler` on
`STACK_SIGNAL`, which dumps all its threads' stacks to its stderr (the run's log), and
`collect_stacks()` signals a run's processes one at a time and returns what each wrote.

A real-time signal that nothing else uses: its default action ends a process, so only
processes that catch it (`SigCgt` in `/proc/PID/status`) are ever sent it.
"""

from __future__ import annotations

import faulthandler
import io
import os
import signal
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

STACK_SIGNAL = signal.SIGRTMIN + 4


@dataclass(frozen=True, slots=True)
class StackDump:
    """What one process wrote when asked for its stacks (empty: it did not answer)."""

    pid: int
    cmdline: tuple[str, ...]
    text: str
    answered: bool


def register_stack_dump() -> bool:
    """Dump every thread's stack to stderr on `STACK_SIGNAL`; inherited by forked children.
    Returns False where stderr is no file (nothing registered)."""
    try:
        faulthandler.register(STACK_SIGNAL, file=sys.stderr, all_threads=True)
    except (AttributeError, ValueError, io.UnsupportedOperation, RuntimeError):
        return False
    return True


def catches(pid: int, sig: int) -> bool:
    """Whether `pid` has a handler for `sig` (False if it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("SigCgt:"):
                    return bool(int(line.split()[1], 16) >> (sig - 1) & 1)
    except (OSError, ValueError, IndexError):
        return False
    return False


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except OSError:
        return 0


def _settled(path: Path, start: int, quiet_s: float, deadline: float) -> int:
    """The log's size once it grew past `start` and then stayed still for `quiet_s`."""
    size, changed = start, time.monotonic()
    while time.monotonic() < deadline:
        now_size = _size(path)
        if now_size != size:
            size, changed = now_size, time.monotonic()
        elif size > start and time.monotonic() - changed >= quiet_s:
            break
        time.sleep(0.02)
    return size


def collect_stacks(
    pids: Iterable[int],
    log_path: Path,
    cmdline: Callable[[int], list[str]],
    timeout_s: float = 3.0,
    quiet_s: float = 0.3,
) -> list[StackDump]:
    """Ask each of `pids` that catches `STACK_SIGNAL` for its stacks, one at a time (dumps
    written at once would interleave in the log), and return the part of `log_path` each
    added. Other output written meanwhile is part of that text too."""
    dumps = []
    for pid in pids:
        cmd = tuple(cmdline(pid))
        if not catches(pid, STACK_SIGNAL):
            dumps.append(StackDump(pid, cmd, "", answered=False))
            continue
        start = _size(log_path)
        try:
            os.kill(pid, STACK_SIGNAL)
        except ProcessLookupError:  # ended since the check
            continue
        end = _settled(log_path, start, quiet_s, time.monotonic() + timeout_s)
        with open(log_path, "rb") as f:
            f.seek(start)
            text = f.read(end - start).decode(errors="replace")
        dumps.append(StackDump(pid, cmd, text, answered=bool(text)))
    return dumps
