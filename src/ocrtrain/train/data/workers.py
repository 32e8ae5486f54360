"""DataLoader worker setup: tie each worker to its trainer, keep terminal signals off, seed."""

from __future__ import annotations

import random
import signal

import numpy as np
import torch

from ocrtrain.procman import set_parent_death_signal


def worker_init(worker_id: int) -> None:
    """`worker_init_fn`: SIGKILL on trainer death, ignore Ctrl+C and the checkpoint signals.

    A terminal Ctrl+C goes to the whole foreground group; the trainer alone decides how to
    stop, and it shuts its workers down itself. Handlers inherited from the trainer (its
    Python signal flags) are reset so SIGTERM from a teardown really ends the worker.
    """
    set_parent_death_signal(signal.SIGKILL)
    for sig in (signal.SIGINT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP):
        signal.signal(sig, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    seed = torch.initial_seed() % 2**32
    random.seed(seed + worker_id)
    np.random.seed((seed + worker_id) % 2**32)
