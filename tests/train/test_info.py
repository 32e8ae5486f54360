"""`--help` and `--cfg job` of the training entry points: answered without a run."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from helpers import REPO

RUNNER = [sys.executable, str(REPO / "runners" / "train.py")]
CLI_TRAIN = [sys.executable, "-m", "ocrtrain", "train"]


def _run(cmd: list[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=120)


def _no_runs(home: Path) -> bool:
    """No supervised run was started (none journaled, no run folder)."""
    runs = home / "runs"
    return not runs.exists() or not any(runs.iterdir())


@pytest.mark.parametrize("entry", [RUNNER, CLI_TRAIN], ids=["runner", "cli"])
def test_help_lists_the_config_groups_and_starts_no_run(entry: list[str], ocrtrain_home: Path):
    res = _run([*entry, "--help"])
    assert res.returncode == 0, res.stderr
    assert "usage:" in res.stdout and "--cfg job" in res.stdout
    assert "debug        smoke" in res.stdout and "trainer      cpu, gpu" in res.stdout
    assert _no_runs(ocrtrain_home)


@pytest.mark.parametrize("entry", [RUNNER, CLI_TRAIN], ids=["runner", "cli"])
def test_help_read_in_part_is_no_error(entry: list[str]) -> None:
    """`--help | head -1`: the reader leaves early (here before the first byte); no
    traceback, exit 0."""
    proc = subprocess.Popen(
        [*entry, "--help"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=REPO
    )
    assert proc.stdout is not None
    proc.stdout.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and b"Traceback" not in err, err


@pytest.mark.parametrize("entry", [RUNNER, CLI_TRAIN], ids=["runner", "cli"])
def test_cfg_job_prints_the_composed_config(entry: list[str], ocrtrain_home: Path):
    res = _run([*entry, "--cfg", "job", "debug=smoke", "trainer.max_epochs=3"])
    assert res.returncode == 0, res.stderr
    cfg = yaml.safe_load(res.stdout)
    assert cfg["experiment_name"] == "smoke" and cfg["trainer"]["max_epochs"] == 3
    assert _no_runs(ocrtrain_home)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--cfg"], "--cfg takes one of job, all"),
        (["-m", "debug=smoke"], "multirun sweeps are not supported"),
        (["--bogus"], "unknown option --bogus"),
        (["--cfg", "job", "trainer.bogus=1"], "trainer.bogus"),
    ],
)
def test_bad_options_are_one_error(args: list[str], message: str):
    res = _run([*RUNNER, *args])
    assert res.returncode == 2, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("ERROR:")]
    assert len(errors) == 1 and message in errors[0], res.stderr
