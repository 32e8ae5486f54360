"""A small JSON record beside each checkpoint (`best.ckpt.json`): its step, epoch and the
latest validation scores, so the web UI lists checkpoints without loading torch files."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

from ocrtrain.train.checkpoint_io import atomic_write

log = logging.getLogger(__name__)

SUFFIX = ".json"
SCORES = ("val/cer", "val/line_acc", "train/loss")


def record_path(ckpt: str | Path) -> Path:
    path = Path(ckpt)
    return path.with_name(path.name + SUFFIX)


def write_record(ckpt: str | Path, trainer: Any, monitor: str | None) -> None:
    """Write the record of the checkpoint `trainer` has just saved at `ckpt` (rank 0 only)."""
    if not trainer.is_global_zero:
        return
    metrics = trainer.callback_metrics
    doc = {
        "step": int(trainer.global_step),
        "epoch": int(trainer.current_epoch),
        "saved_at": time.time(),
        "monitor": monitor,
        "metrics": {k: round(float(metrics[k]), 6) for k in SCORES if k in metrics},
    }
    try:
        atomic_write(record_path(ckpt), (json.dumps(doc) + "\n").encode())
    except OSError as exc:  # a convenience for listings: the checkpoint itself is saved
        log.warning("could not write %s: %s", record_path(ckpt), exc.strerror or exc)
