"""`bench/unseen_engine.py` end to end: lines drawn by Pango in held-out families, written as
labels.tsv folders and scored with `ocrtrain eval` (a tiny untrained model: the benchmark's
plumbing, not its figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO
from ocrtrain.train.data.folder import read_labels
from train.conftest import save_tiny_checkpoint

BENCH = REPO / "bench" / "unseen_engine.py"


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300
    )


def test_the_benchmark_draws_scores_and_keeps_its_sets(tmp_path: Path) -> None:
    pytest.importorskip("pangocairocffi", reason="Pango bindings come with .[bench]")
    ckpt = save_tiny_checkpoint(tmp_path / "tiny.ckpt")
    out = tmp_path / "sets"
    done = _bench("--ckpt", str(ckpt), "--n", "4", "--no-tesseract", "--json", "--out", str(out))
    if done.returncode == 1 and "held-out families" in done.stderr:
        pytest.skip("none of the held-out families is installed (make fonts)")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["families"], report
    assert set(report["sets"]) == {"clean", "degraded"}
    for name, row in report["sets"].items():
        assert row["ocrtrain"]["lines"] == 4
        assert row["ocrtrain"]["cer"] >= 0.0
        labels = read_labels(out / name)
        assert len(labels) == 4
        assert all(image.is_file() for image, _ in labels)


def test_a_missing_checkpoint_is_one_line_and_exit_2(tmp_path: Path) -> None:
    done = _bench("--ckpt", str(tmp_path / "none.ckpt"), "--n", "2", "--no-tesseract")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        f"ERROR: checkpoint not found: {tmp_path / 'none.ckpt'}"
    ]
    assert done.stdout == ""
