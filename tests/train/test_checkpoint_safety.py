"""Checkpoints never run code: a crafted pickle that would create a file, given to every load
path (predict, eval, resume, Lightning's restore), is refused with one line and exit 2, and
the file it would have created does not exist."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from helpers import REPO
from ocrtrain.train.checkpoint_format import FORMAT_VERSION, MODEL_KIND, read_checkpoint
from ocrtrain.train.checkpoint_io import AtomicCheckpointIO, safe_load
from ocrtrain.train.errors import CheckpointError
from ocrtrain.train.lit_module import OCRLitModule
from train.conftest import SMOKE, save_tiny_checkpoint

CLI = [sys.executable, "-m", "ocrtrain"]


class _CreatesFile:
    """Unpickling this calls `open(marker, "w")`: the attacker's code, harmless and visible."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (str(self.marker), "w"))


def _crafted(tmp_path: Path) -> tuple[Path, Path]:
    """A checkpoint shaped like ours (so only the payload can be refused) and its marker."""
    marker = tmp_path / "pwned"
    path = save_tiny_checkpoint(tmp_path / "evil.ckpt", payload=_CreatesFile(marker))
    return path, marker


def test_every_loader_refuses_a_pickle_that_runs_code(tmp_path: Path) -> None:
    path, marker = _crafted(tmp_path)
    for load in (safe_load, read_checkpoint, AtomicCheckpointIO().load_checkpoint):
        with pytest.raises(CheckpointError, match=r"refusing checkpoint .*: it contains io\.open"):
            load(path)
        assert not marker.exists()


def test_our_checkpoints_need_nothing_beyond_the_allow_list(tmp_path: Path) -> None:
    """A checkpoint as the trainer writes it (hyperparameters, states) loads weights-only."""
    model = OCRLitModule(net={"channels": [4, 4, 4, 4], "hidden": 4, "lstm_layers": 1})
    path = tmp_path / "ok.ckpt"
    ckpt = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "ocrtrain": {"kind": MODEL_KIND, "version": FORMAT_VERSION},
        "callbacks": {"TimeBudget": {"spent_s": 1.5}},
        "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"total": {"ready": 1}}}},
    }
    torch.save(ckpt, path)
    assert torch.serialization.get_unsafe_globals_in_checkpoint(str(path)) == []
    assert read_checkpoint(path)["callbacks"] == {"TimeBudget": {"spent_s": 1.5}}


def _one_error_line(out: str) -> str:
    lines = [ln for ln in out.splitlines() if ln.startswith("ERROR:")]
    assert len(lines) == 1, out
    return lines[0]


def test_predict_and_eval_refuse_it_with_exit_2(tmp_path: Path) -> None:
    path, marker = _crafted(tmp_path)
    data = tmp_path / "data"
    subprocess.run([*CLI, "data", "synth", "--out", str(data), "--n", "2"], check=True)
    image = next(data.glob("images/*.png"))
    for argv in (
        [*CLI, "predict", "--ckpt", str(path), str(image)],
        [*CLI, "eval", "--ckpt", str(path), "--data", str(data)],
    ):
        r = subprocess.run(argv, capture_output=True, text=True, timeout=120)
        assert r.returncode == 2, r.stdout + r.stderr
        assert "refusing checkpoint" in _one_error_line(r.stderr)
        assert not marker.exists()


@pytest.mark.slow
def test_resume_from_it_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    path, marker = _crafted(tmp_path)
    outputs = tmp_path / "outputs"
    r = subprocess.run(
        [
            sys.executable,
            str(REPO / "runners" / "train.py"),
            *SMOKE,
            f"paths.outputs_root={outputs}",
            f"resume={path}",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=REPO,
    )
    out = r.stdout + r.stderr
    assert r.returncode == 2, out
    assert "refusing checkpoint" in _one_error_line(out)
    assert not marker.exists()
    assert not outputs.exists()
