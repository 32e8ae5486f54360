"""The one-cycle learning rate over a number of steps or a time budget, whichever ends first.

`make train` promises a model within minutes on whatever machine runs it, and CPUs differ
(the same VM steps 8-14 times a second from one day to the next). A schedule fitted to a
fixed number of steps either overruns the time on a slow machine or leaves time unused on
a fast one. Here the cycle's position is the further along of `step / total_steps` and the
share of the time budget spent (`callbacks.TimeBudget`), so a run that stops at the end of
its budget has finished its cycle: warm-up and cosine decay to ~0, not a cut-off at a high
rate.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
from torch.optim.lr_scheduler import OneCycleLR


class TimedOneCycleLR(OneCycleLR):
    """`OneCycleLR` (learning rate and Adam's beta1 alike) at the position `max(step,
    progress() * (total_steps - 1))`; `progress` (0 to 1, the same on every rank) is the time
    budget's share spent, or None for a schedule by steps alone."""

    def __init__(
        self,
        optimizer: torch.optim.Optimizer,
        *,
        progress: Callable[[], float] | None = None,
        **kwargs: Any,
    ) -> None:
        self._progress = progress
        super().__init__(optimizer, **kwargs)

    def position(self) -> int:
        """The step of the cycle the next learning rate is read at."""
        step = self.last_epoch
        if self._progress is None:
            return step
        by_time = math.floor(min(max(self._progress(), 0.0), 1.0) * (self.total_steps - 1))
        return min(max(step, by_time), self.total_steps)

    def get_lr(self) -> list[float | torch.Tensor]:
        step = self.last_epoch
        self.last_epoch = self.position()
        try:
            return super().get_lr()
        finally:
            self.last_epoch = step

    def state_dict(self) -> dict[str, Any]:
        """The state without the progress callable: a checkpoint holds data, and the resumed
        run passes its own clock."""
        state = super().state_dict()
        state.pop("_progress", None)
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        progress = self._progress
        super().load_state_dict(state_dict)
        self._progress = progress
