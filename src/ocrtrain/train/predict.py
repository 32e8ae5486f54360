"""Read text lines from images with a trained checkpoint."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from ocrtrain.train.data.folder import check_image


def predict_images(
    ckpt: str | Path, images: Sequence[str | Path], batch_size: int = 32
) -> list[str]:
    """The text of each image, in the order given. All images are checked before any is read."""
    import torch

    from ocrtrain.train.data.transforms import collate, read_line_image
    from ocrtrain.train.inference import load_model

    paths = [Path(p) for p in images]
    for p in paths:
        check_image(p)
    model = load_model(ckpt)
    height = int(model.hparams.height)
    width_scale = float(model.hparams.get("width_scale", 1.0))
    texts: list[str] = []
    with torch.inference_mode():
        for i in range(0, len(paths), batch_size):
            batch: list[tuple[Any, str, list[int]]] = []
            for p in paths[i : i + batch_size]:
                batch.append((read_line_image(p, height, 2000, width_scale), "", []))
            b = collate(batch)
            texts.extend(model.decode(model(b["images"], b["widths"]), b["widths"]))
    return texts
