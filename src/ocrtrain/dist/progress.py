"""A rank's side of the progress reports (`ocrtrain.procman.RankReport`): the rank records
itself in the journal and rewrites its report file as it makes progress.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, replace
from pathlib import Path

from ocrtrain.dist.env import JobShape
from ocrtrain.procman import (
    RUN_ID_ENV,
    Journal,
    RankRecord,
    RankReport,
    read_stat,
)

log = logging.getLogger(__name__)

WRITE_EVERY_S = 0.5  # at most this often: progress is judged in seconds, not steps


def record_in_journal(shape: JobShape) -> None:
    """Record this rank in its node's run (and, from local rank 0, the run's job, node,
    number of nodes and rendezvous) in the journal; a no-op outside a supervised run."""
    run_id = os.environ.get(RUN_ID_ENV)
    st = read_stat(os.getpid())
    if not run_id or st is None:
        return
    rank = RankRecord(os.getpid(), st.start, shape.global_rank, shape.local_rank, shape.node_rank)
    try:
        with Journal() as journal:
            journal.record_rank(run_id, rank)
            if shape.local_rank == 0:
                journal.update_run(
                    run_id,
                    job_id=shape.job_id,
                    node_rank=shape.node_rank,
                    num_nodes=shape.num_nodes,
                    rdzv_endpoint=rdzv_endpoint(),
                )
    except Exception:  # the journal is a record: training goes on without it
        log.exception("could not record rank %d in the journal", shape.global_rank)


def rdzv_endpoint() -> str | None:
    """The rendezvous (or main) address the job's ranks meet at, from the launcher's env."""
    addr, port = os.environ.get("MASTER_ADDR"), os.environ.get("MASTER_PORT")
    return f"{addr}:{port}" if addr and port else None


class ProgressFile:
    """A rank's report file, written atomically (rename) and at most every `WRITE_EVERY_S`."""

    def __init__(self, folder: Path, shape: JobShape, timeout_s: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / f"{shape.global_rank}.json"
        self.report = RankReport(
            os.getpid(),
            shape.job_id,
            shape.global_rank,
            shape.local_rank,
            shape.node_rank,
            shape.num_nodes,
            shape.world_size,
            rdzv_endpoint(),
            timeout_s,
            updated_at=time.time(),
        )
        self._written = 0.0
        self._write()

    def _write(self) -> None:
        tmp = self.path.with_suffix(".tmp")
        with contextlib.suppress(OSError):  # progress reports must never stop training
            tmp.write_text(json.dumps(asdict(self.report)))
            tmp.replace(self.path)
        self._written = time.monotonic()

    def progress(self, step: int, trained: bool) -> None:
        """The rank is alive and at `step`; written now if the last write is old enough."""
        first = trained and not self.report.trained
        self.report = replace(
            self.report, step=step, trained=self.report.trained or trained, updated_at=time.time()
        )
        if first or time.monotonic() - self._written >= WRITE_EVERY_S:
            self._write()
