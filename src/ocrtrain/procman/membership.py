"""Which live processes belong to which run, and why: the one answer that teardown, `ocrtrain
ps`, cleanup, the API and the web UI share.

A process belongs to a run when any of four independent views says so, so that a process
escaping one is still caught by another:

- TAG: it carries the run's `OCRTRAIN_RUN_ID` (inherited through fork, exec and `setsid`, so
  a torchrun worker in its own session still has it);
- CGROUP: the kernel keeps it in the run's cgroup (or a sub-group);
- SESSION: it is in the session the run's main child leads, while that session id provably
  is the run's (a reused sid belongs to someone else);
- DESCENT: it descends from the run's live supervisor (a subreaper, so nothing re-parents
  away from it).

The supervisor and watchdog are never members: they are found by the (pid, start time) the
journal recorded (JOURNAL), a watchdog also by its `OCRTRAIN_WATCHDOG_FOR` tag. Every answer
comes from one scan of the process table, with one reverse-ppid map and one session map.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType

from ocrtrain.procman import procfs
from ocrtrain.procman.cgroup import RunCgroup
from ocrtrain.procman.journal import ACTIVE_STATES, RunRecord

_DEAD = ("Z", "X")


class FoundBy(StrEnum):
    """Why a process counts as part of a run (the first view that claimed it)."""

    TAG = "tag"
    CGROUP = "cgroup"
    SESSION = "session"
    DESCENT = "descent"
    JOURNAL = "journal"


class Role(StrEnum):
    """The part a process plays that membership alone can tell (finer roles: the monitor)."""

    SUPERVISOR = "supervisor"
    WATCHDOG = "watchdog"
    TRAINER = "trainer"
    MEMBER = "member"


@dataclass(frozen=True, slots=True)
class Member:
    """One live process of a run, by identity (pid + start time), and why it is one."""

    stat: procfs.ProcStat
    run_id: str | None
    role: Role
    found_by: FoundBy

    @property
    def pid(self) -> int:
        return self.stat.pid

    @property
    def start(self) -> int:
        return self.stat.start


def _index(
    procs: dict[int, procfs.Tagged], key: Callable[[procfs.ProcStat], int]
) -> dict[int, list[int]]:
    out: dict[int, list[int]] = {}
    for pid, t in procs.items():
        out.setdefault(key(t.stat), []).append(pid)
    return out


class ProcessTable:
    """One scan of the process table, with the maps every membership question needs."""

    def __init__(self, procs: dict[int, procfs.Tagged]) -> None:
        self.procs = procs
        self._children: dict[int, list[int]] | None = None
        self._sessions: dict[int, list[int]] | None = None

    @classmethod
    def scan(cls, with_env: bool = True) -> ProcessTable:
        """Scan `/proc` now (`with_env=False`: no tags, for a scan by session/cgroup only)."""
        return cls(procfs.scan(with_env=with_env))

    def children(self, pid: int) -> list[int]:
        """Direct children of `pid` (the reverse-ppid map is built once, on first use)."""
        if self._children is None:
            self._children = _index(self.procs, lambda st: st.ppid)
        return self._children.get(pid, [])

    def session(self, sid: int) -> list[int]:
        """pids in session `sid` (the session map is built once, on first use)."""
        if self._sessions is None:
            self._sessions = _index(self.procs, lambda st: st.sid)
        return self._sessions.get(sid, [])

    def alive(self, pid: int | None, start: int | None) -> procfs.ProcStat | None:
        """The process (pid, start) if the scan saw it alive (not a zombie), else None."""
        if pid is None or start is None:
            return None
        t = self.procs.get(pid)
        if t is None or t.stat.start != start or t.stat.state in _DEAD:
            return None
        return t.stat

    def descendants(self, root: int, skip: set[int]) -> Iterator[procfs.ProcStat]:
        """Live descendants of `root`, not entering `skip` or a watchdog (zombies are passed
        through: their children are still the root's)."""
        stack = list(self.children(root))
        while stack:
            pid = stack.pop()
            t = self.procs[pid]
            if pid in skip or t.watchdog_for is not None:
                continue
            if t.stat.state not in _DEAD:
                yield t.stat
            stack.extend(self.children(pid))


@dataclass(frozen=True)
class RunScope:
    """What identifies one run's processes.

    Attributes:
        run_id: the `OCRTRAIN_RUN_ID` value (None: no tag view).
        sid: the session the run's main child leads.
        sid_until: once the leader is gone its pid (the sid) may be reused by an unrelated new
            session leader: the time (clock ticks since boot) it was known gone; only
            processes started before it count by session.
        cgroup: the run's cgroup, if it has one.
        root_pid: the supervisor, while it lives: all its descendants are the run's.
        exclude: pids that are never members (the supervisor, its watchdog, the caller).
        trainer: (pid, start) of the run's main child, given the role TRAINER.
    """

    run_id: str | None
    sid: int | None = None
    sid_until: int | None = None
    cgroup: RunCgroup | None = None
    root_pid: int | None = None
    exclude: frozenset[int] = frozenset()
    trainer: tuple[int, int] | None = None


def run_scope(run: RunRecord, table: ProcessTable) -> RunScope:
    """The scope of a run as the journal records it: its session only while its leader (the
    main child) lives, descent only while the run is active and its supervisor lives."""
    trainer_alive = table.alive(run.child_pid, run.child_start) is not None
    supervisor = table.alive(run.supervisor_pid, run.supervisor_start)
    active = run.state in ACTIVE_STATES
    return RunScope(
        run.id,
        sid=run.sid if trainer_alive else None,
        cgroup=RunCgroup(Path(run.cgroup)) if run.cgroup else None,
        root_pid=run.supervisor_pid if active and supervisor is not None else None,
        exclude=frozenset(p for p in (run.supervisor_pid, run.watchdog_pid) if p is not None),
        trainer=_trainer(run),
    )


def _plain(t: procfs.Tagged | None) -> bool:
    """Alive and not a watchdog (a watchdog is shown as such, never as a member)."""
    return t is not None and t.watchdog_for is None and t.stat.state not in _DEAD


def _claims(
    table: ProcessTable, scope: RunScope, skip: set[int]
) -> Iterator[tuple[procfs.ProcStat, FoundBy]]:
    """The cgroup, session and descent views of a scope, in that order (not the tag view)."""
    if scope.cgroup is not None:
        for pid in scope.cgroup.pids():
            t = table.procs.get(pid)
            if pid not in skip and t is not None and _plain(t):
                yield t.stat, FoundBy.CGROUP
    if scope.sid is not None:
        for pid in table.session(scope.sid):
            t = table.procs[pid]
            if (
                pid not in skip
                and _plain(t)
                and (scope.sid_until is None or t.stat.start <= scope.sid_until)
            ):
                yield t.stat, FoundBy.SESSION
    if scope.root_pid is not None:
        for st in table.descendants(scope.root_pid, skip):
            yield st, FoundBy.DESCENT


def _member(st: procfs.ProcStat, scope: RunScope, how: FoundBy) -> Member:
    role = Role.TRAINER if (st.pid, st.start) == scope.trainer else Role.MEMBER
    return Member(st, scope.run_id, role, how)


def members(table: ProcessTable, scope: RunScope) -> dict[int, Member]:
    """The live processes of one run, each with the first view that found it."""
    skip = {os.getpid(), *scope.exclude}
    out: dict[int, Member] = {}
    if scope.run_id is not None:
        for pid, t in table.procs.items():
            if t.run_id == scope.run_id and pid not in skip and _plain(t):
                out[pid] = _member(t.stat, scope, FoundBy.TAG)
    for st, how in _claims(table, scope, skip):
        if st.pid not in out:
            out[st.pid] = _member(st, scope, how)
    return out


def find_members(
    run_id: str | None,
    *,
    sid: int | None = None,
    sid_until: int | None = None,
    cgroup: RunCgroup | None = None,
    root_pid: int | None = None,
    exclude: Iterable[int] = (),
    table: ProcessTable | None = None,
) -> dict[int, procfs.ProcStat]:
    """`members()` as plain process stats, scanning now unless given a `table` (see
    `RunScope` for the arguments)."""
    if table is None:
        table = ProcessTable.scan(with_env=run_id is not None)
    scope = RunScope(run_id, sid, sid_until, cgroup, root_pid, frozenset(exclude))
    return {pid: m.stat for pid, m in members(table, scope).items()}


@dataclass(frozen=True)
class RunMembers:
    """One run's processes as one scan found them: its supervisor and watchdog (if alive)
    and its members. `record` is None for a run this journal does not know (tag only)."""

    run_id: str
    record: RunRecord | None
    supervisor: procfs.ProcStat | None = None
    watchdog: procfs.ProcStat | None = None
    members: Mapping[int, Member] = field(default_factory=lambda: MappingProxyType({}))
    trainer_alive: bool = False

    @property
    def supervisor_alive(self) -> bool:
        return self.supervisor is not None

    @property
    def watchdog_alive(self) -> bool:
        return self.watchdog is not None


@dataclass
class _Found:
    watchdog: procfs.ProcStat | None = None
    members: dict[int, Member] = field(default_factory=dict)


def by_run(
    table: ProcessTable, records: Iterable[RunRecord], *, exclude: Iterable[int] = ()
) -> dict[str, RunMembers]:
    """Every run's processes, from one scan: the given journal runs, plus any run whose tag a
    process carries.

    Args:
        table: one scan (with environments, for the tags).
        records: the journal's runs to consider (active ones plus any a tag names).
        exclude: pids that are never members (the caller itself).
    """
    skip = {os.getpid(), *exclude}
    recs = {r.id: r for r in records}
    found: dict[str, _Found] = {rid: _Found() for rid in recs}
    for pid, t in table.procs.items():
        if pid in skip or t.stat.state in _DEAD:
            continue
        if t.watchdog_for is not None:
            found.setdefault(t.watchdog_for, _Found()).watchdog = t.stat
        elif t.run_id is not None:
            rec = recs.get(t.run_id)
            scope = RunScope(t.run_id, trainer=_trainer(rec))
            found.setdefault(t.run_id, _Found()).members[pid] = _member(t.stat, scope, FoundBy.TAG)
    out: dict[str, RunMembers] = {}
    for run_id, f in found.items():
        rec = recs.get(run_id)
        if rec is None:
            out[run_id] = RunMembers(run_id, None, watchdog=f.watchdog, members=f.members)
            continue
        scope = run_scope(rec, table)
        for st, how in _claims(table, scope, skip | scope.exclude):
            if st.pid not in f.members:
                f.members[st.pid] = _member(st, scope, how)
        out[run_id] = RunMembers(
            run_id,
            rec,
            supervisor=table.alive(rec.supervisor_pid, rec.supervisor_start),
            watchdog=table.alive(rec.watchdog_pid, rec.watchdog_start) or f.watchdog,
            members=f.members,
            trainer_alive=table.alive(rec.child_pid, rec.child_start) is not None,
        )
    return out


def _trainer(rec: RunRecord | None) -> tuple[int, int] | None:
    if rec is None or rec.child_pid is None or rec.child_start is None:
        return None
    return (rec.child_pid, rec.child_start)
