"""Whether a checkpoint to resume has any training left under this run's limits.

Lightning would restore it, train nothing, test and save again into a new run folder; a
one-cycle schedule refitted past its end may even fail. The check reads Lightning's own loop
counters from the checkpoint, before anything is written.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def finished_epochs(ckpt: Mapping[str, Any]) -> int:
    """Epochs fully trained: a save at an epoch's last batch (before Lightning counts the
    epoch as completed) counts that epoch."""
    fit = ckpt.get("loops", {}).get("fit_loop", {})
    epochs = fit.get("epoch_progress", {}).get("current", {})
    completed = int(epochs.get("completed", 0))
    started = int(epochs.get("started", completed))
    last_batch = bool(fit.get("epoch_loop.batch_progress", {}).get("is_last_batch", False))
    return completed + (1 if started > completed and last_batch else 0)


def training_left(ckpt: Mapping[str, Any], cfg: Any) -> str | None:
    """None if the run would train, else which limit the checkpoint has already reached."""
    trainer = cfg.trainer
    step = int(ckpt.get("global_step", 0))
    epochs = finished_epochs(ckpt)
    max_epochs = trainer.get("max_epochs")
    max_steps = trainer.get("max_steps")
    if max_steps not in (None, -1) and step >= int(max_steps):
        return f"trainer.max_steps={max_steps} (it is at step {step})"
    if max_epochs not in (None, -1) and epochs >= int(max_epochs):
        return f"trainer.max_epochs={max_epochs} (it has trained {epochs} epochs, step {step})"
    budget = cfg.get("callbacks", {}).get("time_budget") or {}
    seconds = budget.get("seconds")
    spent = ckpt.get("callbacks", {}).get("TimeBudget", {}).get("spent_s")
    if seconds is not None and spent is not None and float(spent) >= float(seconds):
        return (
            f"its time budget callbacks.time_budget.seconds={seconds} "
            f"({float(spent):.0f} s spent, step {step})"
        )
    return None
