"""`bench/train_accuracy.py` end to end on a tiny untrained model: both text mixes scored,
an unknown mix refused with one line (the benchmark's plumbing, not its figures)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from helpers import REPO
from train.conftest import save_tiny_checkpoint

BENCH = REPO / "bench" / "train_accuracy.py"


def _bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(BENCH), *args], capture_output=True, text=True, timeout=300
    )


def test_the_benchmark_scores_each_text_mix_and_preset(tmp_path: Path) -> None:
    ckpt = str(save_tiny_checkpoint(tmp_path / "tiny.ckpt"))
    done = _bench("--ckpt", ckpt, "--n", "3", "--presets", "clean,heavy")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.splitlines()[-1])
    assert set(rows) == {"basic", "receipts"}
    assert all(set(r) == {"clean", "heavy"} for r in rows.values())
    assert all(p["lines"] == 3 for r in rows.values() for p in r.values())
    assert "| basic | clean |" in done.stdout

    refused = _bench("--ckpt", ckpt, "--text", "basic,novels")
    assert refused.returncode == 2
    assert refused.stderr.strip() == "unknown text mix(es): novels (known: receipts, basic)"
