"""Resource samples of a run and its limits: what the run uses, and whether that breaches
`--max-memory` or `--timeout`.

Both are values: a sample to store, a breach to act on. Acting (storing, stopping the run) is
the supervisor's job.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ocrtrain.procman import procfs
from ocrtrain.procman.jobranks import run_ranks
from ocrtrain.procman.journal import RankRecord, RankSample, SampleRecord
from ocrtrain.procman.netbytes import NetBytes, process_bytes
from ocrtrain.procman.rankreports import read_reports
from ocrtrain.procman.resources import gpu_memory_by_pid
from ocrtrain.procman.spec import RunSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class LimitBreach:
    """A limit the run went past."""

    limit: str  # the RunSpec field: "timeout" or "max_memory"
    reason: str  # for the user, e.g. "ran longer than --timeout 60 s"


@dataclass
class Sampler:
    """Turns the run's processes into a SampleRecord every `interval` seconds; CPU use is
    measured between one sample and the next."""

    run_id: str
    interval: float
    last_ts: float = 0.0  # monotonic time of the last sample
    _last_ticks: dict[tuple[int, int], int] = field(default_factory=dict)

    def due(self, now: float) -> bool:
        return now - self.last_ts >= self.interval

    def next_due(self) -> float:
        return self.last_ts + self.interval

    def take(
        self,
        members: dict[int, procfs.ProcStat],
        now: float,
        ranks: Sequence[RankRecord] = (),
        reports_dir: Path | None = None,
    ) -> SampleRecord:
        """A sample of `members`, and of each of their ranks (the rank and its descendants:
        those `ranks` recorded, and those a launcher started), with the step its report in
        `reports_dir` (by pid) names; the reports are read only when there are ranks."""
        wall = now - self.last_ts if self.last_ts else 0.0
        self.last_ts = now
        ticks = {(st.pid, st.start): st.utime + st.stime for st in members.values()}
        last_ticks, self._last_ticks = self._last_ticks, ticks
        gpu = gpu_memory_by_pid()

        def usage(stats: list[procfs.ProcStat]) -> tuple[float, int, int | None]:
            cpu = 0.0
            if wall > 0:
                keys = [(st.pid, st.start) for st in stats]
                delta = sum(ticks[k] - last_ticks.get(k, ticks[k]) for k in keys)
                cpu = 100.0 * delta / procfs.CLOCK_TICKS / wall
            rss = sum(st.rss_pages for st in stats) * os.sysconf("SC_PAGE_SIZE")
            gpu_bytes = sum(gpu.get(st.pid, 0) for st in stats) if gpu is not None else None
            return cpu, rss, gpu_bytes

        cpu, rss, gpu_bytes = usage(list(members.values()))
        per_rank = _rank_members(members, ranks)
        net = _net_bytes([pid for stats in per_rank.values() for pid in stats])
        reports = read_reports(reports_dir) if per_rank else {}
        samples = []
        for rank, stats in per_rank.items():
            r_cpu, r_rss, r_gpu = usage(list(stats.values()))
            traffic = [net[pid] for pid in stats if pid in net] if net is not None else None
            report = reports.get(rank.pid)
            samples.append(
                RankSample(
                    global_rank=rank.global_rank,
                    local_rank=rank.local_rank,
                    node_rank=rank.node_rank,
                    pid=rank.pid,
                    n_procs=len(stats),
                    cpu_percent=r_cpu,
                    rss_bytes=r_rss,
                    gpu_bytes=r_gpu,
                    net_sent_bytes=sum(t.sent for t in traffic) if traffic is not None else None,
                    net_recv_bytes=(
                        sum(t.received for t in traffic) if traffic is not None else None
                    ),
                    step=report.step if report is not None else None,
                )
            )
        return SampleRecord(
            self.run_id, time.time(), len(members), cpu, rss, gpu_bytes, tuple(samples)
        )


def _rank_members(
    members: dict[int, procfs.ProcStat], recorded: Sequence[RankRecord]
) -> dict[RankRecord, dict[int, procfs.ProcStat]]:
    """Each live rank's processes: the rank and its descendants."""
    ranks = {r.pid: r for r in run_ranks(members, recorded)}
    out: dict[RankRecord, dict[int, procfs.ProcStat]] = {r: {} for r in ranks.values()}
    for pid, st in members.items():
        seen, cur = 0, pid
        while cur in members and seen < 64:
            if cur in ranks:
                out[ranks[cur]][pid] = st
                break
            cur, seen = members[cur].ppid, seen + 1
    return out


def _net_bytes(pids: list[int]) -> dict[int, NetBytes] | None:
    """TCP bytes per process (None when the kernel's socket diagnostics cannot be read)."""
    if not pids:
        return {}
    try:
        return process_bytes(pids)
    except OSError as exc:
        log.debug("no socket counters: %s", exc)
        return None


def timeout_breach(spec: RunSpec, elapsed: float) -> LimitBreach | None:
    if spec.timeout is not None and elapsed >= spec.timeout:
        return LimitBreach("timeout", f"ran longer than --timeout {spec.timeout:g} s")
    return None


def memory_breach(spec: RunSpec, sample: SampleRecord) -> LimitBreach | None:
    if spec.max_memory is not None and sample.rss_bytes > spec.max_memory:
        return LimitBreach(
            "max_memory",
            f"RSS {sample.rss_bytes // 2**20} MiB exceeded "
            f"--max-memory {spec.max_memory // 2**20} MiB",
        )
    return None
