"""A cleanup that may not signal a process reports it ("permission denied") and exits 1."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mon_helpers import alive, assert_none_alive, identity, readable_monitor_script

from ocrtrain.procman.journal import Journal, RunRecord, RunState

SYSTEM_PYTHON = "/usr/bin/python3"


def test_unprivileged_cleanup_reports_permission_denied(other_user: str, procs) -> None:  # type: ignore[no-untyped-def]
    import pwd

    pw = pwd.getpwnam(other_user)
    home = Path(tempfile.mkdtemp(prefix="ocrtrain-perm-"))
    home.chmod(0o755)
    run_id = f"perm-{os.urandom(3).hex()}"
    # A supervisor that is gone: a process that has exited (its pid + start).
    dead = subprocess.Popen(["sleep", "60"])
    dead_ident = identity(dead.pid)
    dead.kill()
    dead.wait()
    # The run's trainer, owned by root, still running: an orphan the other user may not signal.
    env = dict(os.environ, OCRTRAIN_RUN_ID=run_id)
    victim = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env=env, start_new_session=True
    )
    ident = identity(victim.pid)
    procs.add(ident)
    try:
        journal = Journal(home)
        journal.create_run(
            RunRecord(
                id=run_id, name="perm", argv=["python"], cwd=str(home), user="root",
                host=socket.gethostname(), state=RunState.RUNNING, created_at=time.time(),
                grace=1.0, log_path=str(home / "log"), run_dir=str(home),
                supervisor_pid=dead_ident[0], supervisor_start=dead_ident[1],
                child_pid=ident[0], child_start=ident[1], sid=ident[0], pgid=ident[0],
            )
        )  # fmt: skip
        journal.close()
        for path in [home, *home.rglob("*")]:
            os.chown(path, pw.pw_uid, pw.pw_gid)
        script = readable_monitor_script(home / "checkout")
        cmd = [SYSTEM_PYTHON, str(script)]
        user_env = {"PATH": "/usr/bin:/bin", "OCRTRAIN_HOME": str(home)}

        def as_user(*args: str) -> subprocess.CompletedProcess[str]:
            return subprocess.run(
                [*cmd, *args], capture_output=True, text=True, timeout=60,
                user=pw.pw_uid, group=pw.pw_gid, extra_groups=[], env=user_env, cwd=home,
            )  # fmt: skip

        listed = as_user("--list", "--json")
        assert listed.returncode == 0, listed.stderr
        run = next(r for r in json.loads(listed.stdout)["runs"] if r["id"] == run_id)
        assert [p["pid"] for p in run["processes"]] == [victim.pid]
        assert run["processes"][0]["flags"] == ["orphan"]
        assert run["processes"][0]["io_read_bytes"] is None  # unreadable: null, not an error

        out = as_user("--cleanup", "--run", run_id, "--yes", "--grace", "0.5", "--json")
        assert out.returncode == 1, out.stdout + out.stderr
        assert "Traceback" not in out.stderr
        report = json.loads(out.stdout)["report"]
        assert report["ok"] is False
        assert [(e["pid"], e["reason"]) for e in report["survived"]] == [
            (victim.pid, "permission denied")
        ]
        assert alive(ident)
        assert "could not be ended" in out.stderr
    finally:
        victim.kill()
        victim.wait()
        shutil.rmtree(home)
    assert_none_alive([ident])
