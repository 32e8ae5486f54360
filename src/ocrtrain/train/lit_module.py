"""The recognizer as a LightningModule: CTC training, greedy decoding, CER and line accuracy.

Its hyperparameters are plain values (charset, network sizes, optimiser numbers), so a
checkpoint alone rebuilds the model for `ocrtrain predict` and `ocrtrain eval`.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import lightning as L
import torch
from torch import nn

from ocrtrain.config_choices import OPTIMIZERS, SCHEDULERS
from ocrtrain.train.callbacks import time_budget
from ocrtrain.train.checkpoint_format import (
    FORMAT_VERSION,
    MODEL_KIND,
    check_compatible,
    read_checkpoint,
)
from ocrtrain.train.data.charset import Charset
from ocrtrain.train.decoding import decode_batch
from ocrtrain.train.errors import CheckpointError, ConfigError
from ocrtrain.train.metrics import TextScore
from ocrtrain.train.models.crnn import CRNN
from ocrtrain.train.optim import MuonAdamW, param_groups
from ocrtrain.train.schedule import TimedOneCycleLR

log = logging.getLogger(__name__)

# SCHEDULERS: onecycle: warm-up then cosine decay over the whole run (needs a finite run), which
# ends with the time budget when there is one (callbacks.TimeBudget); constant: `lr`.
# OPTIMIZERS: adamw: AdamW for every parameter; muon: Muon for weight matrices and filters.


class OCRLitModule(L.LightningModule):
    """CRNN + CTC (blank 0); AdamW or Muon (`optim.MuonAdamW`), one-cycle learning rate."""

    def __init__(
        self,
        charset: str | None = None,
        height: int = 32,
        width_scale: float = 1.0,
        net: Mapping[str, Any] | None = None,
        lr: float = 2e-3,
        weight_decay: float = 1e-4,
        pct_start: float = 0.15,
        scheduler: str = "onecycle",
        optimizer: str = "adamw",
        muon_lr: float | None = None,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        if scheduler not in SCHEDULERS:
            raise ConfigError(
                f"model.scheduler must be one of {', '.join(SCHEDULERS)}, not {scheduler!r}"
            )
        if optimizer not in OPTIMIZERS:
            raise ConfigError(
                f"model.optimizer must be one of {', '.join(OPTIMIZERS)}, not {optimizer!r}"
            )
        if lr <= 0:
            raise ConfigError(f"model.lr must be above 0, not {lr}")
        if muon_lr is not None and muon_lr <= 0:
            raise ConfigError(f"model.muon_lr must be above 0, not {muon_lr}")
        if not 0 < pct_start < 1:
            raise ConfigError(f"model.pct_start must be between 0 and 1, not {pct_start}")
        net = dict(net or {})
        self.save_hyperparameters(
            {
                "charset": charset,
                "height": height,
                "width_scale": width_scale,
                "net": net,
                "lr": lr,
                "weight_decay": weight_decay,
                "pct_start": pct_start,
                "scheduler": scheduler,
                "optimizer": optimizer,
                "muon_lr": muon_lr,
            }
        )
        self.charset = Charset(charset)
        self.net = CRNN(self.charset.num_classes, height=height, **net)
        if init_from:  # fine-tuning: a trained model's weights, a fresh optimizer and schedule
            self._load_weights(init_from)
        self.ctc = nn.CTCLoss(blank=Charset.blank, zero_infinity=True)
        self.scores: dict[str, TextScore] = {}

    def _load_weights(self, path: str) -> None:
        """The network weights of checkpoint `path`, which must be of this very model
        (charset, line height and network sizes); CheckpointError otherwise."""
        ckpt = read_checkpoint(path)
        check_compatible(ckpt, dict(self.hparams), path)
        weights = {k[4:]: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}
        try:
            self.net.load_state_dict(weights)
        except RuntimeError as exc:
            raise CheckpointError(f"{path} does not match the recognizer: {exc}") from exc
        log.info("model.init_from: weights of %s", path)

    def forward(self, images: torch.Tensor, widths: torch.Tensor | None = None) -> torch.Tensor:
        logits: torch.Tensor = self.net(images, widths)
        return logits

    def decode(self, logits: torch.Tensor, widths: torch.Tensor) -> list[str]:
        """Greedy CTC decoding of (T, B, C) logits, each cut at its image's own width, with
        runs of joined strokes (`____`) counted by their length (`decoding`)."""
        lengths = self.net.output_lengths(widths.cpu()).clamp(max=logits.shape[0])
        k = self.net.frames_per_column
        line_px = self.hparams["height"] * self.hparams["width_scale"]  # a line height, across
        return decode_batch(
            logits, lengths.tolist(), self.charset, k, line_frames=line_px / self.net.downsample * k
        )

    def _loss(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        log_probs = logits.float().log_softmax(-1)  # the CTC loss in float32, also under bf16
        lengths = self.net.output_lengths(batch["widths"]).clamp(max=logits.shape[0])
        loss: torch.Tensor = self.ctc(log_probs, batch["targets"], lengths, batch["target_lengths"])
        return loss

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        logits = self(batch["images"], batch["widths"])
        loss = self._loss(logits, batch)
        self.log("train/loss", loss, prog_bar=True, batch_size=len(batch["texts"]))
        return loss

    def _eval_step(self, split: str, batch: dict[str, Any]) -> None:
        logits = self(batch["images"], batch["widths"])
        loss = self._loss(logits, batch)
        self.log(f"{split}/loss", loss, batch_size=len(batch["texts"]), sync_dist=True)
        self.scores.setdefault(split, TextScore()).update(
            self.decode(logits, batch["widths"]), batch["texts"]
        )

    def _eval_end(self, split: str) -> None:
        """Log CER and line accuracy of the whole split: in a distributed run each rank scored
        its share, so the counts (not the ratios) are summed over ranks first."""
        local = torch.tensor(self.scores.pop(split, TextScore()).counts(), device=self.device)
        score = TextScore(*self.trainer.strategy.reduce(local, reduce_op="sum").tolist())
        # The values are now the same on every rank; sync_dist only tells Lightning so.
        self.log(f"{split}/cer", score.cer, prog_bar=True, sync_dist=True)
        self.log(f"{split}/line_acc", score.line_acc, prog_bar=split == "val", sync_dist=True)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("val", batch)

    def on_validation_epoch_end(self) -> None:
        self._eval_end("val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_test_epoch_end(self) -> None:
        self._eval_end("test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> list[str]:
        return self.decode(self(batch["images"], batch["widths"]), batch["widths"])

    def _total_steps(self) -> int:
        return max(int(self.trainer.estimated_stepping_batches), 1)

    def _peak_lr(self, group: Mapping[str, Any]) -> float:
        """A parameter group's learning rate: `muon_lr` for Muon's matrices (`lr` when unset),
        `lr` for everything AdamW steps."""
        hp: Any = self.hparams
        return float(hp.muon_lr if group.get("muon") and hp.muon_lr is not None else hp.lr)

    def _one_cycle(
        self, opt: torch.optim.Optimizer, total: int, last_step: int = -1
    ) -> TimedOneCycleLR:
        try:
            budget = time_budget(self.trainer)
        except RuntimeError:  # not attached to a trainer: a schedule by steps alone
            budget = None
        return TimedOneCycleLR(
            opt,
            progress=budget.fraction if budget is not None else None,
            max_lr=[self._peak_lr(g) for g in opt.param_groups],
            total_steps=total,
            pct_start=self.hparams["pct_start"],
            last_epoch=last_step,
        )

    def configure_optimizers(self) -> Any:
        hp: Any = self.hparams
        opt: torch.optim.Optimizer
        if hp.optimizer == "muon":
            groups = param_groups(self.net, self.net.head)
            for group in groups:
                group["lr"] = self._peak_lr(group)
            # Orthogonalize in bfloat16 only where the trainer computes in it: precision
            # `auto` chose float32 where bfloat16 products are the slower ones.
            bf16 = str(self.trainer.precision).startswith("bf16")
            ns_dtype = torch.bfloat16 if bf16 else torch.float32
            opt = MuonAdamW(groups, lr=hp.lr, weight_decay=hp.weight_decay, ns_dtype=ns_dtype)
        else:
            opt = torch.optim.AdamW(self.parameters(), lr=hp.lr, weight_decay=hp.weight_decay)
        if hp.scheduler != "onecycle":
            return opt
        sched = self._one_cycle(opt, self._total_steps())
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def on_train_start(self) -> None:
        """A resumed run lasts as long as this config says: the one-cycle schedule restored
        from the checkpoint is fitted to the new number of steps (more epochs than the
        checkpoint's run would otherwise step past its end and fail)."""
        if self.hparams["scheduler"] != "onecycle" or not self.trainer.lr_scheduler_configs:
            return
        config = self.trainer.lr_scheduler_configs[0]
        total, step = self._total_steps(), self.trainer.global_step
        old = getattr(config.scheduler, "total_steps", total)
        if old == total or step >= total:
            return
        log.warning(
            "one-cycle learning rate refitted from %d to %d steps at step %d", old, total, step
        )
        config.scheduler = self._one_cycle(config.scheduler.optimizer, total, last_step=step - 1)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["ocrtrain"] = {"kind": MODEL_KIND, "version": FORMAT_VERSION}
