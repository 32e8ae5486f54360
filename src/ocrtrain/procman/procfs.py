"""Fast, dependency-free reads of the Linux process table (`/proc`).

One pass over `/proc` gives every process's identity (pid + start time), parentage, session,
state, owner and run id. It is the basis of member discovery at teardown and of `ocrtrain ps`,
so it reads only what it needs and never raises for a process that vanished mid-scan.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from ocrtrain.procman.handoff import RUN_ID_ENV

PROC = "/proc"
_RUN_ID_PREFIX = (RUN_ID_ENV + "=").encode()
WATCHDOG_ENV = "OCRTRAIN_WATCHDOG_FOR"
_WATCHDOG_PREFIX = (WATCHDOG_ENV + "=").encode()

try:
    CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
except (ValueError, OSError, AttributeError):
    CLOCK_TICKS = 100


@dataclass(frozen=True, slots=True)
class ProcStat:
    """A process as `/proc/<pid>/stat` describes it. `start` (clock ticks since boot) and
    `pid` together identify a process for its whole life: a reused pid has another start."""

    pid: int
    comm: str
    state: str  # R S D Z T t X I
    ppid: int
    pgid: int
    sid: int
    start: int  # clock ticks after boot
    utime: int  # clock ticks
    stime: int  # clock ticks
    num_threads: int
    rss_pages: int


def read_stat(pid: int) -> ProcStat | None:
    """Parse `/proc/<pid>/stat`; None when the process is gone or unreadable."""
    try:
        with open(f"{PROC}/{pid}/stat", "rb") as f:
            raw = f.read()
    except OSError:
        return None
    # comm is in parentheses and may itself contain spaces and parentheses.
    left = raw.find(b"(")
    right = raw.rfind(b")")
    if left < 0 or right < 0:
        return None
    comm = raw[left + 1 : right].decode(errors="replace")
    fields = raw[right + 2 :].split()
    try:
        return ProcStat(
            pid=pid,
            comm=comm,
            state=fields[0].decode(),
            ppid=int(fields[1]),
            pgid=int(fields[2]),
            sid=int(fields[3]),
            utime=int(fields[11]),
            stime=int(fields[12]),
            num_threads=int(fields[17]),
            start=int(fields[19]),
            rss_pages=int(fields[21]),
        )
    except (IndexError, ValueError):
        return None


def read_environ(pid: int) -> list[bytes] | None:
    """The environment a process was started with; None when unreadable (gone, other user)."""
    try:
        with open(f"{PROC}/{pid}/environ", "rb") as f:
            return f.read().split(b"\0")
    except OSError:
        return None


def env_value(environ: list[bytes] | None, prefix: bytes) -> str | None:
    if not environ:
        return None
    for item in environ:
        if item.startswith(prefix):
            return item[len(prefix) :].decode(errors="replace")
    return None


def read_run_id(pid: int) -> str | None:
    """The `OCRTRAIN_RUN_ID` a process carries, if any (readable only for own/root)."""
    return env_value(read_environ(pid), _RUN_ID_PREFIX)


def read_cmdline(pid: int) -> list[str]:
    """argv of a process ([] for kernel threads, zombies and vanished processes)."""
    try:
        with open(f"{PROC}/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a] if raw else []


def read_uid(pid: int) -> int | None:
    """Real uid of a process (from /proc/<pid>/status)."""
    try:
        return os.stat(f"{PROC}/{pid}").st_uid
    except OSError:
        return None


def iter_pids() -> Iterator[int]:
    """Every pid in /proc, in no particular order."""
    try:
        names = os.listdir(PROC)
    except OSError:
        return
    for name in names:
        if name.isdigit():
            yield int(name)


def boot_time() -> float:
    """Seconds since the epoch at which the machine booted (for converting `start`)."""
    try:
        with open(f"{PROC}/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except OSError:
        pass
    return 0.0


def start_epoch(start_ticks: int, btime: float | None = None) -> float:
    """Convert a `ProcStat.start` to seconds since the epoch."""
    return (boot_time() if btime is None else btime) + start_ticks / CLOCK_TICKS


@dataclass(frozen=True, slots=True)
class Tagged:
    """A process found by a scan, with the ocrtrain tags it carries."""

    stat: ProcStat
    run_id: str | None  # OCRTRAIN_RUN_ID
    watchdog_for: str | None  # OCRTRAIN_WATCHDOG_FOR


def scan(with_env: bool = True) -> dict[int, Tagged]:
    """One pass over the process table; processes that vanish mid-scan are skipped."""
    out: dict[int, Tagged] = {}
    for pid in iter_pids():
        st = read_stat(pid)
        if st is None:
            continue
        env = read_environ(pid) if with_env else None
        out[pid] = Tagged(st, env_value(env, _RUN_ID_PREFIX), env_value(env, _WATCHDOG_PREFIX))
    return out


def is_alive(pid: int, start: int) -> bool:
    """True while the process (pid, start) exists and is not a zombie."""
    st = read_stat(pid)
    return st is not None and st.start == start and st.state not in ("Z", "X")
