"""Nothing left includes files: a run's empty cgroup folder and the `/tmp/pymp-*` folders its
killed workers recorded are removed by the watchdog, `ocrtrain cleanup` and the startup check;
folders of live runs and unrecorded ones are never touched."""

from __future__ import annotations

import json
import shutil
import signal
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from mon_helpers import alive, crash_supervisor, identity, kill_all, kill_sig, ocrtrain, start_run

from helpers import wait_until
from ocrtrain.monitor.startup import startup_check
from ocrtrain.procman.journal import Journal, RunState


@pytest.fixture
def decoy() -> Iterator[Path]:
    """A pymp-* folder no run recorded (another user's, another program's)."""
    path = Path(tempfile.mkdtemp(prefix="pymp-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _pymp_run(journal: Journal, tmp_path: Path, procs, name: str):  # type: ignore[no-untyped-def]
    handle, info = start_run(journal, tmp_path, "--workers", "2", "--pymp", name=name)
    rec = handle.record()
    idents = [identity(p) for p in (info["main"], *info["workers"])]
    procs.add(*idents, identity(rec.supervisor_pid), identity(rec.watchdog_pid))
    dirs = [Path(d) for d in info["tmpdirs"]]
    assert len(dirs) == 2 and all(d.is_dir() for d in dirs)
    return handle, rec, idents, dirs


def _gone(paths: list[Path]) -> bool:
    return not any(p.exists() for p in paths)


def test_the_watchdog_removes_what_a_run_left(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    _handle, rec, _idents, dirs = _pymp_run(journal, tmp_path, procs, "wd")
    kill_sig(identity(rec.supervisor_pid), signal.SIGKILL)  # the watchdog acts
    wait_until(lambda: journal.get_run(rec.id).state == RunState.LOST, 20, "the run lost")
    assert _gone(dirs)
    if rec.cgroup:
        assert not Path(rec.cgroup).exists()


def test_cleanup_removes_what_a_run_left_and_nothing_else(
    journal: Journal, tmp_path: Path, procs, decoy: Path
) -> None:  # type: ignore[no-untyped-def]
    live, live_rec, live_idents, live_dirs = _pymp_run(journal, tmp_path, procs, "live")
    _h, rec, _idents, dirs = _pymp_run(journal, tmp_path, procs, "crashed")
    crash_supervisor(journal, rec.id)  # supervisor and watchdog SIGKILLed: nobody cleans up
    assert not _gone(dirs)
    out = ocrtrain("cleanup", "--yes", "--json")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)["report"]
    assert set(map(str, dirs)) <= set(report["removed_files"])
    assert _gone(dirs)
    if rec.cgroup:
        assert not Path(rec.cgroup).exists() and rec.cgroup in report["removed_files"]
    assert decoy.is_dir(), "a folder no run recorded is never removed"
    assert all(d.is_dir() for d in live_dirs), "a live run's folders stay"
    live.stop(grace=5)
    live.wait(timeout=20)
    supervisor = identity(live_rec.supervisor_pid)
    wait_until(lambda: not alive(supervisor), 10, "the live run's supervisor to exit")
    kill_all(live_idents)
    startup_check(journal)  # its killed workers' folders: the next check sweeps them
    assert _gone(live_dirs)


def test_the_supervisor_removes_what_its_run_left(journal: Journal, tmp_path: Path, procs) -> None:  # type: ignore[no-untyped-def]
    handle, rec, _idents, dirs = _pymp_run(journal, tmp_path, procs, "stopped")
    handle.stop(grace=5)
    handle.wait(timeout=20)
    supervisor = identity(rec.supervisor_pid)
    wait_until(lambda: not alive(supervisor), 10, "the supervisor to exit")
    assert _gone(dirs), "the supervisor's own teardown removes the run's temp folders"
    assert not (journal.home / "leftovers" / rec.id).exists()


def test_the_startup_check_removes_an_empty_cgroup_and_temp_folders(
    journal: Journal, tmp_path: Path, procs
) -> None:  # type: ignore[no-untyped-def]
    _h, rec, idents, dirs = _pymp_run(journal, tmp_path, procs, "startup")
    crash_supervisor(journal, rec.id)
    kill_all(idents)  # the orphaned workers die too (OOM, a reboot): only files remain
    wait_until(lambda: not rec.cgroup or not list(_procs(Path(rec.cgroup))), 10, "empty cgroup")
    hints = startup_check(journal)
    assert any("marked lost" in h for h in hints), hints
    assert _gone(dirs)
    if rec.cgroup:
        assert not Path(rec.cgroup).exists()


def _procs(cgroup: Path) -> list[str]:
    try:
        return (cgroup / "cgroup.procs").read_text().split()
    except OSError:
        return []
