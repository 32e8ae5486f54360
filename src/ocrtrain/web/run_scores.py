"""A run's numbers for choosing a model, from its metrics.jsonl: the best validation CER (and
the line accuracy and step of that validation), the last step and the last training loss.

Files are read incrementally: each call parses only what was appended since the last one, so
the runs list can show every run's scores at each refresh.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class RunScores:
    best_cer: float | None = None
    line_acc_at_best: float | None = None
    best_step: int | None = None
    step: int | None = None
    last_loss: float | None = None


@dataclass
class _Cursor:
    inode: int
    offset: int
    scores: RunScores


_cursors: dict[str, _Cursor] = {}
_lock = threading.Lock()
MAX_CURSORS = 4096


def _number(value: Any) -> float | None:
    ok = isinstance(value, int | float) and not isinstance(value, bool)
    return float(value) if ok else None


def fold(scores: RunScores, rec: dict[str, Any]) -> RunScores:
    """The scores after one more metrics record."""
    step = rec.get("step")
    if isinstance(step, int) and (scores.step is None or step >= scores.step):
        scores = replace(scores, step=step)
    loss = _number(rec.get("train/loss"))
    if loss is not None:
        scores = replace(scores, last_loss=loss)
    cer = _number(rec.get("val/cer"))
    if cer is not None and (scores.best_cer is None or cer < scores.best_cer):
        scores = replace(
            scores,
            best_cer=cer,
            line_acc_at_best=_number(rec.get("val/line_acc")),
            best_step=step if isinstance(step, int) else None,
        )
    return scores


def scores_of(path: Path) -> RunScores:
    """The scores of the metrics file at `path` (empty scores if it cannot be read)."""
    key = str(path)
    try:
        st = os.stat(path)
    except OSError:
        return RunScores()
    with _lock:
        cur = _cursors.get(key)
        if cur is None or cur.inode != st.st_ino or st.st_size < cur.offset:
            cur = _Cursor(st.st_ino, 0, RunScores())
        if st.st_size > cur.offset:
            try:
                with open(path, "rb") as f:
                    f.seek(cur.offset)
                    data = f.read(st.st_size - cur.offset)
            except OSError:
                return cur.scores
            end = data.rfind(b"\n") + 1  # a record still being written waits for the next call
            for line in data[:end].splitlines():
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue
                if isinstance(rec, dict):
                    cur.scores = fold(cur.scores, rec)
            cur.offset += end
        if len(_cursors) >= MAX_CURSORS and key not in _cursors:
            _cursors.clear()
        _cursors[key] = cur
        return cur.scores
