"""Atomic checkpoint files: temp file in the same folder, fsync, rename, fsync the folder.

A SIGKILL at any moment leaves either the previous complete file or the new complete one,
never a torn `last.ckpt`. Leftover `*.tmp-<pid>` files of killed saves are removed at start.
"""

from __future__ import annotations

import io
import logging
import os
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ocrtrain.train.errors import OutputWriteError

log = logging.getLogger(__name__)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(folder: str | Path) -> None:
    """Delete temp files of saves whose process is gone."""
    folder = Path(folder)
    if not folder.is_dir():
        return
    for tmp in folder.glob("*.tmp-*"):
        pid = tmp.name.rsplit("-", 1)[-1]
        if pid.isdigit() and not _pid_alive(int(pid)):
            log.info("removing %s, left by an interrupted save", tmp)
            tmp.unlink(missing_ok=True)


def atomic_write(path: str | Path, data: bytes, test_delay_s: float = 0.0) -> None:
    """Write `data` to `path` so that readers see the old or the new file, never a mix."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            if test_delay_s > 0:
                # Test knob: stop half-way so a test can SIGKILL the process mid-save.
                f.write(data[: len(data) // 2])
                f.flush()
                time.sleep(test_delay_s)
                f.write(data[len(data) // 2 :])
            else:
                f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's torch checkpoint IO, with atomic saves."""

    def __init__(self, test_delay_s: float = 0.0) -> None:
        super().__init__()
        self.test_delay_s = test_delay_s

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        buf = io.BytesIO()
        torch.save(checkpoint, buf)
        try:
            atomic_write(path, buf.getvalue(), self.test_delay_s)
        except OSError as exc:
            raise OutputWriteError(
                f"cannot save checkpoint {path}: {exc.strerror or exc} (the previous one is kept)"
            ) from exc
