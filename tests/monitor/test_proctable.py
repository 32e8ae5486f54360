"""The monitor's fast scan agrees with the core's `procfs.scan` on real processes."""

from __future__ import annotations

import os
import subprocess
import sys

from mon_helpers import identity

from ocrtrain.monitor import proctable
from ocrtrain.procman import procfs


def test_fast_scan_matches_procfs_scan(procs) -> None:  # type: ignore[no-untyped-def]
    env = dict(os.environ, OCRTRAIN_RUN_ID="run-x", XOCRTRAIN_RUN_ID="decoy", A="B")
    env.pop("OCRTRAIN_WATCHDOG_FOR", None)
    tagged = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(60)"], env=env, stdin=subprocess.PIPE
    )
    wd_env = {"OCRTRAIN_WATCHDOG_FOR": "run-y", "PATH": os.environ.get("PATH", "")}
    watchdog = subprocess.Popen(["sleep", "60"], env=wd_env)
    procs.add(identity(tagged.pid), identity(watchdog.pid))
    try:
        fast = proctable.scan()
        slow = procfs.scan(with_env=True)
        common = set(fast) & set(slow)
        assert len(common) > 0.9 * len(slow)
        for pid in common:
            if fast[pid].stat.start == slow[pid].stat.start:
                assert (fast[pid].run_id, fast[pid].watchdog_for) == (
                    slow[pid].run_id,
                    slow[pid].watchdog_for,
                )
        assert fast[tagged.pid].run_id == "run-x"
        assert fast[watchdog.pid].watchdog_for == "run-y" and fast[watchdog.pid].run_id is None
    finally:
        for p in (tagged, watchdog):
            p.kill()
            p.wait()


def test_env_tag_needs_a_whole_variable() -> None:
    env = b"XOCRTRAIN_RUN_ID=no\0A=OCRTRAIN_RUN_ID=no\0OCRTRAIN_RUN_ID=yes\0B=1"
    assert proctable.env_tag(env, b"OCRTRAIN_RUN_ID=") == "yes"
    assert proctable.env_tag(b"OCRTRAIN_RUN_ID=first", b"OCRTRAIN_RUN_ID=") == "first"
    assert proctable.env_tag(b"A=1\0B=2", b"OCRTRAIN_RUN_ID=") is None
