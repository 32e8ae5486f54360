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
from ocrtrain.monitor.snapshot import (
    ORPHAN,
    OTHER_USER,
    STALE,
    ProcessView,
    RunView,
    collect,
    journal_records,
)
from ocrtrain.monitor.startup import live_runs
from ocrtrain.procman import (
    ACTIVE_STATES,
    FINAL_STATES,
    HIDDEN,
    KILL_WAIT_S,
    EventKind,
    Outcome,
    ProcessTable,
    ProcStat,
    RunNotFound,
    RunState,
    Teardown,
    UsageError,
    by_run,
    is_alive,
    read_cmdline,
    read_stat,
    supervisor_alive,
    sweep_leftovers,
    watchdog_alive,
)

if TYPE_CHECKING:
    from ocrtrain.procman import Journal

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


@dataclass(frozen=True, slots=True)
class CleanupPlan:
    """What `execute()` will do: end `items`, stop `live_runs` through their supervisors,
    close `stale_runs` as lost."""

    created_at: float
    items: tuple[CleanupItem, ...]
    stale_runs: tuple[str, ...] = ()
    live_runs: tuple[str, ...] = ()
    orphan_runs: tuple[str, ...] = field(default=(), metadata=HIDDEN)

    @property
    def empty(self) -> bool:
        return not (self.items or self.stale_runs or self.live_runs)


@dataclass(frozen=True, slots=True)
class CleanupEntry:
    """What happened to one planned process. `signal` says how it ended (SIGTERM, SIGKILL,
    exited, supervisor) or why it was not (gone, pid reused, survived)."""

    pid: int
    run_id: str | None
    role: str
    cmdline: str | None
    signal: Outcome
    reason: str

    @classmethod
    def of(cls, item: CleanupItem, outcome: Outcome, reason: str | None = None) -> CleanupEntry:
        return cls(item.pid, item.run_id, item.role, item.cmdline, outcome, reason or item.reason)


@dataclass
class CleanupReport:
    """What `execute()` did. `ok` is False when a process could not be ended."""

    ended: list[CleanupEntry] = field(default_factory=list)
    survived: list[CleanupEntry] = field(default_factory=list)
    skipped: list[CleanupEntry] = field(default_factory=list)
    marked_lost: list[str] = field(default_factory=list)
    stopped_runs: list[str] = field(default_factory=list)
    removed_files: list[str] = field(default_factory=list)  # what ended runs left

    @property
    def ok(self) -> bool:
        return not self.survived

    def json_extra(self) -> dict[str, bool]:
        return {"ok": self.ok}

    def add(self, entry: CleanupEntry) -> None:
        """File an entry under ended, survived or skipped by its outcome."""
        if entry.signal == Outcome.SURVIVED:
            self.survived.append(entry)
        elif entry.signal in (Outcome.GONE, Outcome.REUSED):
            self.skipped.append(entry)
        else:
            self.ended.append(entry)


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
    parent = read_cmdline(ppid) if ppid > 1 else []
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


def _live_run_items(run: RunView) -> list[CleanupItem]:
    """A live run stopped by `--all`: its supervisor is asked, its processes watched."""
    items: list[CleanupItem] = []
    for p in run.processes:
        if p.role == roles.SUPERVISOR:
            why = "live run (--all): stop request (SIGTERM) to its supervisor"
        elif p.role == roles.WATCHDOG:
            continue  # the supervisor ends its own watchdog
        else:
            why = "live run (--all): ended by its supervisor, or here if it lingers"
        items.append(CleanupItem(p.pid, p.start, run.id, why, p.cmdline, p.role))
    return items


def _orphan_items(run: RunView, include_live: bool, all_users: bool) -> list[CleanupItem]:
    """A run without a live supervisor: its orphans, left-over watchdog and (`--all`) the rest."""
    items: list[CleanupItem] = []
    for p in run.members:
        if ORPHAN in p.flags and selectable(p, all_users):
            reason = _orphan_reason(run, p.pid, p.ppid)
            items.append(CleanupItem(p.pid, p.start, run.id, reason, p.cmdline, p.role))
    if include_live and run.record is not None:
        # --all stops live runs of *this* journal only: a tagged process of a run this
        # journal does not know belongs to another home (another user, a test) and is
        # only ever cleaned as an orphan.
        for p in run.members:
            if ORPHAN not in p.flags:
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
    return items


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
            items.extend(_live_run_items(run))
            continue
        if any(ORPHAN in p.flags and selectable(p, all_users) for p in run.members):
            orphan_runs.append(run.id)
        items.extend(_orphan_items(run, include_live, all_users))
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


Planned = dict[int, tuple[ProcStat, CleanupItem]]  # pid -> (identity now, plan item)


def _teardown(
    journal: Journal, stats: Planned, grace: float, report: CleanupReport, note: str | None = None
) -> None:
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
    for pid, (_st, item) in stats.items():
        outcome = result.outcome(pid)
        if outcome == Outcome.SURVIVED:
            report.add(CleanupEntry.of(item, outcome, result.survivors[pid]))
            log.warning(
                "pid %d (run %s) survived cleanup: %s", pid, item.run_id, result.survivors[pid]
            )
        else:
            report.add(CleanupEntry.of(item, outcome, note))


def _verify(item: CleanupItem, report: CleanupReport) -> ProcStat | None:
    """The live process behind an item, or None (reported as skipped) if it is gone or its pid
    now belongs to another process."""
    st = read_stat(item.pid)
    if st is None or st.state in ("Z", "X"):
        report.add(CleanupEntry.of(item, Outcome.GONE, "already gone"))
        return None
    if st.start != item.start:
        why = "pid reused by another process (start time differs); not signalled"
        report.add(CleanupEntry.of(item, Outcome.REUSED, why))
        log.warning("pid %d was reused since the plan; not signalling it", item.pid)
        return None
    return st


def _wait_gone(stats: Planned, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.02
    while time.monotonic() < deadline:
        if not any(is_alive(pid, st.start) for pid, (st, _i) in stats.items()):
            return
        time.sleep(delay)
        delay = min(delay * 2, 0.2)


def _forked(journal: Journal, run_ids: set[str], planned: set[tuple[int, int]]) -> Planned:
    """Processes of orphaned runs that are not in `planned` (forked while being ended), from
    one scan; runs whose supervisor lives again are left to it. Adds them to `planned`."""
    table = ProcessTable.scan()
    records = [r for r in (journal.get_run(rid) for rid in sorted(run_ids)) if r is not None]
    found: Planned = {}
    for run_id, group in by_run(table, records).items():
        if run_id not in run_ids or group.supervisor_alive:
            continue
        for m in group.members.values():
            if (m.pid, m.start) in planned:
                continue
            why = "forked during cleanup"
            found[m.pid] = (m.stat, CleanupItem(m.pid, m.start, run_id, why, None, roles.HELPER))
            planned.add((m.pid, m.start))
    return found


def _split(plan: CleanupPlan, report: CleanupReport) -> tuple[Planned, Planned]:
    """The plan's still-valid items: (to end here, to be ended by their live supervisor)."""
    direct: Planned = {}
    via_supervisor: Planned = {}
    live = set(plan.live_runs)
    for item in plan.items:
        st = _verify(item, report)
        if st is not None:
            (via_supervisor if item.run_id in live else direct)[item.pid] = (st, item)
    return direct, via_supervisor


def _stop_live_runs(
    journal: Journal, plan: CleanupPlan, grace: float, force: bool, report: CleanupReport
) -> None:
    from ocrtrain.procman import request_stop  # the supervisor's module: only when needed

    for run_id in plan.live_runs:
        rec = journal.get_run(run_id)
        if rec is None or rec.state in FINAL_STATES:
            continue
        try:
            request_stop(journal, rec, grace=grace, force=force, source=SOURCE + " --all")
            report.stopped_runs.append(run_id)
        except UsageError as exc:  # it ended meanwhile
            log.info("run %s: %s", run_id, exc)


def _await_supervisors(via_supervisor: Planned, grace: float, report: CleanupReport) -> Planned:
    """Wait for live runs' supervisors to end their processes; returns those that linger."""
    if not via_supervisor:
        return {}
    _wait_gone(via_supervisor, grace + KILL_WAIT_S + _LIVE_EXTRA_S)
    lingering: Planned = {}
    for pid, (st, item) in via_supervisor.items():
        if is_alive(pid, st.start):
            lingering[pid] = (st, item)
        else:
            report.add(CleanupEntry.of(item, Outcome.SUPERVISOR))
    return lingering


def _end_forks(journal: Journal, direct: Planned, live: set[str], report: CleanupReport) -> None:
    """An orphan may fork while being ended: end its run's newcomers too (a few rounds)."""
    orphan_runs = {i.run_id for _s, i in direct.values() if i.run_id is not None} - live
    planned = {(st.pid, st.start) for st, _i in direct.values()}
    for _round in range(_FORK_ROUNDS):
        if not orphan_runs:
            break
        newcomers = _forked(journal, orphan_runs, planned)
        if not newcomers:
            break
        _teardown(journal, newcomers, 0.0, report, note="forked during cleanup")


def _close_run(
    journal: Journal,
    plan: CleanupPlan,
    run_id: str,
    ended: int,
    survivors: list[int],
    report: CleanupReport,
) -> None:
    """Record the cleanup under a run, closing it as `lost` once nothing of it remains."""
    rec = journal.get_run(run_id)
    detail: dict[str, Any] = {"ended": ended, "survivors": survivors, "source": SOURCE}
    gone = (
        rec is not None
        and rec.state in ACTIVE_STATES
        and not supervisor_alive(rec)
        and not watchdog_alive(rec)
    )
    if not gone or survivors:
        journal.add_event(run_id, EventKind.CLEANUP, **detail)
        return
    if run_id in plan.stale_runs and ended == 0:
        reason = "stale: supervisor and processes gone; closed by ocrtrain cleanup"
    else:
        reason = f"supervisor gone; ocrtrain cleanup ended {ended} orphaned process(es)"
    if journal.transition(
        run_id,
        RunState.LOST,
        EventKind.CLEANUP,
        only_from=ACTIVE_STATES,
        detail={**detail, "reason": reason},
        reason=reason,
    ):
        report.marked_lost.append(run_id)


def _record(journal: Journal, plan: CleanupPlan, report: CleanupReport) -> None:
    """One CLEANUP event per run touched (and one for `--match` processes)."""
    touched: dict[str, int] = {}
    for e in report.ended:
        if e.run_id is not None:
            touched[e.run_id] = touched.get(e.run_id, 0) + 1
    survivors_by_run: dict[str, list[int]] = {}
    for e in report.survived:
        survivors_by_run.setdefault(e.run_id or LEGACY_RUN_ID, []).append(e.pid)
    for run_id in sorted(set(touched) | set(plan.stale_runs) | set(plan.orphan_runs)):
        survivors = survivors_by_run.get(run_id, [])
        _close_run(journal, plan, run_id, touched.get(run_id, 0), survivors, report)
    if any(e.run_id is None for e in report.ended + report.survived):
        journal.add_event(
            LEGACY_RUN_ID,
            EventKind.CLEANUP,
            ended=sum(1 for e in report.ended if e.run_id is None),
            survivors=survivors_by_run.get(LEGACY_RUN_ID, []),
            source=SOURCE,
        )


def execute(
    plan: CleanupPlan, journal: Journal, *, grace: float = 5.0, force: bool = False
) -> CleanupReport:
    """Carry out a plan: re-check identities, stop live runs through their supervisors, end
    the other processes (SIGTERM, `grace`, SIGKILL; `force`: SIGKILL at once), close runs whose
    processes are all gone as `lost`, remove what ended runs left (empty cgroups, recorded temp
    folders), and record every action in the journal.

    Raises:
        UsageError: a negative grace.
    """
    if grace < 0:
        raise UsageError(f"--grace must be non-negative, got {grace}")
    report = CleanupReport()
    effective_grace = 0.0 if force else grace
    direct, via_supervisor = _split(plan, report)
    _stop_live_runs(journal, plan, effective_grace, force, report)
    direct.update(_await_supervisors(via_supervisor, effective_grace, report))
    _teardown(journal, direct, effective_grace, report)
    _end_forks(journal, direct, set(plan.live_runs), report)
    _record(journal, plan, report)
    table = ProcessTable.scan()
    groups = by_run(table, journal_records(journal, table))
    report.removed_files = [str(p) for p in sweep_leftovers(journal, live_runs(groups))]
    return report
