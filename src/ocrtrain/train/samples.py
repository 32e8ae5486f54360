"""What the model reads: at each validation, a fixed sample of validation lines (the first
batch, the same lines every time) is read by the model and saved with the run as images and
JSON (truth, reading, per-line CER, worst first), and sent to the run's loggers.

    <run folder>/samples/step_<N>.json
    <run folder>/samples/step_<N>/<i>.png
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import MLFlowLogger, TensorBoardLogger
from PIL import Image

from ocrtrain.train.checkpoint_io import atomic_write
from ocrtrain.train.errors import ConfigError
from ocrtrain.train.metrics import edit_distance

log = logging.getLogger(__name__)


def line_cer(truth: str, reading: str) -> float:
    """Edits per character of the truth (a blank truth: 0 if read as blank, else 1)."""
    if not truth:
        return 0.0 if not reading else 1.0
    return edit_distance(reading, truth) / len(truth)


def to_pixels(image: torch.Tensor, width: int) -> np.ndarray:
    """A model input (1 x H x W, ink high) as dark-on-light 8-bit pixels, its padding cut."""
    x = image[0, :, :width].detach().float().cpu()
    lo, hi = float(x.min()), float(x.max())
    x = (x - lo) / (hi - lo) if hi > lo else torch.zeros_like(x)
    return (255 - (x * 255).round()).to(torch.uint8).numpy()


class ValidationSamples(Callback):
    """Save (and log) the model's reading of `lines` fixed validation lines at each validation."""

    def __init__(self, dirpath: str, lines: int = 12) -> None:
        if lines < 1:
            raise ConfigError(f"callbacks.samples.lines must be at least 1, not {lines}")
        self.dirpath = Path(dirpath)
        self.lines = lines
        self._rows: list[dict[str, Any]] = []
        self._pixels: list[np.ndarray] = []

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._rows, self._pixels = [], []

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero:
            return
        wanted = self.lines - len(self._rows)
        if wanted <= 0:
            return
        images, widths = batch["images"][:wanted], batch["widths"][:wanted]
        with torch.no_grad():
            readings = pl_module.decode(pl_module(images, widths), widths)  # type: ignore[operator]
        for i, (truth, reading) in enumerate(zip(batch["texts"], readings, strict=False)):
            self._rows.append(
                {"truth": truth, "reading": reading, "cer": round(line_cer(truth, reading), 4)}
            )
            self._pixels.append(to_pixels(images[i], int(widths[i])))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or not trainer.is_global_zero or not self._rows:
            return
        step = trainer.global_step
        folder = self.dirpath / f"step_{step}"
        folder.mkdir(parents=True, exist_ok=True)
        order = sorted(range(len(self._rows)), key=lambda i: -self._rows[i]["cer"])
        rows = []
        for rank, i in enumerate(order):
            name = f"{rank:02d}.png"
            Image.fromarray(self._pixels[i]).save(folder / name)
            rows.append({**self._rows[i], "image": f"step_{step}/{name}"})
        doc = {"step": step, "epoch": trainer.current_epoch, "lines": rows}
        atomic_write(self.dirpath / f"step_{step}.json", json.dumps(doc).encode())
        for logger in trainer.loggers:
            self._log(logger, step, rows, [self._pixels[i] for i in order])

    @staticmethod
    def _log(logger: Any, step: int, rows: list[dict[str, Any]], pixels: list[np.ndarray]) -> None:
        table = "| CER | truth | reading |\n|---|---|---|\n" + "\n".join(
            f"| {r['cer']:.3f} | `{r['truth']}` | `{r['reading']}` |" for r in rows
        )
        if isinstance(logger, TensorBoardLogger):
            for i, px in enumerate(pixels):
                logger.experiment.add_image(f"samples/{i:02d}", px, step, dataformats="HW")
            logger.experiment.add_text("samples", table, step)
        elif isinstance(logger, MLFlowLogger):
            for i, px in enumerate(pixels):
                logger.experiment.log_image(
                    logger.run_id, px, artifact_file=f"samples/step_{step}/{i:02d}.png"
                )
            logger.experiment.log_text(logger.run_id, table, f"samples/step_{step}.md")
