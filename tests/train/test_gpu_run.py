"""On an NVIDIA GPU: a supervised run trains on CUDA, `ocrtrain ps --json` shows the trainer's
GPU memory (read per process through NVML), the supervisor's resource samples record it
(through `nvidia-smi`), and a SIGKILL of the trainer frees that memory and leaves no process
of the run behind.

Skipped where NVML sees no GPU (CI, laptops); run on a machine with one:
`pytest -m gpu tests/train/test_gpu_run.py`.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import alive, ocrtrain, wait_until
from ocrtrain.monitor import gpu
from ocrtrain.procman.journal import Journal
from train.conftest import SMOKE, TrainProc, trainer_pid


def _gpu_reading() -> gpu.GpuReading | None:
    reading = gpu.read()
    return reading if reading is not None and reading.devices else None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.gpu,
    pytest.mark.skipif(_gpu_reading() is None, reason="needs an NVIDIA GPU (NVML sees none)"),
]

GPU_SMOKE = [*SMOKE, "trainer=gpu"]


def _used_bytes() -> int:
    reading = _gpu_reading()
    assert reading is not None
    return sum(d.mem_used or 0 for d in reading.devices)


def _process_view(pid: int) -> dict[str, Any] | None:
    """The process `pid` as `ocrtrain ps --json` lists it, or None."""
    res = ocrtrain("ps", "--json", env={**os.environ})
    assert res.returncode == 0, res.stderr
    for run in json.loads(res.stdout)["runs"]:
        for proc in run["processes"]:
            if proc["pid"] == pid:
                return dict(proc, run_id=run["id"])
    return None


def test_training_on_cuda_finishes_with_checkpoints(start_train, ocrtrain_home: Path):
    p: TrainProc = start_train([*GPU_SMOKE, "trainer.max_epochs=3"])
    rc, out = p.wait(timeout=240)
    assert rc == 0, out
    p.assert_no_survivors()
    art = p.artifacts(ocrtrain_home)
    assert art is not None
    ckpt = torch.load(
        Path(art["checkpoints"]) / "last.ckpt", map_location="cpu", weights_only=False
    )
    assert ckpt["global_step"] > 0
    records = [json.loads(x) for x in Path(art["metrics"]).read_text().splitlines()]
    assert {r["split"] for r in records} == {"train", "val", "test"}


def test_trainer_gpu_memory_is_listed_and_freed_after_sigkill(start_train, ocrtrain_home: Path):
    baseline = _used_bytes()
    p: TrainProc = start_train([*GPU_SMOKE, "trainer.max_epochs=100000"])
    trainer = trainer_pid(p)

    def on_gpu() -> dict[str, Any] | None:
        view = _process_view(trainer)
        return view if view is not None and (view["gpu_mem_bytes"] or 0) > 0 else None

    view = wait_until(on_gpu, timeout=120, interval=0.5, what="the trainer's GPU memory in ps")
    assert view["role"] == "trainer", view
    members = p.track()
    journal = Journal(ocrtrain_home)

    def gpu_sample() -> int | None:
        samples = journal.samples(view["run_id"])
        return samples[-1].gpu_bytes if samples and samples[-1].gpu_bytes else None

    sampled = wait_until(gpu_sample, timeout=30, interval=0.5, what="a GPU memory sample")
    print(
        f"trainer {trainer}: {view['gpu_mem_bytes'] / 2**20:.0f} MiB on the GPU (NVML), "
        f"device use {(_used_bytes() - baseline) / 2**20:.0f} MiB above the baseline, "
        f"supervisor's sample {sampled / 2**20:.0f} MiB (nvidia-smi)"
    )

    t0 = time.monotonic()
    os.kill(trainer, signal.SIGKILL)
    wait_until(lambda: not alive(members), timeout=30, interval=0.02, what="the run's processes")
    gone_s = time.monotonic() - t0

    def freed() -> bool:
        reading = _gpu_reading()
        assert reading is not None
        return not set(reading.by_pid) & set(p.seen) and _used_bytes() <= baseline + 64 * 2**20

    wait_until(freed, timeout=30, interval=0.1, what="the run's GPU memory to be freed")
    freed_s = time.monotonic() - t0
    print(f"after SIGKILL: processes gone in {gone_s:.2f} s, GPU memory freed in {freed_s:.2f} s")
    rc, _out = p.wait(timeout=30)
    assert rc != 0  # the run reports the trainer's death
    p.assert_no_survivors()
