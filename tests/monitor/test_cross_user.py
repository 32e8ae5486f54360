"""Cleanup never crosses users: another user's process carrying a run id that this journal
does not know (anyone can set OCRTRAIN_RUN_ID) is shown flagged by `ps`, never selected by
`cleanup` or the web UI's cleanup, and ended only with `--all-users` (root)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from mon_helpers import assert_none_alive, identity, ocrtrain, wait_until

from ocrtrain.monitor import cleanup
from ocrtrain.procman.journal import Journal

NOBODY = 65534

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None,
    reason="needs root and setpriv to run a process as nobody",
)


def test_another_users_tagged_process_is_flagged_never_signalled(journal: Journal, procs) -> None:  # type: ignore[no-untyped-def]
    run_id = f"20991231-235959-{os.urandom(3).hex()}"
    env = {"PATH": "/usr/bin:/bin", "OCRTRAIN_RUN_ID": run_id}
    victim = subprocess.Popen(
        ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--",
         "sleep", "120"],
        env=env, start_new_session=True, stdin=subprocess.DEVNULL,
    )  # fmt: skip
    wait_until(
        lambda: Path(f"/proc/{victim.pid}/exe").resolve().name == "sleep", 10, "setpriv's exec"
    )
    ident = identity(victim.pid)
    procs.add(ident)
    try:
        out = ocrtrain("ps", "--json")
        assert out.returncode == 0, out.stderr
        run = next(r for r in json.loads(out.stdout)["runs"] if r["id"] == run_id)
        assert [(p["pid"], p["flags"]) for p in run["processes"]] == [
            (victim.pid, ["orphan", "other-user"])
        ]
        # The machine-wide plan (a dry run: other tests' processes are left alone) and the
        # plan for that run leave it out; so does the web UI's cleanup (the same plan).
        for args in (("--dry-run", "--json"), ("--run", run_id, "--yes", "--json")):
            out = ocrtrain("cleanup", *args)
            assert out.returncode == 0, out.stdout + out.stderr
            items = json.loads(out.stdout)["plan"]["items"]
            assert victim.pid not in {i["pid"] for i in items}, args
        assert victim.pid not in {i.pid for i in cleanup.plan(journal, run_id=run_id).items}
        assert identity(victim.pid) == ident, "another user's process was signalled"

        out = ocrtrain("cleanup", "--run", run_id, "--all-users", "--yes", "--json")
        assert out.returncode == 0, out.stdout + out.stderr
        assert victim.pid in {e["pid"] for e in json.loads(out.stdout)["report"]["ended"]}
        assert_none_alive([ident])
    finally:
        victim.kill()
        victim.wait()
