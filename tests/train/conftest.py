"""Fixtures for the training tests: start `runners/train.py` (supervised) and find its outputs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from helpers import REPO, alive, kill_all, wait_until

RUNNER = REPO / "runners" / "train.py"
# Tiny, quick and with DataLoader workers: the shape of every training test.
SMOKE = ["debug=smoke", "dataloaders.train.num_workers=2", "dataloaders.val.num_workers=1"]


def save_tiny_checkpoint(path: Path, **extra: object) -> Path:
    """A checkpoint of a tiny untrained recognizer in this project's format, plus `extra` keys."""
    import torch

    from ocrtrain.train.checkpoint_format import FORMAT_VERSION, MODEL_KIND
    from ocrtrain.train.lit_module import OCRLitModule

    model = OCRLitModule(net={"channels": [4, 4, 4, 4], "hidden": 4, "lstm_layers": 1})
    torch.save(
        {
            "state_dict": model.state_dict(),
            "hyper_parameters": dict(model.hparams),
            "ocrtrain": {"kind": MODEL_KIND, "version": FORMAT_VERSION},
            **extra,
        },
        path,
    )
    return path


@pytest.fixture(autouse=True)
def _train_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Own `$OCRTRAIN_HOME` (the top-level conftest sets one too) and no supervisor bypass."""
    if "OCRTRAIN_HOME" not in os.environ:
        monkeypatch.setenv("OCRTRAIN_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("OCRTRAIN_NO_SUPERVISOR", raising=False)


def descendants(pid: int) -> list[int]:
    """All live descendants of `pid` (via /proc children lists)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        p = todo.pop()
        for task in Path(f"/proc/{p}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for k in map(int, kids):
                if k not in out:
                    out.append(k)
                    todo.append(k)
    return out


class TrainProc:
    """A `runners/train.py` process and the pids it has been seen to own."""

    def __init__(self, overrides: Sequence[str], outputs: Path, env: dict[str, str]) -> None:
        self.outputs = outputs
        cmd = [sys.executable, str(RUNNER), f"paths.outputs_root={outputs}", *overrides]
        self.proc = subprocess.Popen(
            cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
        )
        self.seen: set[int] = {self.proc.pid}

    def track(self) -> list[int]:
        pids = descendants(self.proc.pid)
        self.seen.update(pids)
        return pids

    def wait(self, timeout: float = 120.0) -> tuple[int, str]:
        out, _ = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, out

    def artifacts(self, home: Path) -> dict[str, str] | None:
        for f in (home / "runs").glob("*/artifacts.json"):
            return json.loads(f.read_text())
        return None

    def assert_no_survivors(self, timeout: float = 10.0) -> None:
        wait_until(lambda: not alive(self.seen), timeout=timeout, what="no process left")


def trainer_pid(p: TrainProc) -> int:
    """The trainer: the supervisor's descendant running runners/train.py without workers' mark."""

    def find() -> int | None:
        for pid in p.track():
            try:
                cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if any(c.endswith(b"runners/train.py") for c in cmd) and descendants(pid):
                return pid
        return None

    return wait_until(find, timeout=120, interval=0.05, what="the trainer and its workers")


@pytest.fixture
def start_train(tmp_path: Path) -> Iterator[object]:
    procs: list[TrainProc] = []

    def start(overrides: Sequence[str], outputs: Path | None = None, **env: str) -> TrainProc:
        full_env = {**os.environ, **env}
        p = TrainProc(overrides, outputs or tmp_path / "outputs", full_env)
        procs.append(p)
        return p

    yield start
    for p in procs:
        if p.proc.poll() is None:
            kill_all([p.proc.pid, *descendants(p.proc.pid)])
            out, _ = p.proc.communicate(timeout=10)
            print(f"output of the killed training run:\n{out}")
        left = alive(p.seen)
        if left:
            kill_all(left)
            pytest.fail(f"training processes left behind: {left}")


def last_metric_step(metrics: Path) -> int:
    """The latest train step recorded in a metrics.jsonl (0 when none yet)."""
    if not metrics.is_file():
        return 0
    steps = [
        json.loads(line).get("step", 0)
        for line in metrics.read_text().splitlines()
        if line.strip().endswith("}")
    ]
    return max(steps, default=0)
