"""What an ocrtrain recognizer checkpoint is: its kind and format version, and the checks that
a file is one and fits a model's config."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ocrtrain.train.checkpoint_io import safe_load
from ocrtrain.train.errors import CheckpointError

MODEL_KIND = "ocrtrain.crnn-ctc"
# 2: BiLSTM as two unpacked directions (crnn.BiLSTM); 3: contrast-normalized input lines
# (transforms.stretch_contrast): a format-2 model would misread them.
FORMAT_VERSION = 3


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """The checkpoint dict; CheckpointError unless it is an ocrtrain recognizer checkpoint."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint not found: {path}")
    ckpt: dict[str, Any] = safe_load(path)
    meta = ckpt.get("ocrtrain") if isinstance(ckpt, dict) else None
    if not isinstance(meta, dict) or meta.get("kind") != MODEL_KIND:
        raise CheckpointError(f"{path} is not a checkpoint of an ocrtrain CRNN recognizer")
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has checkpoint format {meta.get('version')!r}; this ocrtrain reads format"
            f" {FORMAT_VERSION} (retrain, or use the ocrtrain version that wrote it)"
        )
    return ckpt


def check_compatible(ckpt: dict[str, Any], hparams: dict[str, Any], path: str | Path) -> None:
    """CheckpointError when the checkpoint's network or charset differ from the config's."""
    saved = ckpt.get("hyper_parameters", {})
    for key in ("charset", "height", "width_scale", "net"):
        if saved.get(key) != hparams.get(key):
            raise CheckpointError(
                f"{path} belongs to another model: {key} is {saved.get(key)!r} there,"
                f" {hparams.get(key)!r} in this config"
            )
