"""Distributed data-parallel training (two CPU ranks, gloo) under the supervisor.

Ranks draw different lines, score disjoint shares of the validation and test splits, write
one run folder, and stop together on a signal that reached only the trainer (rank 0).
"""

from __future__ import annotations

import json
import signal
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from helpers import wait_until
from ocrtrain.train.data.datamodule import OCRDataModule
from ocrtrain.train.data.synth import EpochSampler, ShardSampler
from train.conftest import SMOKE, TrainProc, last_metric_step, trainer_pid

EPOCHS, BATCHES = 3, 6
DDP = [
    *SMOKE,
    "dataloaders.train.num_workers=1",
    "dataloaders.test.num_workers=1",
    "trainer.devices=2",
    "+trainer.strategy=ddp",
    f"trainer.max_epochs={EPOCHS}",
    f"data.train.batches_per_epoch={BATCHES}",
]


def test_epoch_sampler_gives_each_rank_its_own_lines() -> None:
    shares = []
    for rank in range(3):
        s = EpochSampler(4, rank=rank, world_size=3)
        s.set_epoch(2)
        shares.append(list(s))
    assert sorted(i for share in shares for i in share) == list(range(24, 36))
    assert list(EpochSampler(4)) == [0, 1, 2, 3]  # one process: as before
    with pytest.raises(ValueError, match="rank 2 is outside a world of 2"):
        EpochSampler(4, rank=2, world_size=2)


def test_shard_sampler_scores_each_line_once() -> None:
    shares = [list(ShardSampler(7, rank, 3)) for rank in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert [len(ShardSampler(7, r, 3)) for r in range(3)] == [3, 2, 2]


def test_datamodule_shards_by_the_trainers_rank() -> None:
    dm = OCRDataModule(
        batch_size=4,
        train={"kind": "synth", "batches_per_epoch": 2},
        val={"kind": "synth", "size": 10},
    )
    dm.trainer = SimpleNamespace(global_rank=1, world_size=2)  # type: ignore[assignment]
    train = dm.train_dataloader().batch_sampler
    assert sorted(i for batch in train for i in batch) == list(range(8, 16))
    assert list(dm.val_dataloader().sampler) == [1, 3, 5, 7, 9]


def _records(outputs: Path, experiment: str) -> list[dict]:
    (metrics,) = outputs.glob(f"{experiment}/runs/*/metrics.jsonl")  # one run, one folder
    return [json.loads(x) for x in metrics.read_text().splitlines()]


@pytest.mark.slow
def test_two_ranks_train_to_one_run_folder(start_train, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    p: TrainProc = start_train([*DDP, "experiment_name=ddp"], outputs)
    rc, out = p.wait(timeout=240)
    assert rc == 0, out
    p.assert_no_survivors()
    records = _records(outputs, "ddp")
    steps = [r["step"] for r in records if r["split"] == "train"]
    assert steps == sorted(set(steps)), "rank 0 alone writes the metrics"
    val = [r for r in records if r["split"] == "val"]
    assert [r["step"] for r in val] == [BATCHES * (e + 1) for e in range(EPOCHS)]
    assert all("val/cer" in r for r in val)
    assert out.count("test  cer") == 1 and out.count(f"val   epoch 1 step {BATCHES} ") == 1
    ckpt = torch.load(
        outputs / "ddp" / "latest" / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=False,
    )
    assert ckpt["global_step"] == EPOCHS * BATCHES


@pytest.mark.slow
def test_sigterm_to_the_run_stops_both_ranks_and_resume_finishes(
    start_train, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    run = [
        *DDP,
        "experiment_name=ddpstop",
        "trainer.max_epochs=1000",
        "callbacks.checkpoint.every_n_train_steps=1000",
    ]
    p: TrainProc = start_train(run, outputs)
    trainer_pid(p)
    metrics = lambda: next(outputs.glob("ddpstop/runs/*/metrics.jsonl"), None)  # noqa: E731
    wait_until(
        lambda: metrics() and last_metric_step(metrics()) >= 2,
        timeout=120,
        interval=0.05,
        what="both ranks training",
    )
    p.proc.send_signal(signal.SIGTERM)  # the supervisor forwards it to the trainer (rank 0)
    rc, out = p.wait(timeout=60)
    assert rc == 143, out
    p.assert_no_survivors()
    last = outputs / "ddpstop" / "latest" / "checkpoints" / "last.ckpt"
    stopped_at = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert stopped_at >= 2, out

    q: TrainProc = start_train(
        [*run, f"trainer.max_epochs={stopped_at // BATCHES + 2}", "resume=auto"], outputs
    )
    rc, out = q.wait(timeout=240)
    assert rc == 0, out
    q.assert_no_survivors()
    resumed = torch.load(last, map_location="cpu", weights_only=False)["global_step"]
    assert resumed == (stopped_at // BATCHES + 2) * BATCHES


@pytest.mark.slow
def test_a_time_budget_stops_both_ranks_at_the_same_step(start_train, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    run = [
        *DDP,
        "experiment_name=ddpbudget",
        "trainer.max_epochs=100000",
        "callbacks.time_budget.seconds=5",
    ]
    p: TrainProc = start_train(run, outputs)
    rc, out = p.wait(timeout=240)
    assert rc == 0, out  # a rank stopping a step before the other would hang the collective
    p.assert_no_survivors()
    assert out.count("training ends at step") == 1 and out.count("test  cer") == 1, out
    ckpt = torch.load(
        outputs / "ddpbudget" / "latest" / "checkpoints" / "last.ckpt",
        map_location="cpu",
        weights_only=False,
    )
    groups = ckpt["optimizer_states"][0]["param_groups"]
    assert all(g["lr"] < g["max_lr"] * 1e-3 for g in groups), groups  # the cycle ended
