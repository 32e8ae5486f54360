"""Where each rank of a job is: a small JSON file per rank in its node's run folder
(`$OCRTRAIN_RUN_DIR/ranks/GLOBAL_RANK.json`), rewritten as the rank makes progress.

The node's agent reads them to tell a stalled rank (no progress for `dist.timeout_s`) from a
working one, and `ocrtrain ps` reads them for the step each rank is at. A file, not the
process group: a rank stuck in a collective or stopped cannot answer anything, but the time
it last made progress stays on disk.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ocrtrain.dist.env import JobShape
from ocrtrain.procman import RUN_DIR_ENV, RUN_ID_ENV, Journal, RankRecord, read_stat

log = logging.getLogger(__name__)

RANKS_DIR = "ranks"
WRITE_EVERY_S = 0.5  # at most this often: progress is judged in seconds, not steps


@dataclass(frozen=True, slots=True)
class RankReport:
    """One rank's place in its job and how far it got."""

    pid: int
    job_id: str
    global_rank: int
    local_rank: int
    node_rank: int
    num_nodes: int
    world_size: int
    rdzv_endpoint: str | None
    timeout_s: float  # dist.timeout_s: no progress this long is a stall
    step: int = 0
    trained: bool = False  # a training batch has ended (before that, start-up is no stall)
    updated_at: float = 0.0  # wall clock of the last progress

    @classmethod
    def from_json(cls, data: Any) -> RankReport | None:
        """A report from a file's JSON, or None if it is not one (data, never trusted)."""
        try:
            return cls(**{k: data[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError):
            return None


def ranks_dir(run_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The folder of rank reports of this node's run (None outside a supervised run)."""
    base = run_dir if run_dir is not None else os.environ.get(RUN_DIR_ENV)
    return Path(base) / RANKS_DIR if base else None


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


def read_reports(folder: Path | None) -> dict[int, RankReport]:
    """The reports in `folder` by pid (unreadable or foreign files are skipped)."""
    out: dict[int, RankReport] = {}
    if folder is None:
        return out
    try:
        paths = list(folder.glob("*.json"))
    except OSError:
        return out
    for path in paths:
        with contextlib.suppress(OSError, ValueError):
            report = RankReport.from_json(json.loads(path.read_text()))
            if report is not None:
                out[report.pid] = report
    return out


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
