"""DataLoader worker setup: tie each worker to its trainer, keep terminal signals off, seed,
and make the multiprocessing temp folder the workers share a recorded one."""

from __future__ import annotations

import multiprocessing.util
import os
import random
import signal

import numpy as np
import torch

from ocrtrain.procman import RUN_ID_ENV, record_tmpdir, set_parent_death_signal


def record_shared_tmpdir() -> None:
    """Make this process's multiprocessing temp folder (`/tmp/pymp-*`, where workers put the
    sockets that pass tensors) now, and record it for the run: forked workers share it instead
    of each making one, and a killed process's folder is removed by the watchdog, `ocrtrain
    cleanup` or the next startup check. Outside a supervised run nothing is made."""
    if os.environ.get(RUN_ID_ENV):
        record_tmpdir(multiprocessing.util.get_temp_dir())


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
    record_shared_tmpdir()  # the trainer's, when forked; its own otherwise
    seed = torch.initial_seed() % 2**32
    random.seed(seed + worker_id)
    np.random.seed((seed + worker_id) % 2**32)
