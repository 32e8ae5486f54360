"""Orphans and stale runs found and cleaned, with real processes; nothing innocent touched."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest
from mon_helpers import (
    alive,
    all_pids,
    assert_none_alive,
    crash_supervisor,
    identity,
    ocrtrain,
    run_of,
    start_run,
)

from ocrtrain.monitor import cleanup
from ocrtrain.monitor.snapshot import collect
from ocrtrain.monitor.startup import startup_check
from ocrtrain.procman.journal import EventKind, Journal, RunState


def _orphaned_run(journal: Journal, tmp_path: Path, procs, *flags: str):  # type: ignore[no-untyped-def]
    """A run whose supervisor and watchdog were SIGKILLed: its trainer dies of its parent-death
    signal, its workers live on, re-parented, carrying the run id."""
    handle, info = start_run(journal, tmp_path, "--workers", "2", *flags)
    rec = handle.record()
    workers = [identity(w) for w in info["workers"]]
    trainer = identity(info["main"])
    procs.add(trainer, *workers, identity(rec.supervisor_pid), identity(rec.watchdog_pid))
    crash_supervisor(journal, rec.id)
    assert_none_alive([trainer])  # PR_SET_PDEATHSIG
    assert all(alive(w) for w in workers)
    return rec, workers


def test_orphans_found_and_cleaned_after_supervisor_and_watchdog_are_killed(
    journal: Journal, tmp_path: Path, procs
) -> None:  # type: ignore[no-untyped-def]
    rec, workers = _orphaned_run(journal, tmp_path, procs)
    # ps flags the run and each worker as orphans (re-parented, supervisor gone).
    out = ocrtrain("ps", "--json")
    assert out.returncode == 0, out.stderr
    run = run_of(json.loads(out.stdout), rec.id)
    assert "orphan" in run["flags"]
    by_pid = {p["pid"]: p for p in run["processes"]}
    assert set(by_pid) == {w[0] for w in workers}
    assert all("orphan" in p["flags"] for p in by_pid.values())
    # The startup check names them and the command that removes them.
    hints = startup_check(journal)
    assert any(
        f"2 orphaned process(es) of run {rec.id}" in h and "cleanup --yes" in h for h in hints
    )
    # cleanup ends them and closes the run as lost.
    out = ocrtrain("cleanup", "--run", rec.id, "--yes", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["report"]
    assert sorted(e["pid"] for e in report["ended"]) == sorted(w[0] for w in workers)
    assert report["survived"] == [] and report["ok"] is True
    assert_none_alive(workers, timeout=2)
    final = journal.get_run(rec.id)
    assert final is not None and final.state == RunState.LOST
    kinds = [e.kind for e in journal.events(rec.id)]
    assert EventKind.CLEANUP in kinds and EventKind.SIGNAL_SENT in kinds
    sent = [e.pid for e in journal.events(rec.id, kinds=[EventKind.SIGNAL_SENT])]
    assert sorted(set(sent)) == sorted(w[0] for w in workers)


def test_dry_run_signals_nothing(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    rec, workers = _orphaned_run(journal, tmp_path, procs)
    before = len(journal.events(rec.id))
    out = ocrtrain("cleanup", "--run", rec.id, "--dry-run")
    assert out.returncode == 0, out.stderr
    for pid, _start in workers:
        assert f"would signal pid {pid} (worker, run {rec.id}): orphan:" in out.stdout
    # Without --yes and without a terminal: the plan only, with a hint.
    out2 = ocrtrain("cleanup", "--run", rec.id)
    assert out2.returncode == 0 and "--yes" in out2.stderr
    assert all(alive(w) for w in workers)
    assert len(journal.events(rec.id)) == before  # nothing recorded: nothing done
    state = journal.get_run(rec.id)
    assert state is not None and state.state == RunState.RUNNING
    report = cleanup.execute(cleanup.plan(journal, run_id=rec.id), journal, grace=2)
    assert report.ok
    assert_none_alive(workers, timeout=2)


def test_grace_then_sigkill_and_force(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    rec, workers = _orphaned_run(journal, tmp_path, procs, "--ignore-term")
    report = cleanup.execute(cleanup.plan(journal, run_id=rec.id), journal, grace=0.3)
    assert report.ok
    assert {e.signal for e in report.ended} == {"SIGKILL"}
    assert_none_alive(workers, timeout=2)
    kinds = [e.kind for e in journal.events(rec.id)]
    assert EventKind.ESCALATED in kinds


def test_force_kills_at_once(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    rec, workers = _orphaned_run(journal, tmp_path, procs, "--ignore-term")
    out = ocrtrain("cleanup", "--run", rec.id, "--yes", "--force", "--grace", "60", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["report"]
    assert {e["signal"] for e in report["ended"]} == {"SIGKILL"}
    assert_none_alive(workers, timeout=2)


def test_pid_reuse_is_never_signalled(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    rec, workers = _orphaned_run(journal, tmp_path, procs)
    plan = cleanup.plan(journal, run_id=rec.id)
    assert {i.pid for i in plan.items} == {w[0] for w in workers}
    victim = plan.items[0]
    os.kill(victim.pid, signal.SIGKILL)
    assert_none_alive([(victim.pid, victim.start)])
    innocent = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    procs.add(identity(innocent.pid))
    try:
        # The plan's pid now names another process (as after a pid reuse); its start differs.
        forged = replace(victim, pid=innocent.pid)
        plan = replace(plan, items=(forged, *plan.items[1:]))
        report = cleanup.execute(plan, journal, grace=2)
        assert alive(identity(innocent.pid))
        skipped = {e.pid: e.reason for e in report.skipped}
        assert "pid reused" in skipped[innocent.pid]
        assert innocent.pid not in [e.pid for e in report.ended]
        assert report.ok
    finally:
        innocent.kill()
        innocent.wait()


def test_stale_run_becomes_lost(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    rec, workers = _orphaned_run(journal, tmp_path, procs, "--workers", "0")
    del workers
    snap = collect(journal)
    run = next(r for r in snap.runs if r.id == rec.id)
    assert "stale" in run.flags and run.members == ()
    out = ocrtrain("cleanup", "--run", rec.id, "--dry-run")
    assert f"would mark run {rec.id} lost" in out.stdout
    report = cleanup.execute(cleanup.plan(journal, run_id=rec.id), journal)
    assert report.marked_lost == [rec.id]
    final = journal.get_run(rec.id)
    assert final is not None and final.state == RunState.LOST and "stale" in (final.reason or "")


def test_startup_check_marks_stale_runs_lost(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    rec, _ = _orphaned_run(journal, tmp_path, procs, "--workers", "0")
    hints = startup_check(journal)
    assert any(rec.id in h and "lost" in h for h in hints)
    final = journal.get_run(rec.id)
    assert final is not None and final.state == RunState.LOST


def test_all_stops_live_runs_only_with_yes(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    handle, info = start_run(journal, tmp_path, "--workers", "1")
    rec = handle.record()
    idents = [identity(p) for p in [*all_pids(info), rec.supervisor_pid, rec.watchdog_pid]]
    procs.add(*idents)
    # A plain cleanup leaves a healthy run alone.
    assert cleanup.plan(journal, run_id=rec.id).empty
    out = ocrtrain("cleanup", "--all", "--run", rec.id)  # no TTY, no --yes: plan only
    assert out.returncode == 0 and all(alive(i) for i in idents)
    out = ocrtrain("cleanup", "--all", "--run", rec.id, "--yes", "--grace", "2", "--json")
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["report"]["stopped_runs"] == [rec.id]
    assert_none_alive(idents)
    final = handle.wait(timeout=10)
    assert final.state == RunState.STOPPED


def test_run_must_exist(journal: Journal) -> None:
    out = ocrtrain("cleanup", "--run", "no-such-run", "--dry-run")
    assert out.returncode == 2 and out.stderr.startswith("ERROR:")


@pytest.mark.parametrize("bad", [["--stale", "--all"], ["--grace", "-1"]])
def test_usage_errors(bad: list[str]) -> None:
    out = ocrtrain("cleanup", "--dry-run", *bad)
    assert out.returncode == 2, out.stdout + out.stderr
    assert out.stderr.startswith("ERROR:")
