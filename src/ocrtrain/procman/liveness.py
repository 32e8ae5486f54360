"""Whether a run's supervisor and watchdog live, and the startup check built on it: runs the
journal calls active whose supervisor and watchdog are both gone (a reboot, an OOM kill of
both) are closed as `lost`, so the journal never lies for long."""

from __future__ import annotations

import logging
import time

from ocrtrain.procman import procfs
from ocrtrain.procman.journal import ACTIVE_STATES, EventKind, Journal, RunRecord, RunState

log = logging.getLogger(__name__)

STARTING_TIMEOUT_S = 60.0  # a run may sit in `starting` this long before its supervisor shows


def supervisor_alive(run: RunRecord) -> bool:
    """Whether the run's supervisor (pid + start time) is still running."""
    if run.supervisor_pid is None or run.supervisor_start is None:
        return run.state == RunState.STARTING and time.time() - run.created_at < STARTING_TIMEOUT_S
    return procfs.is_alive(run.supervisor_pid, run.supervisor_start)


def watchdog_alive(run: RunRecord) -> bool:
    if run.watchdog_pid is None or run.watchdog_start is None:
        return False
    return procfs.is_alive(run.watchdog_pid, run.watchdog_start)


def reconcile(journal: Journal) -> list[RunRecord]:
    """Mark active runs without a living supervisor or watchdog as `lost`.

    Returns:
        The runs that were marked lost now.
    """
    lost: list[RunRecord] = []
    for run in journal.list_runs(states=ACTIVE_STATES):
        if supervisor_alive(run) or watchdog_alive(run):
            continue
        reason = f"supervisor (pid {run.supervisor_pid}) is gone; found by a startup check"
        if journal.transition(
            run.id,
            RunState.LOST,
            EventKind.MARKED_LOST,
            only_from=ACTIVE_STATES,
            detail={"reason": reason},
            reason=reason,
        ):
            log.info("run %s marked lost: %s", run.id, reason)
            lost.append(run)
    return lost
