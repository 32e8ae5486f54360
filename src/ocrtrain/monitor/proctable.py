"""A faster equivalent of `procfs.scan(with_env=True)` for the monitor.

`ocrtrain ps --json` must cost no more than twice `ps -eo pid,ppid,args` with thousands of
processes. `procfs.scan` spends most of its time in buffered `open()` and in splitting every
environment into variables; here each file is read with one `os.open`/`os.read`, and an
environment is searched for the two ocrtrain tags as raw bytes (most processes carry neither,
so one `find` settles it). The result is the same mapping of `procfs.Tagged` records.
"""

from __future__ import annotations

import os

from ocrtrain.procman import procfs
from ocrtrain.procman.handoff import RUN_ID_ENV

_RUN_TAG = RUN_ID_ENV.encode() + b"="
_WD_TAG = procfs.WATCHDOG_ENV.encode() + b"="
_COMMON = b"OCRTRAIN_"
_CHUNK = 1 << 16


def _read(path: str) -> bytes | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        data = os.read(fd, _CHUNK)
        if len(data) < _CHUNK:
            return data
        parts = [data]
        while True:
            more = os.read(fd, _CHUNK)
            if not more:
                return b"".join(parts)
            parts.append(more)
    except OSError:
        return None
    finally:
        os.close(fd)


def parse_stat(pid: int, raw: bytes) -> procfs.ProcStat | None:
    """Parse the text of `/proc/<pid>/stat` (comm may contain spaces and parentheses)."""
    left = raw.find(b"(")
    right = raw.rfind(b")")
    if left < 0 or right < 0:
        return None
    fields = raw[right + 2 :].split()
    try:
        return procfs.ProcStat(
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


def env_tag(environ: bytes, tag: bytes) -> str | None:
    """The value of `tag` (b"NAME=") in a raw NUL-separated environment, if present."""
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


def scan() -> dict[int, procfs.Tagged]:
    """One pass over /proc: every process's stat and ocrtrain tags; vanished ones skipped."""
    out: dict[int, procfs.Tagged] = {}
    try:
        names = os.listdir(procfs.PROC)
    except OSError:
        return out
    for name in names:
        if not name.isdigit():
            continue
        raw = _read(f"{procfs.PROC}/{name}/stat")
        if raw is None:
            continue
        pid = int(name)
        st = parse_stat(pid, raw)
        if st is None:
            continue
        env = _read(f"{procfs.PROC}/{name}/environ")
        run_id = watchdog_for = None
        if env and _COMMON in env:
            run_id = env_tag(env, _RUN_TAG)
            watchdog_for = env_tag(env, _WD_TAG)
        out[pid] = procfs.Tagged(st, run_id, watchdog_for)
    return out
