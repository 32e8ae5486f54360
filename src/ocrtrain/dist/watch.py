"""The agent's stall watch: a rank of this node without progress for `dist.timeout_s` ends
the job, with a report that says which rank stalled and where every rank of the node is.

torchrun sees only whether its workers live: a rank stopped (SIGSTOP), stuck in
uninterruptible sleep or waiting in a collective for a dead peer looks healthy to it, and
gloo's own timeout is 30 min. Each rank writes when it last made progress
(`ocrtrain.dist.progress`); this thread reads those files every second. On a stall it
writes one `ERROR:` line per stalled rank and every rank's Python stack into the run's log,
records both in the journal (event `stalled`), waits `PEERS_FIRST_S` (the other nodes'
agents see their waiting ranks idle as long and take their stacks too), then SIGKILLs the
node's ranks (a stalled job
cannot agree on a checkpoint; their DataLoader workers follow by their parent-death signal).
torchrun then ends the node's job and the peers' collectives fail at once; if torchrun
itself hangs (its rendezvous host unreachable), the agent exits after `EXIT_WAIT_S`.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ocrtrain.procman import (
    RUN_ID_ENV,
    EventKind,
    Journal,
    RankReport,
    StackDump,
    collect_stacks,
    ranks_dir,
    read_cmdline,
    read_reports,
    read_stat,
)

log = logging.getLogger(__name__)

POLL_S = 1.0
# Ranks of other nodes that wait for a stalled one went idle at the same moment: their agents
# find them within a poll or two. Killing later lets them take their ranks' stacks first.
PEERS_FIRST_S = 2 * POLL_S
EXIT_WAIT_S = 10.0  # after the ranks are killed: how long torchrun may take to notice
STACK_CHARS = 20_000  # per rank, in the journal
_STATES = {
    "T": "it is stopped (SIGSTOP): it cannot answer",
    "t": "it is stopped by a debugger: it cannot answer",
    "D": "it is in uninterruptible sleep (D state: a driver or a filesystem)",
}


def local_ranks() -> list[int]:
    """This agent's children: the ranks it started (in their own sessions)."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


@dataclass(frozen=True, slots=True)
class RankState:
    """One local rank at the moment of a stall."""

    report: RankReport
    state: str  # /proc state letter ("?" once gone)
    idle_s: float
    stack: str = ""

    @property
    def stalled(self) -> bool:
        return self.report.trained and self.idle_s >= self.report.timeout_s

    def verdict(self) -> str:
        r = self.report
        how = _STATES.get(self.state, "its stack below shows where it waits")
        return (
            f"rank {r.global_rank} (node {r.node_rank}, pid {r.pid}) made no progress for "
            f"{self.idle_s:.0f} s since step {r.step} (dist.timeout_s={r.timeout_s:g}): {how}"
        )

    def as_detail(self) -> dict[str, object]:
        r = self.report
        return {
            "global_rank": r.global_rank,
            "local_rank": r.local_rank,
            "node_rank": r.node_rank,
            "pid": r.pid,
            "step": r.step,
            "state": self.state,
            "idle_s": round(self.idle_s, 1),
            "stalled": self.stalled,
            "stack": self.stack[-STACK_CHARS:],
        }


def rank_states(reports: dict[int, RankReport], pids: list[int], now: float) -> list[RankState]:
    """The reports of the live `pids`, with each process's state, by global rank."""
    out = []
    for pid in pids:
        report = reports.get(pid)
        st = read_stat(pid)
        if report is not None and st is not None:
            out.append(RankState(report, st.state, now - report.updated_at))
    return sorted(out, key=lambda s: s.report.global_rank)


class StallWatch(threading.Thread):
    """Watches this node's ranks from a daemon thread of the agent; `verdict` says why the
    job was ended (None: it was not)."""

    def __init__(self) -> None:
        super().__init__(name="ocrtrain-stall-watch", daemon=True)
        self.folder = ranks_dir()
        self.verdict: str | None = None
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()

    def run(self) -> None:
        while not self._stop.wait(POLL_S):
            states = rank_states(read_reports(self.folder), local_ranks(), time.time())
            if any(s.stalled for s in states):
                self._end(states)
                return

    def _end(self, states: list[RankState]) -> None:
        stalled = [s for s in states if s.stalled]
        # A stopped process cannot dump its stack; asking would only wait for nothing.
        answering = [s.report.pid for s in states if s.state not in ("T", "t")]
        stacks = {d.pid: d.text for d in self._stacks(answering)}
        states = [
            RankState(s.report, s.state, s.idle_s, stacks.get(s.report.pid, "")) for s in states
        ]
        lines = [s.verdict() for s in stalled]
        self.verdict = lines[0] + (f" (and {len(lines) - 1} more)" if len(lines) > 1 else "")
        for line in lines:
            print(f"ERROR: {line}; ending the job", file=sys.stderr, flush=True)
        self._record(states)
        self._stop.wait(PEERS_FIRST_S)
        for s in states:
            with contextlib.suppress(ProcessLookupError):  # the rank just ended
                os.kill(s.report.pid, signal.SIGKILL)
        if not self._stop.wait(EXIT_WAIT_S):
            print("ERROR: torchrun did not end its job: exiting", file=sys.stderr, flush=True)
            os._exit(1)

    def _stacks(self, pids: list[int]) -> list[StackDump]:
        log_path = self._log_path()
        if log_path is None or not pids:
            return []
        return collect_stacks(pids, log_path, read_cmdline)

    @staticmethod
    def _log_path() -> Path | None:
        """The run's log, where the ranks' stderr goes (they dump their stacks there)."""
        run_id = os.environ.get(RUN_ID_ENV)
        if not run_id:
            return None
        with contextlib.suppress(Exception), Journal() as journal:  # a report, not a must
            run = journal.get_run(run_id)
            return Path(run.log_path) if run is not None else None
        return None

    def _record(self, states: list[RankState]) -> None:
        run_id = os.environ.get(RUN_ID_ENV)
        if not run_id:
            return
        try:
            with Journal() as journal:
                journal.add_event(
                    run_id,
                    EventKind.STALLED,
                    reason=self.verdict,
                    ranks=[s.as_detail() for s in states],
                )
        except Exception:  # the journal must not keep a stalled job alive
            log.exception("could not record the stall in the journal")
