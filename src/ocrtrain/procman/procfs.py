"""Fast, dependency-free reads of the Linux process table (`/proc`).

One pass over `/proc` gives every process's identity (pid + start time), parentage, session,
state, owner and run id. It is the basis of member discovery at teardown and of `ocrtrain ps`,
so it reads only what it needs and never raises for a process that vanished mid-scan.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass

from ocrtrain.procman.envnames import RUN_ID_ENV, WATCHDOG_ENV

PROC = "/proc"
_RUN_ID_PREFIX = (RUN_ID_ENV + "=").encode()
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


_CHUNK = 1 << 16
_RUN_TAG = _RUN_ID_PREFIX
_WATCHDOG_TAG = _WATCHDOG_PREFIX
_COMMON = b"OCRTRAIN_"


def _read(path: str) -> bytes | None:
    """The whole file with one open and (usually) one read; None when unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, _CHUNK)
        if len(data) < _CHUNK:
            return data
        parts = [data]
        while more := os.read(fd, _CHUNK):
            parts.append(more)
        return b"".join(parts)
    except OSError:
        return None
    finally:
        os.close(fd)


def parse_stat(pid: int, raw: bytes) -> ProcStat | None:
    """Parse the text of `/proc/<pid>/stat`; comm may contain spaces and parentheses."""
    left = raw.find(b"(")
    right = raw.rfind(b")")
    if left < 0 or right < 0:
        return None
    fields = raw[right + 2 :].split()
    try:
        return ProcStat(
            pid=pid,
            comm=raw[left + 1 : right].decode(errors="replace"),
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


def read_stat(pid: int) -> ProcStat | None:
    """Parse `/proc/<pid>/stat`; None when the process is gone or unreadable."""
    raw = _read(f"{PROC}/{pid}/stat")
    return None if raw is None else parse_stat(pid, raw)


def read_environ(pid: int) -> bytes | None:
    """The raw (NUL-separated) environment a process was started with; None when unreadable
    (gone, or another user's)."""
    return _read(f"{PROC}/{pid}/environ")


def env_tag(environ: bytes | None, tag: bytes) -> str | None:
    """The value of `tag` (b"NAME=") in a raw environment; only whole variables match."""
    if not environ:
        return None
    at = 0
    while True:
        i = environ.find(tag, at)
        if i < 0:
            return None
        if i == 0 or environ[i - 1] == 0:
            end = environ.find(b"\0", i)
            value = environ[i + len(tag) : end if end >= 0 else len(environ)]
            return value.decode(errors="replace")
        at = i + 1


def read_run_id(pid: int) -> str | None:
    """The `OCRTRAIN_RUN_ID` a process carries, if any (readable only for own/root)."""
    return env_tag(read_environ(pid), _RUN_TAG)


def read_cmdline(pid: int) -> list[str]:
    """argv of a process ([] for kernel threads, zombies and vanished processes)."""
    try:
        with open(f"{PROC}/{pid}/cmdline", "rb") as f:
            raw = f.read()
    except OSError:
        return []
    return [a.decode(errors="replace") for a in raw.split(b"\0") if a] if raw else []


def read_uid(pid: int) -> int | None:
    """Owner of `/proc/<pid>`: the effective uid (root for non-dumpable processes)."""
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


def now_ticks() -> int:
    """Clock ticks since boot now, comparable with `ProcStat.start`."""
    raw = _read(f"{PROC}/uptime")
    return int(float(raw.split()[0]) * CLOCK_TICKS) + 1 if raw else 2**62


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
    """One pass over the process table; processes that vanish mid-scan are skipped.

    Cheap enough for `ocrtrain ps` over thousands of processes: each file is read with one
    system call, and an environment is searched for the ocrtrain tags as raw bytes (most
    processes carry none, so one `find` settles it).
    """
    out: dict[int, Tagged] = {}
    for pid in iter_pids():
        raw = _read(f"{PROC}/{pid}/stat")
        st = None if raw is None else parse_stat(pid, raw)
        if st is None:
            continue
        run_id = watchdog_for = None
        if with_env:
            env = _read(f"{PROC}/{pid}/environ")
            if env and _COMMON in env:
                run_id = env_tag(env, _RUN_TAG)
                watchdog_for = env_tag(env, _WATCHDOG_TAG)
        out[pid] = Tagged(st, run_id, watchdog_for)
    return out


def is_alive(pid: int, start: int) -> bool:
    """True while the process (pid, start) exists and is not a zombie."""
    st = read_stat(pid)
    return st is not None and st.start == start and st.state not in ("Z", "X")
