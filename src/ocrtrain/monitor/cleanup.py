"""`ocrtrain cleanup`: end orphaned processes and close stale runs, never an innocent process.

A plan is made first (`plan()`), from one snapshot: every item names a process by identity
(pid + start time) and says why it is to be ended. `execute()` re-checks each identity before
signalling (a pid reused since the plan is skipped, and the reason reported), then hands the
processes to the core's `Teardown` (SIGTERM, one shared grace deadline, SIGKILL, signals
through pidfds), so there is exactly one kill loop in the project. Every action is written to
the journal as a lifecycle event of the run it concerns (`--match` processes, which have no
run, under the pseudo run id `legacy`).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocrtrain.monitor import roles
from ocrtrain.monitor.snapshot import ORPHAN, OTHER_USER, STALE, ProcessView, RunView, collect
from ocrtrain.procman import procfs
from ocrtrain.procman.errors import RunNotFound, UsageError
from ocrtrain.procman.journal import ACTIVE_STATES, FINAL_STATES, EventKind, RunState

if TYPE_CHECKING:
    from ocrtrain.procman.journal import Journal

log = logging.getLogger(__name__)

LEGACY_RUN_ID = "legacy"  # journal key for events about `--match` processes
SOURCE = "ocrtrain cleanup"
_FORK_ROUNDS = 3  # rescans for processes an orphan forked while being ended
_LIVE_EXTRA_S = 5.0  # beyond grace + SIGKILL wait: how long a live run's supervisor may take


@dataclass(frozen=True, slots=True)
class CleanupItem:
    """One process to end, by identity, and why."""

    pid: int
    start: int  # clock ticks after boot: with pid, the identity re-checked before signalling
    run_id: str | None  # None for a `--match` process
    reason: str
    cmdline: str | None
    role: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "start": self.start,
            "run_id": self.run_id,
            "role": self.role,
            "reason": self.reason,
            "cmdline": self.cmdline,
        }


@dataclass(frozen=True, slots=True)
class CleanupPlan:
    """What `execute()` will do: end `items`, stop `live_runs` through their supervisors,
    close `stale_runs` as lost."""

    created_at: float
    items: tuple[CleanupItem, ...]
    stale_runs: tuple[str, ...] = ()
    live_runs: tuple[str, ...] = ()
    orphan_runs: tuple[str, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.items or self.stale_runs or self.live_runs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "created_at": self.created_at,
            "items": [i.to_dict() for i in self.items],
            "stale_runs": list(self.stale_runs),
            "live_runs": list(self.live_runs),
        }


@dataclass
class CleanupReport:
    """What `execute()` did. `ok` is False when a process could not be ended."""

    ended: list[dict[str, Any]] = field(default_factory=list)
    survived: list[dict[str, Any]] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    marked_lost: list[str] = field(default_factory=list)
    stopped_runs: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.survived

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "ended": self.ended,
            "survived": self.survived,
            "skipped": self.skipped,
            "marked_lost": self.marked_lost,
            "stopped_runs": self.stopped_runs,
        }


# -- planning -------------------------------------------------------------------------------


def _orphan_reason(run: RunView, pid: int, ppid: int) -> str:
    rec = run.record
    if rec is None:
        return "orphan: carries run id of a run this journal does not know, no supervisor above it"
    if rec.state in FINAL_STATES:
        return f"orphan: its run ended ({rec.state})"
    sup = run.supervisor_pid
    if not any(p.role == roles.SUPERVISOR for p in run.processes):
        return f"orphan: the run's supervisor (pid {sup}) is gone"
    if ppid <= 1:
        return "orphan: re-parented to init"
    return f"orphan: the run's trainer (pid {rec.child_pid}) is gone"


def _leftover_watchdog(run: RunView, ppid: int) -> bool:
    """A watchdog outlives its supervisor only to tear the run down; it is left over once its
    run has ended, or (a run this journal does not know) once no ocrtrain supervisor is its
    parent and no live member of its run remains."""
    if run.record is not None:
        return run.record.is_final
    if any(ORPHAN not in p.flags for p in run.members):
        return False
    parent = procfs.read_cmdline(ppid) if ppid > 1 else []
    return not any("ocrtrain" in a for a in parent[:4])


def selectable(p: ProcessView, all_users: bool) -> bool:
    """Whether cleanup may pick this process: another user's process tagged with a run this
    journal does not know is shown (flagged) but only ever ended with `--all-users` (root):
    the tag is the process's own claim, and anyone can make it."""
    return all_users or OTHER_USER not in p.flags


def _resolve_run(journal: Journal, ref: str, runs: tuple[RunView, ...]) -> str:
    for r in runs:
        if r.id == ref:
            return r.id
    try:
        return journal.resolve(ref).id
    except RunNotFound:
        raise UsageError(f"no run with id or name {ref!r} (see 'ocrtrain ps')") from None


def plan(
    journal: Journal,
    *,
    run_id: str | None = None,
    include_live: bool = False,
    stale: bool = True,
    match: str | None = None,
    all_users: bool = False,
) -> CleanupPlan:
    """Decide what a cleanup would end, without signalling anything.

    Args:
        journal: the run journal.
        run_id: only this run (id, unique id prefix or name).
        include_live: also stop runs that are alive and well (`--all`).
        stale: close runs whose supervisor and processes are gone as `lost`.
        match: also end pre-ocrtrain processes whose interpreter + script path match.
        all_users: other users' processes too (root only): orphans tagged with runs this
            journal does not know, and `match` processes.

    Raises:
        UsageError: unknown run, `all_users` without root, empty `match`.
    """
    if all_users and os.geteuid() != 0:
        raise UsageError("--all-users needs root (only root may end other users' processes)")
    snap = collect(journal, match=match, all_users=all_users, gpu=False)
    wanted = _resolve_run(journal, run_id, snap.runs) if run_id is not None else None
    items: list[CleanupItem] = []
    stale_runs: list[str] = []
    live_runs: list[str] = []
    orphan_runs: list[str] = []
    for run in snap.runs:
        if wanted is not None and run.id != wanted:
            continue
        rec = run.record
        if STALE in run.flags and stale:
            stale_runs.append(run.id)
        has_supervisor = any(p.role == roles.SUPERVISOR for p in run.processes)
        if include_live and has_supervisor and rec is not None and rec.state in ACTIVE_STATES:
            live_runs.append(run.id)
            for p in run.processes:
                if p.role == roles.SUPERVISOR:
                    why = "live run (--all): stop request (SIGTERM) to its supervisor"
                elif p.role == roles.WATCHDOG:
                    continue  # the supervisor ends its own watchdog
                else:
                    why = "live run (--all): ended by its supervisor, or here if it lingers"
                items.append(CleanupItem(p.pid, p.start, run.id, why, p.cmdline, p.role))
            continue
        orphans = [p for p in run.members if ORPHAN in p.flags and selectable(p, all_users)]
        others = [p for p in run.members if ORPHAN not in p.flags]
        if orphans:
            orphan_runs.append(run.id)
        for p in orphans:
            reason = _orphan_reason(run, p.pid, p.ppid)
            items.append(CleanupItem(p.pid, p.start, run.id, reason, p.cmdline, p.role))
        if include_live and rec is not None:
            # --all stops live runs of *this* journal only: a tagged process of a run this
            # journal does not know belongs to another home (another user, a test) and is
            # only ever cleaned as an orphan.
            for p in others:
                why = "live run (--all)"
                items.append(CleanupItem(p.pid, p.start, run.id, why, p.cmdline, p.role))
        for p in run.processes:
            if (
                p.role == roles.WATCHDOG
                and selectable(p, all_users)
                and _leftover_watchdog(run, p.ppid)
            ):
                why = "orphan: watchdog of a run that has ended"
                items.append(CleanupItem(p.pid, p.start, run.id, why, p.cmdline, p.role))
    if snap.legacy is not None and wanted is None:
        for lp in snap.legacy:
            why = f"--match {match}: {lp.cmdline.split(' ', 1)[0]} running {lp.script}"
            items.append(CleanupItem(lp.pid, lp.start, None, why, lp.cmdline, "legacy"))
    return CleanupPlan(
        created_at=time.time(),
        items=tuple(items),
        stale_runs=tuple(stale_runs),
        live_runs=tuple(live_runs),
        orphan_runs=tuple(orphan_runs),
    )


# -- execution ------------------------------------------------------------------------------


def _recorder(journal: Journal, run_of: dict[int, str | None]) -> Callable[..., None]:
    """A Teardown event sink that files each event under the run of the process it names."""

    def record(
        kind: EventKind, pid: int | None = None, signal: int | None = None, **kw: Any
    ) -> None:
        try:
            if pid is not None:
                journal.add_event(
                    run_of.get(pid) or LEGACY_RUN_ID,
                    kind,
                    pid=pid,
                    signal=signal,
                    source=SOURCE,
                    **kw,
                )
                return
            pids = kw.pop("pids", None)
            if isinstance(pids, list):
                by_run: dict[str, list[int]] = {}
                for p in pids:
                    by_run.setdefault(run_of.get(p) or LEGACY_RUN_ID, []).append(p)
                for rid, ps in by_run.items():
                    journal.add_event(rid, kind, signal=signal, pids=ps, source=SOURCE, **kw)
                return
            for rid in {r or LEGACY_RUN_ID for r in run_of.values()}:
                journal.add_event(rid, kind, signal=signal, source=SOURCE, **kw)
        except Exception:  # the journal must not stop a cleanup half-way
            log.exception("could not record a cleanup event")

    return record


def _teardown(
    journal: Journal,
    stats: dict[int, tuple[procfs.ProcStat, CleanupItem]],
    grace: float,
    report: CleanupReport,
    note: str | None = None,
) -> None:
    from ocrtrain.procman.teardown import Teardown

    if not stats:
        return
    run_of = {pid: item.run_id for pid, (_st, item) in stats.items()}
    td = Teardown(
        None,
        grace=grace,
        only=[st for st, _item in stats.values()],
        on_event=_recorder(journal, run_of),
    )
    result = td.run()
    signalled = set(result.signalled)
    killed = set(result.killed)
    for pid, (_st, item) in stats.items():
        entry = {"pid": pid, "run_id": item.run_id, "role": item.role, "cmdline": item.cmdline}
        if pid in result.survivors:
            report.survived.append({**entry, "reason": result.survivors[pid]})
            log.warning(
                "pid %d (run %s) survived cleanup: %s", pid, item.run_id, result.survivors[pid]
            )
        else:
            how = "SIGKILL" if pid in killed else "SIGTERM" if pid in signalled else "exited"
            report.ended.append({**entry, "signal": how, "reason": note or item.reason})


def _verify(item: CleanupItem, report: CleanupReport) -> procfs.ProcStat | None:
    """The live process behind an item, or None (reported as skipped) if it is gone or its pid
    now belongs to another process."""
    st = procfs.read_stat(item.pid)
    entry = {"pid": item.pid, "run_id": item.run_id, "role": item.role, "cmdline": item.cmdline}
    if st is None or st.state in ("Z", "X"):
        report.skipped.append({**entry, "reason": "already gone"})
        return None
    if st.start != item.start:
        report.skipped.append(
            {**entry, "reason": "pid reused by another process (start time differs); not signalled"}
        )
        log.warning("pid %d was reused since the plan; not signalling it", item.pid)
        return None
    return st


def _wait_gone(stats: dict[int, tuple[procfs.ProcStat, CleanupItem]], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if not any(procfs.is_alive(pid, st.start) for pid, (st, _i) in stats.items()):
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def execute(
    plan: CleanupPlan, journal: Journal, *, grace: float = 5.0, force: bool = False
) -> CleanupReport:
    """Carry out a plan: re-check identities, stop live runs through their supervisors, end
    the other processes (SIGTERM, `grace`, SIGKILL; `force`: SIGKILL at once), close runs whose
    processes are all gone as `lost`, and record every action in the journal.

    Raises:
        UsageError: a negative grace.
    """
    if grace < 0:
        raise UsageError(f"--grace must be non-negative, got {grace}")
    from ocrtrain.procman.api import request_stop
    from ocrtrain.procman.reconcile import supervisor_alive, watchdog_alive

    report = CleanupReport()
    effective_grace = 0.0 if force else grace
    live = set(plan.live_runs)
    direct: dict[int, tuple[procfs.ProcStat, CleanupItem]] = {}
    via_supervisor: dict[int, tuple[procfs.ProcStat, CleanupItem]] = {}
    for item in plan.items:
        st = _verify(item, report)
        if st is None:
            continue
        if item.run_id in live:
            via_supervisor[item.pid] = (st, item)
        else:
            direct[item.pid] = (st, item)

    for run_id in plan.live_runs:
        rec = journal.get_run(run_id)
        if rec is None or rec.state in FINAL_STATES:
            continue
        try:
            request_stop(journal, rec, grace=effective_grace, force=force, source=SOURCE + " --all")
            report.stopped_runs.append(run_id)
        except UsageError as exc:  # it ended meanwhile
            log.info("run %s: %s", run_id, exc)
    if via_supervisor:
        from ocrtrain.procman.teardown import KILL_WAIT_S

        _wait_gone(via_supervisor, effective_grace + KILL_WAIT_S + _LIVE_EXTRA_S)
        lingering = {
            pid: v for pid, v in via_supervisor.items() if procfs.is_alive(pid, v[0].start)
        }
        for pid, (_st, item) in via_supervisor.items():
            if pid not in lingering:
                entry = {"pid": pid, "run_id": item.run_id, "role": item.role}
                report.ended.append(
                    {
                        **entry,
                        "cmdline": item.cmdline,
                        "signal": "supervisor",
                        "reason": item.reason,
                    }
                )
        direct.update(lingering)

    _teardown(journal, direct, effective_grace, report)

    # An orphan may fork while being ended: its children carry the same run id.
    orphan_runs = {i.run_id for _s, i in direct.values() if i.run_id is not None} - live
    planned = {(st.pid, st.start) for st, _i in direct.values()}
    for _round in range(_FORK_ROUNDS):
        if not orphan_runs:
            break
        newcomers: dict[int, tuple[procfs.ProcStat, CleanupItem]] = {}
        for pid, t in procfs.scan().items():
            if (
                t.run_id in orphan_runs
                and t.stat.state not in ("Z", "X")
                and (pid, t.stat.start) not in planned
                and pid != os.getpid()
            ):
                rec = journal.get_run(t.run_id) if t.run_id is not None else None
                if rec is not None and supervisor_alive(rec):
                    continue
                item = CleanupItem(
                    pid, t.stat.start, t.run_id, "forked during cleanup", None, roles.HELPER
                )
                newcomers[pid] = (t.stat, item)
                planned.add((pid, t.stat.start))
        if not newcomers:
            break
        _teardown(journal, newcomers, 0.0, report, note="forked during cleanup")

    touched: dict[str, int] = {}
    for e in report.ended:
        if e["run_id"] is not None:
            touched[e["run_id"]] = touched.get(e["run_id"], 0) + 1
    survivors_by_run: dict[str, list[int]] = {}
    for e in report.survived:
        survivors_by_run.setdefault(e["run_id"] or LEGACY_RUN_ID, []).append(e["pid"])
    for run_id in sorted(set(touched) | set(plan.stale_runs) | set(plan.orphan_runs)):
        rec = journal.get_run(run_id)
        n = touched.get(run_id, 0)
        detail: dict[str, Any] = {
            "ended": n,
            "survivors": survivors_by_run.get(run_id, []),
            "source": SOURCE,
        }
        if rec is None:
            journal.add_event(run_id, EventKind.CLEANUP, **detail)
            continue
        if rec.state in ACTIVE_STATES and not supervisor_alive(rec) and not watchdog_alive(rec):
            if survivors_by_run.get(run_id):
                journal.add_event(run_id, EventKind.CLEANUP, **detail)
                continue
            if run_id in plan.stale_runs and n == 0:
                reason = "stale: supervisor and processes gone; closed by ocrtrain cleanup"
            else:
                reason = f"supervisor gone; ocrtrain cleanup ended {n} orphaned process(es)"
            if journal.transition(
                run_id,
                RunState.LOST,
                EventKind.CLEANUP,
                only_from=ACTIVE_STATES,
                detail={**detail, "reason": reason},
                reason=reason,
            ):
                report.marked_lost.append(run_id)
        else:
            journal.add_event(run_id, EventKind.CLEANUP, **detail)
    if any(e["run_id"] is None for e in report.ended + report.survived):
        n = sum(1 for e in report.ended if e["run_id"] is None)
        journal.add_event(
            LEGACY_RUN_ID,
            EventKind.CLEANUP,
            ended=n,
            survivors=survivors_by_run.get(LEGACY_RUN_ID, []),
            source=SOURCE,
        )
    return report
