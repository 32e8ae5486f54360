"""The run CLI: exit statuses, bad input, logs, stop, runs, events, doctor."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path

import pytest

from helpers import (
    all_workload_pids,
    assert_gone_within,
    ocrtrain,
    ocrtrain_popen,
    read_ready,
    run_pids,
    wait_until,
    workload_cmd,
)
from ocrtrain.procman.home import network_filesystem
from ocrtrain.procman.journal import Journal, RunState


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("raise SystemExit(0)", 0),
        ("raise SystemExit(3)", 3),
        ("import os; os.kill(os.getpid(), 15)", 143),
        ("import os; os.kill(os.getpid(), 9)", 137),
    ],
)
def test_exit_status_is_the_childs(code: str, expected: int) -> None:
    out = ocrtrain("run", "--", sys.executable, "-c", code)
    assert out.returncode == expected


def test_missing_and_unexecutable_commands(tmp_path: Path) -> None:
    out = ocrtrain("run", "--", str(tmp_path / "nope"))
    assert out.returncode == 127
    assert out.stderr.strip().count("\n") == 0 and "not found" in out.stderr
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    out = ocrtrain("run", "--", str(script))
    assert out.returncode == 126 and "not executable" in out.stderr
    runs = Journal().list_runs()
    assert [r.state for r in runs] == [RunState.FAILED, RunState.FAILED]


@pytest.mark.parametrize(
    "args",
    [
        ("run",),
        ("run", "--"),
        ("run", "--grace", "-1", "--", "true"),
        ("run", "--grace", "soon", "--", "true"),
        ("run", "--grace", "nan", "--", "true"),
        ("run", "--max-memory", "lots", "--", "true"),
        ("run", "--max-runs", "0", "--", "true"),
        ("stop", "no-such-run"),
        ("events", "no-such-run"),
        ("logs", "no-such-run"),
        ("stop", "x", "--grace", "-3"),
        ("bogus-command",),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(
    args: tuple[str, ...], ocrtrain_home: Path
) -> None:
    out = ocrtrain(*args)
    assert out.returncode == 2, out
    assert out.stderr.startswith("ERROR:")
    assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    journal = Path(ocrtrain_home) / "journal.sqlite3"
    assert not journal.exists() or Journal().list_runs() == []


def test_unwritable_home_is_a_usage_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    env = {**__import__("os").environ, "OCRTRAIN_HOME": str(blocker / "home")}
    out = ocrtrain("run", "--", "true", env=env)
    assert out.returncode == 2
    assert out.stderr.strip() == (
        f"ERROR: OCRTRAIN_HOME={blocker / 'home'} is not writable: Not a directory"
    )
    ro = tmp_path / "ro"
    ro.mkdir()
    env["OCRTRAIN_HOME"] = "/proc/ocrtrain-home"
    out = ocrtrain("runs", env=env)
    assert out.returncode == 2 and "not writable" in out.stderr
    assert not Path("/proc/ocrtrain-home").exists()


def test_logs_runs_events_json() -> None:
    out = ocrtrain(
        "run",
        "--name",
        "hello",
        "--",
        sys.executable,
        "-c",
        # One write a line: print() under PYTHONUNBUFFERED=1 writes "out" and "\n" apart, and
        # two pipes have no order between them, so "err\n" could land between the two.
        "import sys; sys.stdout.write('out\\n'); sys.stderr.write('err\\n')",
    )
    assert out.returncode == 0
    assert out.stdout == "out\n" and out.stderr == "err\n"  # streams kept apart without a tty
    logs = ocrtrain("logs", "hello")
    assert sorted(logs.stdout.split()) == ["err", "out"]
    runs = json.loads(ocrtrain("runs", "--json").stdout)
    assert runs[0]["name"] == "hello" and runs[0]["state"] == "succeeded"
    events = json.loads(ocrtrain("events", "hello", "--json").stdout)
    assert events[0]["kind"] == "created" and events[-1]["kind"] == "finished"
    prefix = runs[0]["id"][:17]
    assert ocrtrain("events", prefix).returncode == 0


def test_logs_follow_and_stop_force(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    out = ocrtrain("run", "--detach", "--name", "f", "--", *workload_cmd(ready, "--ignore-term"))
    run_id = out.stdout.strip()
    info = read_ready(ready)
    follower = ocrtrain_popen("logs", "-f", run_id)
    stop = ocrtrain("stop", "--force", run_id)
    assert stop.returncode == 0, stop.stderr
    assert_gone_within(all_workload_pids(info), 1.0, "a force-stopped run")
    assert follower.wait(timeout=15) == 0
    assert "workload ready" in follower.communicate()[0]
    run = Journal().get_run(run_id)
    assert run is not None and run.state == RunState.STOPPED and "force" in (run.reason or "")
    again = ocrtrain("stop", run_id)
    assert again.returncode == 2 and "already ended" in again.stderr


def test_stop_with_grace_override(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    out = ocrtrain("run", "--detach", "--grace", "60", "--", *workload_cmd(ready, "--ignore-term"))
    run_id = out.stdout.strip()
    info = read_ready(ready)
    stop = ocrtrain("stop", "--grace", "0.3", run_id)
    assert stop.returncode == 0
    assert_gone_within(all_workload_pids(info), 1.0, "the run")
    kinds = [e.kind for e in Journal().events(run_id)]
    assert "escalated" in kinds


def test_usr1_is_forwarded_and_run_goes_on(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    sigs = tmp_path / "sigs"
    proc = ocrtrain_popen("run", "--", *workload_cmd(ready, "--signals", str(sigs)))
    info = read_ready(ready)
    proc.send_signal(signal.SIGUSR1)
    wait_until(lambda: sigs.exists() and sigs.read_text() == "SIGUSR1\n", what="SIGUSR1")
    assert run_pids(Journal().list_runs()[0].id)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=10) == 143
    assert_gone_within(all_workload_pids(info), 1.0, "the run")


def test_max_runs_refuses_then_allows(tmp_path: Path) -> None:
    ready = tmp_path / "ready.json"
    run_id = ocrtrain("run", "--detach", "--", *workload_cmd(ready)).stdout.strip()
    info = read_ready(ready)
    out = ocrtrain("run", "--max-runs", "1", "--", "true")
    assert out.returncode == 2 and "--max-runs 1" in out.stderr
    assert ocrtrain("stop", run_id).returncode == 0
    assert_gone_within(all_workload_pids(info), 1.0, "the run")
    assert ocrtrain("run", "--max-runs", "1", "--", "true").returncode == 0


def test_doctor_reports_tiers() -> None:
    out = ocrtrain("doctor", "--json")
    assert out.returncode == 0
    tiers = {t["name"]: t for t in json.loads(out.stdout)["tiers"]}
    assert {"session", "subreaper", "pdeathsig", "pidfd", "cgroup v2", "watchdog"} <= set(tiers)
    assert tiers["subreaper"]["active"]


MOUNTINFO = """\
22 1 252:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
40 22 0:41 / /mnt/team rw,relatime shared:20 - nfs4 srv:/export rw,vers=4.2
41 40 0:42 / /mnt/team/local\\040disk rw,relatime shared:21 - ext4 /dev/vdb rw
42 22 0:43 / /mnt/wsl rw - 9p drvfs rw
"""


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/home/u/state", None),
        ("/mnt/team/u/state", "nfs4"),
        ("/mnt/team", "nfs4"),
        ("/mnt/team/local disk/state", None),  # a local disk mounted inside the share
        ("/mnt/teamwork/state", None),  # a prefix of the name is not the mount point
        ("/mnt/wsl/c/state", "9p"),
    ],
)
def test_network_filesystem_is_told_from_mountinfo(path: str, expected: str | None) -> None:
    assert network_filesystem(Path(path), MOUNTINFO) == expected


def test_local_home_is_not_a_network_filesystem(ocrtrain_home: Path) -> None:
    assert network_filesystem(Path(ocrtrain_home)) is None
    assert network_filesystem(Path(ocrtrain_home) / "not" / "yet") is None
