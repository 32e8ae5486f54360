"""Join a job that torchrun or srun launched, and make its ranks one run.

Every rank composes the config itself, and `${now:}`, `trainer.precision: auto`,
`${ocr.cpus_minus:1}` and `resume=auto` would come out differently per machine: global rank
0 decides them and the others take its decisions (a small JSON document broadcast over the
process group: data, never pickled objects). Every rank then proves it sees rank 0's
checkpoint folder, without which `last.ckpt` saves and resumes cannot work.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any

from ocrtrain.dist.env import JobShape, Launcher
from ocrtrain.train.errors import ConfigError

log = logging.getLogger(__name__)

MARKER_PREFIX = ".ocrtrain-job-"
# Under ocrtrain's agent a rank without progress for dist.timeout_s is found and reported by
# the agent (ocrtrain.dist.watch); the process-group timeout, this much later, is the backstop.
AGENT_FIRST_S = 15.0


def join(shape: JobShape, accelerator: str, timeout_s: float) -> None:
    """Initialize the default process group from the launcher's environment (Lightning
    finds it initialized and uses it). `timeout_s` bounds every collective: a rank stalled
    that long ends the job instead of hanging it (under torchrun the agent ends it first,
    with a report naming the stalled rank)."""
    import torch.distributed as dist

    if dist.is_initialized():
        return
    if shape.launcher is Launcher.SLURM:
        from lightning.fabric.plugins.environments.slurm import SLURMEnvironment

        slurm = SLURMEnvironment(auto_requeue=False)
        os.environ["MASTER_ADDR"] = slurm.main_address
        os.environ["MASTER_PORT"] = str(slurm.main_port)
    backend = "nccl" if accelerator in ("gpu", "cuda") else "gloo"
    dist.init_process_group(
        backend,
        rank=shape.global_rank,
        world_size=shape.world_size,
        timeout=timedelta(seconds=process_group_timeout(shape, timeout_s)),
    )


def process_group_timeout(shape: JobShape, timeout_s: float) -> float:
    """Seconds a collective may wait: `timeout_s`, plus `AGENT_FIRST_S` where an agent
    watches the ranks' progress."""
    return timeout_s + (AGENT_FIRST_S if shape.launcher is Launcher.TORCHRUN else 0.0)


def _device(shape: JobShape) -> Any:
    import torch
    import torch.distributed as dist

    if dist.get_backend() == "nccl":
        return torch.device("cuda", shape.local_rank)
    return torch.device("cpu")


def share_from_rank_zero(shape: JobShape, doc: dict[str, Any] | None) -> dict[str, Any]:
    """Rank 0's `doc` (a JSON object) on every rank."""
    import torch
    import torch.distributed as dist

    device = _device(shape)
    payload = json.dumps(doc).encode() if shape.global_rank == 0 else b""
    size = torch.tensor([len(payload)], dtype=torch.int64, device=device)
    dist.broadcast(size, 0)
    if shape.global_rank == 0:
        buf = torch.frombuffer(bytearray(payload), dtype=torch.uint8).to(device)
    else:
        buf = torch.zeros(int(size.item()), dtype=torch.uint8, device=device)
    dist.broadcast(buf, 0)
    shared = json.loads(buf.cpu().numpy().tobytes())
    if not isinstance(shared, dict):
        raise ConfigError("rank 0 sent no job settings (a rank of another job at its address?)")
    return shared


def ranks_missing(shape: JobShape, missing: bool) -> list[int]:
    """The global ranks for which `missing` is true, known on every rank."""
    import torch
    import torch.distributed as dist

    flags = torch.zeros(shape.world_size, dtype=torch.int32, device=_device(shape))
    flags[shape.global_rank] = int(missing)
    dist.all_reduce(flags)
    return [rank for rank, flag in enumerate(flags.tolist()) if flag]


def _text(shared: dict[str, Any], key: str, optional: bool = False) -> str | None:
    value = shared.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise ConfigError(f"rank 0 sent a job setting {key!r} that is not text: {value!r}")
    return value


def agree(
    shape: JobShape, cfg: Any, output_dir: Path, ckpt_dir: Path, resume: Path | None
) -> tuple[Path, Path, Path | None]:
    """Rank 0's output and checkpoint folders, precision, thread count and resume checkpoint
    on every rank: returns the folders and the checkpoint, and sets the others in `cfg`."""
    doc = None
    if shape.global_rank == 0:
        doc = {
            "output_dir": str(output_dir),
            "ckpt_dir": str(ckpt_dir),
            "precision": str(cfg.trainer.precision),
            "torch_threads": None if cfg.get("torch_threads") is None else str(cfg.torch_threads),
            "resume": None if resume is None else str(resume),
        }
    shared = share_from_rank_zero(shape, doc)
    cfg.trainer.precision = _text(shared, "precision")
    threads = _text(shared, "torch_threads", optional=True)
    cfg.torch_threads = None if threads is None else int(threads)
    resumed = _text(shared, "resume", optional=True)
    return (
        Path(str(_text(shared, "output_dir"))),
        Path(str(_text(shared, "ckpt_dir"))),
        None if resumed is None else Path(resumed),
    )


def check_shared_folder(shape: JobShape, folder: Path) -> None:
    """Every rank sees the folder rank 0 writes checkpoints to (a shared filesystem, mounted at
    the same path on every node); rank 0 must have created `folder` already.

    Raises:
        ConfigError: on every rank, naming the first rank that does not see it and the path.
    """
    doc = None
    if shape.global_rank == 0:  # the marker exists before any rank learns its name
        doc = {"token": uuid.uuid4().hex}
        (folder / f"{MARKER_PREFIX}{doc['token']}").write_text(f"job {shape.job_id}\n")
    marker = folder / f"{MARKER_PREFIX}{_text(share_from_rank_zero(shape, doc), 'token')}"
    try:
        missing = ranks_missing(shape, not marker.is_file())
    finally:
        if shape.global_rank == 0:
            marker.unlink(missing_ok=True)
    if missing:
        raise ConfigError(
            f"rank {missing[0]} (of {shape.world_size}) cannot see the checkpoint folder "
            f"{folder} that rank 0 writes: mount it at the same path on every node, or set "
            "paths.outputs_root to a shared folder"
        )
