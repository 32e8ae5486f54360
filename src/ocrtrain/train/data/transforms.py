"""Fixed-height resize, tensor conversion and width-padding collation for line images."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from PIL import Image

Sample = tuple[torch.Tensor, str, list[int]]


def to_tensor(
    img: Image.Image, height: int, max_width: int, width_scale: float = 1.0
) -> torch.Tensor:
    """Grayscale, resized to `height`; ink is high, paper ~0.

    The width keeps the aspect ratio times `width_scale`: squeezing lines horizontally (0.5)
    halves the CNN's work and still leaves about two CTC frames per character.
    """
    img = img.convert("L")
    scale = height / max(img.height, 1) * width_scale
    width = max(8, min(max_width, round(img.width * scale)))
    img = img.resize((width, height), Image.Resampling.BILINEAR)
    arr = 1.0 - np.asarray(img, dtype=np.float32) / 255.0
    return torch.from_numpy(arr)[None]


def collate(batch: list[Sample]) -> dict[str, Any]:
    """Pad images on the right to the widest one (a multiple of 4) and pack CTC targets."""
    images, texts, labels = zip(*batch, strict=True)
    height = images[0].shape[1]
    width = max(4, 4 * math.ceil(max(im.shape[2] for im in images) / 4))
    out = torch.zeros(len(images), 1, height, width)
    for i, im in enumerate(images):
        out[i, :, :, : im.shape[2]] = im
    return {
        "images": out,
        "widths": torch.tensor([im.shape[2] for im in images], dtype=torch.long),
        "targets": torch.tensor([i for lab in labels for i in lab], dtype=torch.long),
        "target_lengths": torch.tensor([len(lab) for lab in labels], dtype=torch.long),
        "texts": list(texts),
    }
