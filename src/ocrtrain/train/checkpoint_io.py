"""Checkpoint files: atomic saves, and loads that never run code.

Saves go to a temp file in the same folder, fsync, rename, fsync the folder: a SIGKILL at any
moment leaves either the previous complete file or the new complete one, never a torn
`last.ckpt`. Leftover `*.tmp-<pid>` files of killed saves are removed at start.

Every load (resume, Lightning's restore, predict, eval) goes through `safe_load`: a checkpoint
is a pickle, and a pickle from anyone else could run any code when unpickled.
"""

from __future__ import annotations

import io
import logging
import os
import pickle
import re
import time
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.plugins.io import TorchCheckpointIO

from ocrtrain.train.errors import CheckpointError, OutputWriteError

log = logging.getLogger(__name__)


# What a checkpoint may name beyond tensors, storages and plain containers (PyTorch's
# weights-only allow-list): nothing. ocrtrain writes plain hyperparameters (lit_module), plain
# callback, loop, optimizer and scheduler states; a checkpoint needing more is not one of ours.
SAFE_GLOBALS: tuple[Any, ...] = ()
_UNSUPPORTED = re.compile(r"Unsupported global: GLOBAL ([\w.]+)")


def safe_load(path: str | Path, map_location: Any = "cpu") -> Any:
    """`torch.load(weights_only=True)` allowing only `SAFE_GLOBALS` beyond PyTorch's own.

    Raises:
        CheckpointError: unreadable, truncated, or naming a global outside the allow-list.
    """
    try:
        with torch.serialization.safe_globals(list(SAFE_GLOBALS)):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = _UNSUPPORTED.search(str(exc))
        what = found.group(1) if found else "objects beyond tensors and plain values"
        raise CheckpointError(
            f"refusing checkpoint {path}: it contains {what}, which ocrtrain checkpoints never "
            "hold (loading it could run code)"
        ) from None
    except Exception as exc:
        # torch's own message goes on for several sentences: its first one names the problem
        reason = str(exc).split(". ")[0].strip() or type(exc).__name__
        raise CheckpointError(
            f"cannot read checkpoint {path} (truncated or not one): {reason}"
        ) from exc


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
    """Lightning's torch checkpoint IO, with atomic saves and weights-only loads."""

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

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Lightning's restore (`fit(ckpt_path=...)`, `test(ckpt_path=...)`): always through
        `safe_load`, whatever `weights_only` Lightning passes."""
        del weights_only
        ckpt = safe_load(path, map_location=map_location or (lambda storage, loc: storage))
        if not isinstance(ckpt, dict):
            raise CheckpointError(f"{path} is not a checkpoint (no mapping inside)")
        return ckpt
