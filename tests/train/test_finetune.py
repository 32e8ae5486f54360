"""Fine-tuning a trained model on a labels.tsv folder: `data=folder model.init_from=CKPT`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from train.conftest import SMOKE, trainer_pid

pytestmark = pytest.mark.slow


def test_finetune_starts_from_the_checkpoint_on_a_folder(start_train, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    p = start_train(SMOKE, outputs)
    trainer_pid(p)
    rc, out = p.wait(timeout=240)
    assert rc == 0, out
    p.assert_no_survivors()
    base = outputs / "smoke" / "latest" / "checkpoints" / "best.ckpt"
    assert base.is_file()

    lines = tmp_path / "mine"
    cli = [sys.executable, "-m", "ocrtrain", "data", "synth", "--out", str(lines), "--n", "24"]
    subprocess.run(cli, check=True, capture_output=True)
    tune = [*SMOKE, "experiment=finetune", "experiment_name=tuned", "data=folder",
            f"data.path={lines}", f"model.init_from={base}", "trainer.max_epochs=2"]  # fmt: skip
    p = start_train(tune, outputs)
    trainer_pid(p)
    rc, out = p.wait(timeout=240)
    assert rc == 0, out
    p.assert_no_survivors()
    assert f"model.init_from: weights of {base}" in out
    assert (outputs / "tuned" / "latest" / "checkpoints" / "best.ckpt").is_file()

    # Weights of another network are refused before anything is written: one line, exit 2.
    p = start_train(["experiment=finetune", "data=folder", f"data.path={lines}",
                     f"model.init_from={base}", "experiment_name=other"], outputs)  # fmt: skip
    rc, out = p.wait(timeout=240)
    p.assert_no_survivors()
    assert rc == 2, out
    assert "belongs to another model" in out
    assert not (outputs / "other").exists()
