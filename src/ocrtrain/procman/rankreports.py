"""Where each rank of a job is: a small JSON file per rank in its node's run folder
(`RUN_DIR/ranks/GLOBAL_RANK.json`), rewritten by the rank as it makes progress.

The node's agent reads them to tell a stalled rank from a working one, `ocrtrain ps` and the
supervisor's samples read them for the step each rank is at. A file, not the process group:
a rank stuck in a collective or stopped cannot answer anything, but the time it last made
progress stays on disk. The writer is the training side's (`ocrtrain.dist.progress`).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ocrtrain.procman.envnames import RUN_DIR_ENV

RANKS_DIR = "ranks"


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
