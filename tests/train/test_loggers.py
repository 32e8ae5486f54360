"""The `logger` config group: each logger receives the run's scalars (a supervised smoke run
per logger), and the run's log shows no library warning."""

from __future__ import annotations

import csv
import re
import struct
from pathlib import Path

import pytest

from train.conftest import SMOKE

pytestmark = pytest.mark.slow

RUN = [*SMOKE, "trainer.max_epochs=1", "test_after_fit=false"]
WARNING_LINE = re.compile(r"\.py:\d+: |Warning:")  # how Python and Lightning print warnings


def tensorboard_tags(folder: Path) -> set[str]:
    """The scalar tags in a folder's TensorBoard event files (TFRecord framing)."""
    from tensorboardX.proto import event_pb2

    tags: set[str] = set()
    for path in folder.glob("events.out.tfevents.*"):
        data = path.read_bytes()
        pos = 0
        while pos + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[pos : pos + 8])
            event = event_pb2.Event.FromString(data[pos + 12 : pos + 12 + length])
            pos += 12 + length + 4
            tags.update(v.tag for v in event.summary.value)
    return tags


def run_folder(outputs: Path) -> Path:
    (folder,) = (outputs / "smoke" / "runs").iterdir()
    return folder


@pytest.mark.parametrize("logger", ["csv", "tensorboard", "mlflow"])
def test_logger_receives_the_runs_scalars(
    start_train, tmp_path: Path, logger: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs = tmp_path / "outputs"
    p = start_train([*RUN, f"logger={logger}"], outputs)
    rc, out = p.wait(timeout=300)
    assert rc == 0, out
    p.assert_no_survivors()
    assert not WARNING_LINE.search(out), out
    run = run_folder(outputs)
    if logger == "csv":
        with open(run / "csv" / "metrics.csv", newline="") as f:
            rows = list(csv.DictReader(f))
        assert any(r.get("train/loss") for r in rows) and any(r.get("val/cer") for r in rows)
    elif logger == "tensorboard":
        tags = tensorboard_tags(run / "tensorboard")
        assert {"train/loss", "val/cer", "val/line_acc"} <= tags, tags
        assert {"samples/00", "samples/text_summary"} & tags, tags  # the gallery's lines
    else:
        from mlflow.tracking import MlflowClient

        monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # as the trainer does

        client = MlflowClient(tracking_uri=(outputs / "mlruns").resolve().as_uri())
        (experiment,) = [e for e in client.search_experiments() if e.name == "smoke"]
        (mlrun,) = client.search_runs([experiment.experiment_id])
        assert mlrun.info.status == "FINISHED"
        assert {"train/loss", "val/cer", "val/line_acc"} <= set(mlrun.data.metrics)
        step_dirs = client.list_artifacts(mlrun.info.run_id, "samples")
        assert any(a.path.endswith(".md") for a in step_dirs), step_dirs  # the gallery's lines


def test_no_logger(start_train, tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    p = start_train([*RUN, "~logger"], outputs)
    rc, out = p.wait(timeout=300)
    assert rc == 0, out
    p.assert_no_survivors()
    assert not (run_folder(outputs) / "csv").exists()
