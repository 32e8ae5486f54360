"""An experiment's run folders: each run keeps its own checkpoints, `resume=auto` picks the
experiment's most recent one, and `<experiment>/latest` points at the newest run.

Layout (`configs/paths/default.yaml`)::

    outputs/<experiment>/runs/<time>/checkpoints/{last,best}.ckpt
    outputs/<experiment>/latest -> runs/<time>

Folders from before per-run checkpoints (`outputs/<experiment>/checkpoints/`) are left as
they are: `resume=auto` still finds their `last.ckpt`, and no run writes there any more.
"""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

LAST = "last.ckpt"
LATEST = "latest"


def run_checkpoints(experiment_dir: Path) -> list[Path]:
    """Every `last.ckpt` of the experiment, oldest save first (legacy folder included)."""
    found = list(experiment_dir.glob(f"runs/*/checkpoints/{LAST}"))
    legacy = experiment_dir / "checkpoints" / LAST
    if legacy.is_file():
        found.append(legacy)
    stamped = []
    for path in found:
        with contextlib.suppress(OSError):
            stamped.append((path.stat().st_mtime, str(path), path))
    return [p for _, _, p in sorted(stamped)]


def latest_checkpoint(experiment_dir: Path) -> Path | None:
    """The `last.ckpt` saved most recently in the experiment, or None."""
    found = run_checkpoints(experiment_dir)
    if not found:
        return None
    latest = found[-1]
    if latest.parent.parent == experiment_dir:
        log.warning(
            "resume=auto: %s is from before per-run checkpoint folders; this run saves its "
            "own under runs/, the old folder is left as it is",
            latest.parent,
        )
    return latest


def point_latest(experiment_dir: Path, output_dir: Path) -> None:
    """Make `<experiment>/latest` a relative link to `output_dir` (replaced atomically)."""
    link = experiment_dir / LATEST
    try:
        target = os.path.relpath(output_dir, experiment_dir)
        tmp = experiment_dir / f".{LATEST}.tmp-{os.getpid()}"
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(target, target_is_directory=True)
        os.replace(tmp, link)
    except OSError as exc:  # a convenience only: the run goes on without it
        log.warning("could not point %s at this run: %s", link, exc.strerror or exc)
