"""Atomic writes, stale temp cleanup, write failures, and refusing checkpoints of another model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from ocrtrain.train.callbacks import MetricsJsonl
from ocrtrain.train.checkpoint_format import (
    FORMAT_VERSION,
    MODEL_KIND,
    check_compatible,
    read_checkpoint,
)
from ocrtrain.train.checkpoint_io import AtomicCheckpointIO, atomic_write, remove_stale_temps
from ocrtrain.train.errors import CheckpointError, OutputWriteError
from ocrtrain.train.inference import load_model
from ocrtrain.train.lit_module import OCRLitModule

SMALL = {"channels": [4, 8, 8, 8], "hidden": 8, "lstm_layers": 1}


def test_atomic_write_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "last.ckpt"
    atomic_write(target, b"old")
    atomic_write(target, b"new" * 1000)
    assert target.read_bytes() == b"new" * 1000
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]


def test_a_save_that_cannot_be_written_keeps_nothing_half_done(tmp_path: Path) -> None:
    blocker = tmp_path / "a_file"  # a checkpoint folder that cannot be made
    blocker.write_text("")
    with pytest.raises(OutputWriteError, match="cannot save checkpoint"):
        AtomicCheckpointIO().save_checkpoint({"x": 1}, blocker / "last.ckpt")
    assert [p.name for p in tmp_path.iterdir()] == ["a_file"]


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs /dev/full")
def test_metrics_on_a_full_device_stop_the_run_with_one_error() -> None:
    metrics = MetricsJsonl("/dev/full")  # every write fails with ENOSPC
    with pytest.raises(OutputWriteError, match="No space left on device"):
        metrics._write({"split": "train", "step": 1})


def test_stale_temps_of_dead_processes_are_removed(tmp_path: Path) -> None:
    dead = tmp_path / "last.ckpt.tmp-999999999"
    mine = tmp_path / f"last.ckpt.tmp-{os.getpid()}"
    dead.write_bytes(b"x")
    mine.write_bytes(b"x")
    remove_stale_temps(tmp_path)
    assert not dead.exists() and mine.exists()


def _save_model(path: Path, net: dict) -> dict:
    model = OCRLitModule(net=net)
    ckpt = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "ocrtrain": {"kind": MODEL_KIND, "version": FORMAT_VERSION},
    }
    torch.save(ckpt, path)
    return dict(model.hparams)


def test_checkpoint_roundtrip_and_other_models(tmp_path: Path) -> None:
    path = tmp_path / "m.ckpt"
    hp = _save_model(path, SMALL)
    model = load_model(path)
    assert model.hparams.net == SMALL
    ckpt = read_checkpoint(path)
    check_compatible(ckpt, hp, path)
    other = dict(hp, net={**SMALL, "hidden": 16})
    with pytest.raises(CheckpointError, match="another model: net"):
        check_compatible(ckpt, other, path)
    torch.save({"state_dict": {}}, tmp_path / "foreign.ckpt")
    with pytest.raises(CheckpointError, match="not a checkpoint of an ocrtrain"):
        read_checkpoint(tmp_path / "foreign.ckpt")
    old = torch.load(path, weights_only=False)
    old["ocrtrain"]["version"] = 1
    torch.save(old, tmp_path / "old.ckpt")
    with pytest.raises(CheckpointError, match="checkpoint format 1"):
        read_checkpoint(tmp_path / "old.ckpt")
    (tmp_path / "text.ckpt").write_text("hello")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(tmp_path / "text.ckpt")
