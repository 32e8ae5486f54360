"""What a rank learns from its launcher's environment: which launcher started it and the
job's shape (world size, nodes, ranks per node, this rank's place). Standard library only,
so the supervisor hand-off can decide before torch is imported.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Mapping
from dataclasses import dataclass

TORCHRUN_ENV = "TORCHELASTIC_RUN_ID"
# Interactive allocations (`salloc` shells) carry SLURM variables without srun tasks.
_INTERACTIVE_SLURM_JOBS = ("bash", "interactive")


class Launcher(enum.Enum):
    """Who started the ranks of a job."""

    TORCHRUN = "torchrun"
    SLURM = "slurm"


@dataclass(frozen=True, slots=True)
class JobShape:
    """One rank's view of a job of `num_nodes` x `local_world_size` ranks."""

    launcher: Launcher
    job_id: str  # torchrun's run id (rdzv id) or the SLURM job (array-aware: "123_4")
    world_size: int
    num_nodes: int
    local_world_size: int
    global_rank: int
    local_rank: int
    node_rank: int


def _int(environ: Mapping[str, str], key: str, default: int | None = None) -> int:
    raw = environ.get(key)
    if raw is None or raw == "":
        if default is None:
            raise ValueError(f"{key} is not set")
        return default
    try:
        return int(raw.split("(")[0].split(",")[0])  # SLURM writes "2(x3)" for uneven layouts
    except ValueError:
        raise ValueError(f"{key}={raw!r} is not a number") from None


def under_torchrun(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a rank that torchrun started."""
    return bool((os.environ if environ is None else environ).get(TORCHRUN_ENV))


def slurm_job_id(environ: Mapping[str, str]) -> str | None:
    """The id `scontrol requeue` takes: `ARRAYJOB_TASK` for an array task, else the job id."""
    array_job = environ.get("SLURM_ARRAY_JOB_ID")
    if array_job:
        return f"{array_job}_{environ.get('SLURM_ARRAY_TASK_ID', '')}"
    return environ.get("SLURM_JOB_ID") or None


def under_srun(environ: Mapping[str, str]) -> bool:
    """Whether this process is an srun task of a batch job (not an interactive shell)."""
    return (
        "SLURM_NTASKS" in environ
        and "SLURM_PROCID" in environ
        and environ.get("SLURM_JOB_NAME") not in _INTERACTIVE_SLURM_JOBS
    )


def job_shape(environ: Mapping[str, str] | None = None) -> JobShape | None:
    """This rank's job, when an external launcher started it (torchrun first, then srun);
    None for a single process or ranks that Lightning starts itself.

    Raises:
        ValueError: a launcher variable is missing or not a number.
    """
    env = os.environ if environ is None else environ
    if under_torchrun(env):
        world = _int(env, "WORLD_SIZE")
        local_world = _int(env, "LOCAL_WORLD_SIZE")
        return JobShape(
            Launcher.TORCHRUN,
            env[TORCHRUN_ENV],
            world,
            max(1, world // max(local_world, 1)),
            local_world,
            _int(env, "RANK"),
            _int(env, "LOCAL_RANK"),
            _int(env, "GROUP_RANK", 0),
        )
    if under_srun(env):
        world = _int(env, "SLURM_NTASKS")
        nodes = _int(env, "SLURM_NNODES", _int(env, "SLURM_JOB_NUM_NODES", 1))
        return JobShape(
            Launcher.SLURM,
            slurm_job_id(env) or "",
            world,
            nodes,
            _int(env, "SLURM_NTASKS_PER_NODE", max(1, world // nodes)),
            _int(env, "SLURM_PROCID"),
            _int(env, "SLURM_LOCALID"),
            _int(env, "SLURM_NODEID", 0),
        )
    return None
