"""What part a process plays in a run: supervisor, watchdog, trainer, rank, worker or helper.

Roles are decided from identity and structure, never from a command-line substring:

- supervisor / watchdog / trainer: the (pid, start) pairs the journal recorded (an unknown
  run's trainer is its tagged session leader);
- rank: a DDP rank is started with its rank in its environment by a launcher (Lightning,
  torchrun, srun: `procman.launcher_rank`); the first process in a chain with that place is
  the rank, the processes it forks inherit it and are its workers or helpers;
- worker: a DataLoader worker, i.e. a fork of a trainer/rank/worker that did not exec (same
  argv as its parent), a `multiprocessing` spawn/forkserver child, or a process PyTorch named
  `pt_data_worker`;
- helper: anything else inside the run (a shell, a logger, a tool the trainer started).
"""

from __future__ import annotations

from dataclasses import dataclass

from ocrtrain.procman import launcher_vars

SUPERVISOR = "supervisor"
WATCHDOG = "watchdog"
TRAINER = "trainer"
RANK = "rank"
WORKER = "worker"
HELPER = "helper"

_MP_MARKERS = ("multiprocessing.spawn", "multiprocessing.forkserver")
_WORKER_COMMS = ("pt_data_worker",)


@dataclass(frozen=True, slots=True)
class ProcInfo:
    """The little a role decision needs about one process."""

    pid: int
    ppid: int
    comm: str
    cmdline: tuple[str, ...]
    rank: str | None  # the launcher's rank variables from the environment


def rank_of(environ: bytes | None) -> str | None:
    """The launcher's rank variables in a raw environment, if it has any (compared with
    the parent's: a process whose values differ was started as a rank)."""
    values = launcher_vars(environ)
    return None if values is None else "/".join(map(str, values))


def classify(
    info: ProcInfo,
    parent: ProcInfo | None,
    parent_role: str | None,
    trainer_argv: tuple[str, ...] | None = None,
) -> str:
    """Role of a run member that is neither supervisor, watchdog nor trainer.

    Args:
        info: the process.
        parent: its parent, if the parent is a member of the same run.
        parent_role: the parent's role, if known.
        trainer_argv: the trainer's argv (from the journal): a process with the same argv
            that is not the trainer is a fork of it, even once the trainer is gone.
    """
    if info.rank is not None and (parent is None or parent.rank != info.rank):
        return RANK
    if info.comm.startswith(_WORKER_COMMS):
        return WORKER
    if any(m in arg for arg in info.cmdline[:3] for m in _MP_MARKERS):
        return WORKER
    if (
        parent is not None
        and parent_role in (TRAINER, RANK, WORKER)
        and info.cmdline
        and info.cmdline == parent.cmdline
    ):
        return WORKER
    if trainer_argv and info.cmdline == trainer_argv and info.rank is None:
        return WORKER
    return HELPER
