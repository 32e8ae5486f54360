"""Rebuild the recognizer from a checkpoint the trainer wrote."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from ocrtrain.train.checkpoint_format import read_checkpoint
from ocrtrain.train.errors import CheckpointError

log = logging.getLogger(__name__)


def load_model(path: str | Path) -> Any:
    """The `OCRLitModule` of a checkpoint, in eval mode on CPU."""
    from ocrtrain.train.lit_module import OCRLitModule

    ckpt = read_checkpoint(path)
    hp = dict(ckpt.get("hyper_parameters", {}))
    try:
        model = OCRLitModule(**hp)
        model.load_state_dict(ckpt["state_dict"])
    except (TypeError, KeyError, RuntimeError, ValueError) as exc:
        raise CheckpointError(f"{path} does not match the recognizer: {exc}") from exc
    model.eval()
    return model
