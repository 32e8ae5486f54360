"""Resource tracking and limits of the supervisor, with real processes: samples are written and
bounded, --max-memory and --timeout stop a run gracefully and say why, --max-runs refuses or
waits."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest
from mon_helpers import TRAINER, all_pids, identity, start_run, wait_until

from ocrtrain.procman.api import start
from ocrtrain.procman.errors import UsageError
from ocrtrain.procman.journal import EventKind, Journal, RunState, SampleRecord
from ocrtrain.procman.spec import RunSpec


def _track(handle, procs) -> None:  # type: ignore[no-untyped-def]
    rec = handle.record()
    for pid in (rec.supervisor_pid, rec.watchdog_pid, rec.child_pid):
        if pid is not None:
            try:
                procs.add(identity(pid))
            except AssertionError:
                pass  # already gone


def _limit_events(journal: Journal, run_id: str) -> list[dict[str, object]]:
    return [e.detail for e in journal.events(run_id, kinds=[EventKind.LIMIT_EXCEEDED])]


def test_max_memory_stops_the_run_gracefully(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    ready = tmp_path / "ready.json"
    argv = (sys.executable, str(TRAINER), "--ready", str(ready), "--workers", "0")
    spec = RunSpec(
        argv=(*argv, "--alloc-mb", "300"), max_memory=150 * 2**20, sample_interval=0.2, grace=2
    )
    handle = start(spec, journal)
    _track(handle, procs)
    final = handle.wait(timeout=30)
    assert final.state == RunState.STOPPED, final
    assert "max-memory" in (final.reason or ""), final.reason
    assert [e["limit"] for e in _limit_events(journal, final.id)] == ["max_memory"]
    assert final.limits == {"max_memory": 150 * 2**20}
    samples = journal.samples(final.id)
    assert samples and max(s.rss_bytes for s in samples) > 150 * 2**20


def test_timeout_stops_the_run_gracefully(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    handle, info = start_run(journal, tmp_path, "--workers", "1", timeout=1.0, grace=2)
    procs.add(*(identity(p) for p in all_pids(info)))
    _track(handle, procs)
    t0 = time.monotonic()
    final = handle.wait(timeout=30)
    assert time.monotonic() - t0 < 10
    assert final.state == RunState.STOPPED
    assert "timeout" in (final.reason or "")
    assert [e["limit"] for e in _limit_events(journal, final.id)] == ["timeout"]


def test_samples_are_written_and_bounded(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    handle, info = start_run(journal, tmp_path, "--workers", "2", sample_interval=0.1)
    procs.add(*(identity(p) for p in all_pids(info)))
    _track(handle, procs)
    try:
        samples = wait_until(lambda: journal.samples(handle.id), 10, "a resource sample")
        wait_until(lambda: journal.samples(handle.id)[-1].n_procs == 3, 10, "3 processes sampled")
        s = journal.samples(handle.id)[-1]
        assert s.rss_bytes > 0 and s.gpu_bytes is None and s.cpu_percent >= 0
        del samples
    finally:
        handle.stop(grace=1)
        handle.wait(timeout=20)
    for i in range(10):
        journal.add_sample(SampleRecord("bounded", float(i), 1, 0.0, 1, None), keep=4)
    assert [s.ts for s in journal.samples("bounded")] == [6.0, 7.0, 8.0, 9.0]


def test_max_runs_refuses_then_waits(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    first, info = start_run(journal, tmp_path, "--workers", "0")
    procs.add(*(identity(p) for p in all_pids(info)))
    _track(first, procs)
    try:
        with pytest.raises(UsageError, match="--max-runs 1"):
            start(RunSpec(argv=("true",), max_runs=1), journal)
        refused = subprocess.run(
            [sys.executable, "-m", "ocrtrain", "run", "--max-runs", "1", "--", "true"],
            capture_output=True, text=True, timeout=60,
        )  # fmt: skip
        assert refused.returncode == 2 and "--max-runs" in refused.stderr
        waiting = subprocess.Popen(
            [sys.executable, "-m", "ocrtrain", "run", "--max-runs", "1", "--wait", "--name",
             "second", "--", "true"],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )  # fmt: skip
        procs.add(identity(waiting.pid))
        # It waits while the first run is active (its row is never created meanwhile).
        wait_until(lambda: waiting.poll() is None, 1, "the second run to wait")
        assert [r.name for r in journal.list_runs()] == [first.record().name]
        first.stop(grace=1)
        first.wait(timeout=20)
        assert waiting.wait(timeout=30) == 0, waiting.communicate()
        second = journal.resolve("second")
        assert second.state == RunState.SUCCEEDED
    finally:
        if first.poll() is None:
            first.stop(grace=1)
            first.wait(timeout=20)
