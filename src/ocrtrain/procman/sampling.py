"""Resource samples of a run and its limits: what the run uses, and whether that breaches
`--max-memory` or `--timeout`.

Both are values: a sample to store, a breach to act on. Acting (storing, stopping the run) is
the supervisor's job.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from ocrtrain.procman import procfs
from ocrtrain.procman.journal import SampleRecord
from ocrtrain.procman.resources import gpu_memory_by_pid
from ocrtrain.procman.spec import RunSpec


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

    def take(self, members: dict[int, procfs.ProcStat], now: float) -> SampleRecord:
        wall = now - self.last_ts if self.last_ts else 0.0
        self.last_ts = now
        rss = sum(st.rss_pages for st in members.values()) * os.sysconf("SC_PAGE_SIZE")
        ticks = {(st.pid, st.start): st.utime + st.stime for st in members.values()}
        cpu = 0.0
        if wall > 0:
            delta = sum(t - self._last_ticks.get(k, t) for k, t in ticks.items())
            cpu = 100.0 * delta / procfs.CLOCK_TICKS / wall
        self._last_ticks = ticks
        gpu = gpu_memory_by_pid()
        gpu_bytes = sum(gpu.get(pid, 0) for pid in members) if gpu is not None else None
        return SampleRecord(self.run_id, time.time(), len(members), cpu, rss, gpu_bytes)


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
