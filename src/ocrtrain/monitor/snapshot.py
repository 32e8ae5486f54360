"""Immutable, timestamped snapshots of every ocrtrain run on the machine.

`collect()` makes one pass over `/proc` (stat + environ of every process), groups processes
into runs with the core's membership model (`ocrtrain.procman.membership`: run-id tag, cgroup,
session, descent, the journal's (pid, start) pairs) and reads the expensive fields (cmdline,
io, environment for ranks) of run members only. It never raises for a process that vanishes
mid-read: such fields become None ("N/A").

Ranks of a distributed job show their global, local and node rank (from the launcher's
environment), the step they are at (their progress reports, `ocrtrain.dist.progress`) and the
TCP bytes each process sent and received (the kernel's socket diagnostics, `netbytes`); the
host line carries each network interface's totals beside them.

CPU %: a single snapshot reports each process's lifetime average (CPU time / age), which needs
no second reading and so keeps `ocrtrain ps --json` as fast as `ps`; given the previous
snapshot (`--watch`, the web UI) it reports the use over the interval between the two.
"""

from __future__ import annotations

import os
import shlex
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ocrtrain.monitor import roles
from ocrtrain.procman import (
    ACTIVE_STATES,
    CLOCK_TICKS,
    FINAL_STATES,
    HIDDEN,
    PROC,
    FoundBy,
    NetBytes,
    NicBytes,
    ProcessTable,
    ProcStat,
    RankReport,
    RunMembers,
    RunRecord,
    boot_time,
    by_run,
    launcher_rank,
    nic_bytes,
    process_bytes,
    ranks_dir,
    read_cmdline,
    read_environ,
    read_reports,
    read_uid,
    start_epoch,
)

if TYPE_CHECKING:
    from ocrtrain.monitor.gpu import GpuDevice, GpuReading
    from ocrtrain.monitor.legacy import LegacyProcess
    from ocrtrain.procman import Journal

ORPHAN = "orphan"
OTHER_USER = "other-user"  # tagged with a run this journal does not know, owned by another uid
STALE = "stale"
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


@dataclass(frozen=True, slots=True)
class ProcessView:
    """One process of a run. Byte counts in bytes; None where unreadable."""

    pid: int
    start: int = field(metadata=HIDDEN)  # clock ticks after boot; with pid, the identity
    ppid: int
    uid: int | None = field(metadata=HIDDEN)
    role: str
    state: str
    age_s: float | None
    cpu_percent: float | None
    rss_bytes: int | None
    threads: int | None
    io_read_bytes: int | None
    io_write_bytes: int | None
    gpu_mem_bytes: int | None
    gpu_util: float | None
    cmdline: str | None
    flags: tuple[str, ...]
    found_by: FoundBy = field(metadata=HIDDEN)
    cpu_ticks: int = field(metadata=HIDDEN)  # utime + stime, for the next snapshot's CPU %
    global_rank: int | None = None  # ranks of a distributed job only
    local_rank: int | None = None
    node_rank: int | None = None
    step: int | None = None  # the step the rank last reported
    net_sent_bytes: int | None = None  # TCP, this process's own sockets
    net_recv_bytes: int | None = None


@dataclass(frozen=True, slots=True)
class RunView:
    """A run and its live processes. `state` is the journal's (None: not in this journal)."""

    id: str
    name: str | None
    user: str | None
    state: str | None
    flags: tuple[str, ...]
    supervisor_pid: int | None
    processes: tuple[ProcessView, ...]
    record: RunRecord | None = field(default=None, compare=False, repr=False, metadata=HIDDEN)

    @property
    def members(self) -> tuple[ProcessView, ...]:
        """The run's processes other than its supervisor and watchdog."""
        return tuple(p for p in self.processes if p.role not in (roles.SUPERVISOR, roles.WATCHDOG))


@dataclass(frozen=True, slots=True)
class HostView:
    """Machine-wide figures (bytes, percent)."""

    cpu_percent: float | None
    mem_total: int | None
    mem_used: int | None
    gpus: tuple[GpuDevice, ...]
    nics: dict[str, NicBytes] = field(default_factory=dict)  # bytes since each came up


@dataclass(frozen=True, slots=True)
class MonitorSnapshot:
    """Every run on the machine at `taken_at` (seconds since the epoch)."""

    taken_at: float
    host: HostView
    runs: tuple[RunView, ...]
    legacy: tuple[LegacyProcess, ...] | None = field(default=None, metadata=HIDDEN)
    cpu_total_ticks: int | None = field(default=None, metadata=HIDDEN)  # /proc/stat, for the
    cpu_busy_ticks: int | None = field(default=None, metadata=HIDDEN)  # next host CPU %

    def json_extra(self) -> dict[str, Any]:
        """Beyond the fields, `ocrtrain ps --json` carries the orphan count and any --match
        processes."""
        extra: dict[str, Any] = {"orphans": self.orphans}
        if self.legacy is not None:
            extra["legacy"] = self.legacy
        return extra

    @property
    def orphans(self) -> int:
        """How many processes are flagged orphan."""
        return sum(1 for r in self.runs for p in r.processes if ORPHAN in p.flags)


# -- small readers ------------------------------------------------------------------------


def read_io(pid: int) -> tuple[int | None, int | None]:
    """(read_bytes, write_bytes) from /proc/<pid>/io: bytes that reached storage."""
    try:
        with open(f"{PROC}/{pid}/io", "rb") as f:
            raw = f.read()
    except OSError:
        return None, None
    values: dict[bytes, int] = {}
    for line in raw.splitlines():
        key, _, value = line.partition(b":")
        if key in (b"read_bytes", b"write_bytes"):
            try:
                values[key] = int(value)
            except ValueError:
                pass
    return values.get(b"read_bytes"), values.get(b"write_bytes")


def _cpu_ticks() -> tuple[int | None, int | None]:
    """(total, busy) jiffies of all CPUs from /proc/stat."""
    try:
        with open(f"{PROC}/stat", "rb") as f:
            first = f.readline().split()
    except OSError:
        return None, None
    try:
        nums = [int(x) for x in first[1:]]
    except ValueError:
        return None, None
    total = sum(nums[:8])
    idle = nums[3] + (nums[4] if len(nums) > 4 else 0)
    return total, total - idle


def _meminfo() -> tuple[int | None, int | None]:
    try:
        with open(f"{PROC}/meminfo", "rb") as f:
            raw = f.read()
    except OSError:
        return None, None
    values: dict[bytes, int] = {}
    for line in raw.splitlines():
        parts = line.split()
        if len(parts) >= 2 and parts[0] in (b"MemTotal:", b"MemAvailable:"):
            values[parts[0]] = int(parts[1]) * 1024
    total = values.get(b"MemTotal:")
    avail = values.get(b"MemAvailable:")
    return total, (total - avail if total is not None and avail is not None else None)


def _user_name(uid: int | None) -> str | None:
    if uid is None:
        return None
    try:
        import pwd

        return pwd.getpwuid(uid).pw_name
    except (KeyError, ImportError):
        return str(uid)


def other_user(uid: int | None) -> bool:
    """Whether a process is not this user's (an unreadable owner counts as another's)."""
    return uid is None or uid != os.geteuid()


# -- grouping -----------------------------------------------------------------------------


def _looks_like_supervisor(table: ProcessTable, pid: int) -> bool:
    t = table.procs.get(pid)
    if t is None or pid <= 1 or t.run_id is not None:
        return False
    return any("ocrtrain" in arg for arg in read_cmdline(pid)[:4])


def orphan_pids(group: RunMembers, table: ProcessTable) -> set[int]:
    """Members that have lost their run: the run ended or lost its supervisor or trainer, or
    the process was re-parented to init. For a run this journal does not know, a member is an
    orphan unless its chain of same-run ancestors ends at a live ocrtrain supervisor."""
    members = group.members
    rec = group.record
    out: set[int] = set()
    run_broken = rec is not None and (
        rec.state in FINAL_STATES
        or not group.supervisor_alive
        or (not group.trainer_alive and rec.child_pid is not None)
    )
    for pid, m in members.items():
        if m.stat.ppid <= 1 or run_broken:
            out.add(pid)
    if rec is None:
        for pid, m in members.items():
            top = m.stat
            seen = {pid}
            while top.ppid in members and top.ppid not in seen:
                seen.add(top.ppid)
                top = members[top.ppid].stat
            if not _looks_like_supervisor(table, top.ppid):
                out.add(pid)
    return out


def is_stale(group: RunMembers) -> bool:
    """The journal says the run is active, yet its supervisor, watchdog and processes are gone."""
    rec = group.record
    return (
        rec is not None
        and rec.state in ACTIVE_STATES
        and not group.supervisor_alive
        and not group.watchdog_alive
        and not group.members
        and (rec.supervisor_pid is not None or time.time() - rec.created_at > 60.0)
    )


def journal_records(journal: Journal, table: ProcessTable) -> list[RunRecord]:
    """The runs worth looking at: active ones plus ended ones whose processes remain."""
    records = {r.id: r for r in journal.list_runs(states=ACTIVE_STATES)}
    procs = table.procs.values()
    tagged = {t.run_id for t in procs if t.run_id} | {
        t.watchdog_for for t in procs if t.watchdog_for
    }
    for run_id in tagged - set(records):
        if run_id is None:
            continue
        rec = journal.get_run(run_id)
        if rec is not None:
            records[run_id] = rec
    return list(records.values())


# -- the snapshot ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RankPlace:
    """Where a rank sits in its job, and the step it reported."""

    global_rank: int | None
    local_rank: int | None
    node_rank: int | None
    step: int | None


def rank_place(environ: bytes | None, report: RankReport | None) -> RankPlace:
    """A rank's place from its own report, else its launcher's variables (torchrun,
    Lightning, srun)."""
    if report is not None:
        return RankPlace(report.global_rank, report.local_rank, report.node_rank, report.step)
    place = launcher_rank(environ)
    if place is None:
        return RankPlace(None, None, None, None)
    return RankPlace(*place, None)


def _process_view(
    st: ProcStat,
    role: str,
    flags: tuple[str, ...],
    found_by: FoundBy,
    *,
    now: float,
    btime: float,
    previous: dict[tuple[int, int], tuple[int, float]],
    gpu: GpuReading | None,
    cmdline: list[str],
    uid: int | None,
    place: RankPlace | None = None,
    net: NetBytes | None = None,
) -> ProcessView:
    ticks = st.utime + st.stime
    age = max(0.0, now - start_epoch(st.start, btime)) if btime else None
    cpu: float | None = None
    prev = previous.get((st.pid, st.start))
    if prev is not None and now > prev[1]:
        cpu = 100.0 * (ticks - prev[0]) / CLOCK_TICKS / (now - prev[1])
    elif age:
        cpu = 100.0 * ticks / CLOCK_TICKS / age
    io_r, io_w = read_io(st.pid)
    gp = gpu.by_pid.get(st.pid) if gpu is not None else None
    return ProcessView(
        pid=st.pid,
        start=st.start,
        ppid=st.ppid,
        uid=uid,
        role=role,
        state=st.state,
        age_s=round(age, 3) if age is not None else None,
        cpu_percent=round(cpu, 1) if cpu is not None else None,
        rss_bytes=st.rss_pages * PAGE_SIZE,
        threads=st.num_threads,
        io_read_bytes=io_r,
        io_write_bytes=io_w,
        gpu_mem_bytes=gp.mem_bytes if gp is not None else None,
        gpu_util=gp.util if gp is not None else None,
        cmdline=shlex.join(cmdline) if cmdline else None,
        flags=flags,
        found_by=found_by,
        cpu_ticks=ticks,
        global_rank=place.global_rank if place is not None else None,
        local_rank=place.local_rank if place is not None else None,
        node_rank=place.node_rank if place is not None else None,
        step=place.step if place is not None else None,
        net_sent_bytes=net.sent if net is not None else None,
        net_recv_bytes=net.received if net is not None else None,
    )


def build_run_view(
    group: RunMembers,
    table: ProcessTable,
    *,
    now: float,
    btime: float,
    previous: dict[tuple[int, int], tuple[int, float]],
    gpu: GpuReading | None,
    net: dict[int, NetBytes] | None = None,
) -> RunView:
    """Read the per-process fields of one run's processes and decide roles and flags."""
    rec = group.record
    orphans = orphan_pids(group, table)
    infos: dict[int, roles.ProcInfo] = {}
    environs: dict[int, bytes | None] = {}
    for pid, m in group.members.items():
        environs[pid] = read_environ(pid)
        infos[pid] = roles.ProcInfo(
            pid=pid,
            ppid=m.stat.ppid,
            comm=m.stat.comm,
            cmdline=tuple(read_cmdline(pid)),
            rank=roles.rank_of(environs[pid]),
        )
    reports = read_reports(ranks_dir(rec.run_dir)) if rec is not None else {}
    trainer_pid: int | None = None
    if rec is not None and group.trainer_alive:
        trainer_pid = rec.child_pid
    elif rec is None:
        leaders = [p for p, m in group.members.items() if m.stat.sid == p]
        trainer_pid = min(leaders) if leaders else None
    role_of: dict[int, str] = {}
    trainer_argv: tuple[str, ...] | None = tuple(rec.argv) if rec is not None else None
    if trainer_pid is not None:
        role_of[trainer_pid] = roles.TRAINER
        if trainer_pid in infos:
            trainer_argv = infos[trainer_pid].cmdline

    def role(pid: int, depth: int = 0) -> str:
        if pid in role_of:
            return role_of[pid]
        info = infos[pid]
        parent = infos.get(info.ppid)
        parent_role = role(info.ppid, depth + 1) if parent is not None and depth < 64 else None
        role_of[pid] = roles.classify(info, parent, parent_role, trainer_argv)
        return role_of[pid]

    views: list[ProcessView] = []

    def view(st: ProcStat, role_: str, flags: tuple[str, ...], how: FoundBy) -> ProcessView:
        info = infos.get(st.pid)
        cmd = list(info.cmdline) if info is not None else read_cmdline(st.pid)
        uid = read_uid(st.pid)
        if rec is None and other_user(uid):
            flags = (*flags, OTHER_USER)  # cleanup leaves it alone without --all-users
        place = None
        if role_ in (roles.RANK, roles.TRAINER) and (info is None or info.rank is not None):
            place = rank_place(environs.get(st.pid), reports.get(st.pid))
        return _process_view(
            st,
            role_,
            flags,
            how,
            now=now,
            btime=btime,
            previous=previous,
            gpu=gpu,
            cmdline=cmd,
            uid=uid,
            place=place,
            net=net.get(st.pid) if net is not None else None,
        )

    if group.supervisor is not None:
        views.append(view(group.supervisor, roles.SUPERVISOR, (), FoundBy.JOURNAL))
    if group.watchdog is not None:
        views.append(view(group.watchdog, roles.WATCHDOG, (), FoundBy.JOURNAL))
    for m in sorted(group.members.values(), key=lambda m: (m.start, m.pid)):
        views.append(view(m.stat, role(m.pid), (ORPHAN,) if m.pid in orphans else (), m.found_by))
    run_flags: list[str] = []
    if orphans:
        run_flags.append(ORPHAN)
    if is_stale(group):
        run_flags.append(STALE)
    user = rec.user if rec is not None else _user_name(views[0].uid if views else None)
    return RunView(
        id=group.run_id,
        name=rec.name if rec is not None else None,
        user=user,
        state=str(rec.state) if rec is not None else None,
        flags=tuple(run_flags),
        supervisor_pid=rec.supervisor_pid if rec is not None else None,
        processes=tuple(views),
        record=rec,
    )


def _net_bytes(pids: list[int]) -> dict[int, NetBytes] | None:
    """Each process's TCP bytes from one socket-diagnostics dump (None: not readable here)."""
    if not pids:
        return {}
    try:
        return process_bytes(pids)
    except OSError:
        return None


def collect(
    journal: Journal | None = None,
    *,
    previous: MonitorSnapshot | None = None,
    match: str | None = None,
    all_users: bool = False,
    gpu: bool = True,
) -> MonitorSnapshot:
    """Take a snapshot of every run on the machine.

    Args:
        journal: the run journal (default: the one under `$OCRTRAIN_HOME`).
        previous: an earlier snapshot; CPU % is then measured over the interval between them.
        match: also list pre-ocrtrain processes whose interpreter + script path match this
            pattern (see `ocrtrain.monitor.legacy`).
        all_users: with `match`, include other users' processes (root only).
        gpu: read NVML (skipped cheaply when no NVIDIA driver is present).

    Raises:
        UsageError: `all_users` without root, or an empty `match`.
    """
    if journal is None:
        from ocrtrain.procman import Journal

        journal = Journal()
    total0, busy0 = _cpu_ticks()
    t0 = time.time()
    table = ProcessTable.scan()
    records = journal_records(journal, table)
    groups = by_run(table, records)
    gpu_reading = None
    if gpu:
        from ocrtrain.monitor import gpu as gpu_mod

        gpu_reading = gpu_mod.read()
    now = time.time()
    btime = boot_time()
    prev_ticks: dict[tuple[int, int], tuple[int, float]] = {}
    if previous is not None:
        for r in previous.runs:
            for p in r.processes:
                prev_ticks[(p.pid, p.start)] = (p.cpu_ticks, previous.taken_at)
    shown = [
        g
        for g in groups.values()
        if g.members or g.supervisor is not None or g.watchdog is not None or is_stale(g)
    ]
    net = _net_bytes([pid for g in shown for pid in g.members])
    runs = [
        build_run_view(
            g, table, now=now, btime=btime, previous=prev_ticks, gpu=gpu_reading, net=net
        )
        for g in shown
    ]
    runs.sort(key=lambda r: (r.record.created_at if r.record else 0.0, r.id))
    legacy = None
    if match is not None:
        from ocrtrain.monitor import legacy as legacy_mod

        legacy = tuple(
            legacy_mod.find(match, table.procs, all_users=all_users, now=now, btime=btime)
        )
    total1, busy1 = _cpu_ticks()
    host_cpu: float | None = None
    base_total, base_busy = (
        (previous.cpu_total_ticks, previous.cpu_busy_ticks) if previous else (total0, busy0)
    )
    if None not in (base_total, base_busy, total1, busy1):
        dt = total1 - base_total  # type: ignore[operator]
        if dt > 0:
            host_cpu = round(100.0 * (busy1 - base_busy) / dt, 1)  # type: ignore[operator]
    mem_total, mem_used = _meminfo()
    host = HostView(
        cpu_percent=host_cpu,
        mem_total=mem_total,
        mem_used=mem_used,
        gpus=tuple(gpu_reading.devices) if gpu_reading is not None else (),
        nics={name: n for name, n in nic_bytes().items() if name != "lo"},
    )
    del t0
    return MonitorSnapshot(
        taken_at=now,
        host=host,
        runs=tuple(runs),
        legacy=legacy,
        cpu_total_ticks=total1,
        cpu_busy_ticks=busy1,
    )
