"""`--match PATTERN`: find training processes started before ocrtrain (no run id).

A process matches only when its argv *is* a Python interpreter running a script whose path
matches the pattern (`python -u /home/me/proj/runners/train.py --lr 3`), as the kernel and the
interpreter would read it: argv[0] must name a Python interpreter, interpreter options are
skipped, and the first operand is the script. So `vim runners/train.py`,
`grep runners/train.py`, `less train.log`, `python -c "...runners/train.py..."` and this
monitor itself never match, whatever binaries are installed. The forked children of a match
(DataLoader workers: same argv) match by the same rule; `multiprocessing` spawn children of a
matched process are included as its workers.

Pattern: a path suffix on whole components (`runners/train.py` matches
`/any/where/runners/train.py` and `./runners/train.py`, not `myrunners/train.py`), or a glob
(`fnmatch`) against the full script path when it contains `*`, `?` or `[`.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import shlex
from dataclasses import dataclass, field

from ocrtrain.procman import (
    HIDDEN,
    PROC,
    ProcessTable,
    ProcStat,
    Tagged,
    UsageError,
    boot_time,
    read_cmdline,
    read_uid,
    start_epoch,
)

_PYTHON = re.compile(r"^(python|pypy)(\d+(\.\d+)*)?[a-z]?$")
# Interpreter options that take a separate argument.
_OPTS_WITH_ARG = {"-W", "-X", "--check-hash-based-pycs"}
_MP_MARKERS = ("multiprocessing.spawn", "multiprocessing.forkserver")


@dataclass(frozen=True, slots=True)
class LegacyProcess:
    """A pre-ocrtrain process matched by `--match`."""

    pid: int
    start: int = field(metadata=HIDDEN)
    ppid: int
    uid: int | None = field(metadata=HIDDEN)
    user: str | None
    state: str
    age_s: float | None
    rss_bytes: int
    threads: int
    script: str
    cmdline: str


def script_of(argv: list[str]) -> str | None:
    """The script a Python command line runs, or None if it is not `python [opts] SCRIPT`.

    `-m module` yields the module name; `-c` code and an interactive interpreter yield None.
    """
    if not argv or not _PYTHON.match(posixpath.basename(argv[0])):
        return None
    i = 1
    while i < len(argv):
        arg = argv[i]
        if arg == "--":
            i += 1
            break
        if arg in ("-c",) or (arg.startswith("-c") and not arg.startswith("--")):
            return None
        if arg == "-m":
            return argv[i + 1] if i + 1 < len(argv) else None
        if arg.startswith("-m") and not arg.startswith("--"):
            return arg[2:]
        if arg in _OPTS_WITH_ARG:
            i += 2
            continue
        if arg.startswith("-") and arg != "-":
            i += 1
            continue
        break
    if i >= len(argv) or argv[i] == "-":
        return None
    return argv[i]


def runs_python(pid: int) -> bool:
    """Whether the process's executable (`/proc/PID/exe`) is a Python interpreter: its argv,
    argv[0] included, is whatever the process chose to show."""
    try:
        exe = os.readlink(f"/proc/{pid}/exe")
    except OSError:
        return False  # gone, or not ours to inspect: never matched
    return bool(_PYTHON.match(posixpath.basename(exe.removesuffix(" (deleted)"))))


def script_matches(script: str, pattern: str) -> bool:
    """Whether a script path matches a `--match` pattern (see the module docstring)."""
    norm = posixpath.normpath(script)
    pat = posixpath.normpath(pattern)
    if any(c in pattern for c in "*?["):
        return fnmatch.fnmatchcase(norm, pat) or fnmatch.fnmatchcase(norm, "*/" + pat)
    if pat.startswith("/"):
        return norm == pat
    return norm == pat or norm.endswith("/" + pat)


def _matches(pid: int, script: str, pattern: str) -> bool:
    """Match the script as given, and a relative one also as resolved against the process's
    working directory (so an absolute pattern finds `cd proj && python runners/train.py`)."""
    if script_matches(script, pattern):
        return True
    if script.startswith("/") or not pattern.startswith("/"):
        return False
    try:
        cwd = os.readlink(f"{PROC}/{pid}/cwd")
    except OSError:
        return False
    return script_matches(posixpath.join(cwd, script), pattern)


def _ancestors(table: dict[int, Tagged], pid: int) -> set[int]:
    out: set[int] = set()
    while pid > 1 and pid not in out:
        out.add(pid)
        t = table.get(pid)
        if t is None:
            break
        pid = t.stat.ppid
    return out


def find(  # noqa: PLR0912 - one early "no match" per way a command line fails to match
    pattern: str,
    table: dict[int, Tagged] | None = None,
    *,
    all_users: bool = False,
    now: float | None = None,
    btime: float | None = None,
) -> list[LegacyProcess]:
    """Processes without a run id whose interpreter + script path match `pattern`.

    Only the caller's own processes are considered unless `all_users` (root only); the
    caller and its ancestors are never matched.

    Raises:
        UsageError: an empty pattern, or `all_users` without root.
    """
    import time

    if not pattern.strip():
        raise UsageError("--match needs a script path such as runners/train.py")
    if all_users and os.geteuid() != 0:
        raise UsageError("--all-users needs root")
    if table is None:
        table = ProcessTable.scan().procs
    now = time.time() if now is None else now
    btime = boot_time() if btime is None else btime
    me = os.geteuid()
    skip = _ancestors(table, os.getpid())
    matched: dict[int, tuple[ProcStat, str, list[str]]] = {}
    argv_of: dict[int, list[str]] = {}
    uid_of: dict[int, int | None] = {}
    for pid, t in table.items():
        if pid in skip or t.run_id is not None or t.watchdog_for is not None:
            continue
        if t.stat.state in ("Z", "X"):
            continue
        uid = read_uid(pid)
        if uid is None or (not all_users and uid != me):
            continue
        argv = read_cmdline(pid)
        argv_of[pid] = argv
        uid_of[pid] = uid
        script = script_of(argv)
        if script is not None and _matches(pid, script, pattern) and runs_python(pid):
            matched[pid] = (t.stat, script, argv)
    # multiprocessing spawn/forkserver children of a match are its workers.
    changed = True
    while changed:
        changed = False
        for pid, argv in argv_of.items():
            if pid in matched:
                continue
            st = table[pid].stat
            if st.ppid in matched and any(m in a for a in argv[:3] for m in _MP_MARKERS):
                matched[pid] = (st, matched[st.ppid][1], argv)
                changed = True
    out: list[LegacyProcess] = []
    for pid, (st, script, argv) in sorted(matched.items()):
        uid = uid_of.get(pid)
        out.append(
            LegacyProcess(
                pid=pid,
                start=st.start,
                ppid=st.ppid,
                uid=uid,
                user=_user(uid),
                state=st.state,
                age_s=round(max(0.0, now - start_epoch(st.start, btime)), 3),
                rss_bytes=st.rss_pages * os.sysconf("SC_PAGE_SIZE"),
                threads=st.num_threads,
                script=script,
                cmdline=shlex.join(argv),
            )
        )
    return out


def _user(uid: int | None) -> str | None:
    if uid is None:
        return None
    import pwd

    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
