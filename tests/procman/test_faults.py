"""Each fault of the baseline table, with real processes: nothing of the run survives it."""

from __future__ import annotations

import os
import pty
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from helpers import (
    alive,
    all_workload_pids,
    assert_gone_within,
    kill_all,
    ocrtrain_popen,
    read_ready,
    run_pids,
    wait_until,
    workload_cmd,
)
from ocrtrain.procman.journal import Journal, RunState

BOUND_S = 1.0


@pytest.fixture(params=["all-tiers", "no-cgroup"])
def tiers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Run each fault with every tier, and again without the cgroup tier."""
    if request.param == "no-cgroup":
        monkeypatch.setenv("OCRTRAIN_NO_CGROUP", "1")
    return str(request.param)


def _only_run(journal: Journal) -> str:
    runs = journal.list_runs()
    assert len(runs) == 1
    return runs[0].id


def _event_kinds(journal: Journal, run_id: str) -> list[str]:
    return [e.kind for e in journal.events(run_id)]


def _start(tmp_path: Path, *flags: str, run_flags: tuple[str, ...] = (), **kw):  # type: ignore[no-untyped-def]
    ready = tmp_path / "ready.json"
    proc = ocrtrain_popen("run", *run_flags, "--", *workload_cmd(ready, *flags), **kw)
    info = read_ready(ready)
    return proc, info


def _finish(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_signal_to_supervisor_reaches_child_once(
    tmp_path: Path, tiers: str, sig: signal.Signals
) -> None:
    signals_file = tmp_path / "signals.txt"
    proc, info = _start(tmp_path, "--mode", "busy", "--signals", str(signals_file))
    pids = all_workload_pids(info)
    proc.send_signal(sig)
    wait_until(lambda: not alive([info["main"]]), timeout=5, what="the child to exit")
    assert_gone_within(pids, BOUND_S, "the run's processes")
    assert _finish(proc) == 128 + sig
    assert signals_file.read_text().split() == [sig.name]
    journal = Journal()
    run_id = _only_run(journal)
    run = journal.get_run(run_id)
    assert run is not None and run.state == RunState.STOPPED and run.exit_code == 128 + sig
    kinds = _event_kinds(journal, run_id)
    assert {"signal_received", "signal_sent", "child_exited", "finished"} <= set(kinds)
    assert kinds.count("signal_received") == 1


def test_ctrl_c_in_a_terminal(tmp_path: Path, tiers: str) -> None:
    """Ctrl+C typed at a real (pseudo-)terminal reaches the child exactly once."""
    ready = tmp_path / "ready.json"
    signals_file = tmp_path / "signals.txt"
    argv = [
        sys.executable,
        "-m",
        "ocrtrain",
        "run",
        "--",
        *workload_cmd(ready, "--mode", "busy", "--signals", str(signals_file)),
    ]
    pid, master = pty.fork()
    if pid == 0:  # the terminal's session: the supervisor is its foreground process group
        os.execv(sys.executable, argv)
    try:
        info = read_ready(ready)
        output = b""

        os.set_blocking(master, False)

        def shown() -> bool:
            nonlocal output
            try:
                output += os.read(master, 4096)
            except BlockingIOError:
                pass
            return b"workload ready" in output

        # A terminal shows output as it comes: the child's output reached it through the pty.
        wait_until(shown, timeout=10, what="the child's output on the terminal")
        os.write(master, b"\x03")  # the line discipline sends SIGINT to the foreground group
        assert_gone_within(all_workload_pids(info), 5.0, "the run after Ctrl+C")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 130, output
        assert signals_file.read_text().split() == ["SIGINT"], output
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(master)


def test_second_ctrl_c_escalates(tmp_path: Path) -> None:
    proc, info = _start(
        tmp_path,
        "--exit-on",
        "",
        "--signals",
        str(tmp_path / "s.txt"),
        run_flags=("--grace", "60"),
    )
    proc.send_signal(signal.SIGINT)
    wait_until(lambda: (tmp_path / "s.txt").exists(), what="the first SIGINT to arrive")
    proc.send_signal(signal.SIGINT)
    assert_gone_within(all_workload_pids(info), BOUND_S, "the run after a second Ctrl+C")
    assert _finish(proc) == 128 + signal.SIGKILL
    journal = Journal()
    assert "escalated" in _event_kinds(journal, _only_run(journal))


@pytest.mark.parametrize("mode", ["busy", "blocked"])
def test_sigkill_of_child_with_workers(tmp_path: Path, tiers: str, mode: str) -> None:
    proc, info = _start(tmp_path, "--mode", mode)
    os.kill(info["main"], signal.SIGKILL)
    assert_gone_within(info["workers"], BOUND_S, f"{mode} workers after SIGKILL of the child")
    assert _finish(proc) == 137
    journal = Journal()
    run = journal.get_run(_only_run(journal))
    assert run is not None and run.state == RunState.FAILED and run.exit_signal == 9
    kinds = _event_kinds(journal, run.id)
    assert "survivors_found" in kinds and "reaped" in kinds


@pytest.mark.parametrize("mode", ["busy", "blocked"])
def test_sigkill_of_supervisor(tmp_path: Path, tiers: str, mode: str) -> None:
    proc, info = _start(tmp_path, "--mode", mode, "--setsid-helper")
    pids = all_workload_pids(info)
    run_id = _only_run(Journal())
    proc.kill()  # SIGKILL of the supervisor itself
    proc.wait()
    assert_gone_within(pids, BOUND_S, "the run after SIGKILL of its supervisor")
    assert not run_pids(run_id)
    journal = Journal()
    wait_until(
        lambda: journal.get_run(run_id).state == RunState.LOST,  # type: ignore[union-attr]
        timeout=5,
        what="the watchdog to close the run",
    )
    assert "supervisor_lost" in _event_kinds(journal, run_id)


@pytest.mark.parametrize("flag", ["--setsid-helper", "--double-fork"])
def test_escaped_descendants_are_cleaned(tmp_path: Path, tiers: str, flag: str) -> None:
    proc, info = _start(tmp_path, flag, "--exit-after-ready", "0")
    assert info["extra"], "the workload promised an escaped process"
    assert_gone_within(all_workload_pids(info), 3.0, f"processes escaped with {flag}")
    assert _finish(proc) == 0


def test_term_ignoring_process_is_killed_after_grace(tmp_path: Path) -> None:
    proc, info = _start(
        tmp_path, "--workers-ignore-term", "--exit-after-ready", "0", run_flags=("--grace", "0.5")
    )
    t0 = time.monotonic()
    assert_gone_within(info["workers"], 3.0, "SIGTERM-ignoring workers")
    assert time.monotonic() - t0 >= 0.3  # they got the grace first
    assert _finish(proc) == 0
    journal = Journal()
    kinds = _event_kinds(journal, _only_run(journal))
    assert "escalated" in kinds
    run = journal.get_run(_only_run(journal))
    assert run is not None and run.state == RunState.SUCCEEDED


def test_child_exiting_zero_leaves_nothing(tmp_path: Path, tiers: str) -> None:
    proc, info = _start(tmp_path, "--workers", "2", "--exit-after-ready", "0")
    assert_gone_within(all_workload_pids(info), BOUND_S + 1, "background processes")
    assert _finish(proc) == 0


def test_launcher_sigkill_ends_a_foreground_run(tmp_path: Path) -> None:
    """A script that started `ocrtrain run` (not detached) dies: the run ends with it."""
    ready = tmp_path / "ready.json"
    launcher = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import subprocess, sys; subprocess.run(sys.argv[1:])",
            sys.executable,
            "-m",
            "ocrtrain",
            "run",
            "--",
            *workload_cmd(ready, "--mode", "busy"),
        ],
        start_new_session=True,
    )
    info = read_ready(ready)
    launcher.kill()
    launcher.wait()
    try:
        assert_gone_within(all_workload_pids(info), 2.0, "the run after its launcher died")
    finally:
        kill_all(alive(all_workload_pids(info)))
    journal = Journal()
    wait_until(
        lambda: journal.get_run(_only_run(journal)).is_final,  # type: ignore[union-attr]
        timeout=10,
        what="the run to end",
    )


def test_detached_run_survives_its_launcher_and_stops(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "ocrtrain",
            "run",
            "--detach",
            "--name",
            "bg",
            "--",
            *workload_cmd(ready),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    run_id = out.stdout.strip()
    info = read_ready(ready)
    assert sorted(run_pids(run_id)) == sorted(all_workload_pids(info))
    stop = subprocess.run(
        [sys.executable, "-m", "ocrtrain", "stop", "bg"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert stop.returncode == 0, stop.stderr
    assert "stopped" in stop.stdout
    assert_gone_within(all_workload_pids(info), BOUND_S, "the stopped run")


def _state(pid: int) -> str:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()[0].decode()


def test_ctrl_z_stops_the_run_and_fg_continues_it(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    pid, master = pty.fork()
    if pid == 0:
        os.execv(
            sys.executable,
            [sys.executable, "-m", "ocrtrain", "run", "--", *workload_cmd(ready, "--workers", "1")],
        )
    try:
        info = read_ready(ready)
        os.write(master, b"\x1a")  # Ctrl+Z
        wait_until(lambda: _state(pid) == "T", what="the supervisor to stop")
        wait_until(lambda: _state(info["main"]) == "T", what="the child to stop")
        os.killpg(pid, signal.SIGCONT)  # what the shell's `fg` does
        wait_until(lambda: _state(info["main"]) != "T", what="the child to continue")
        os.write(master, b"\x03")
        assert_gone_within(all_workload_pids(info), 5.0, "the run after Ctrl+C")
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 130
    finally:
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(master)
