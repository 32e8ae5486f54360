"""The core's process-table scan on real processes, against psutil's view of them."""

from __future__ import annotations

import os
import subprocess
import sys

import psutil

from ocrtrain.procman import procfs


def test_scan_reads_tags_and_identity_of_real_processes() -> None:
    env = dict(os.environ, OCRTRAIN_RUN_ID="run-x", XOCRTRAIN_RUN_ID="decoy", A="B")
    env.pop("OCRTRAIN_WATCHDOG_FOR", None)
    tagged = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"], env=env)
    wd_env = {"OCRTRAIN_WATCHDOG_FOR": "run-y", "PATH": os.environ.get("PATH", "")}
    watchdog = subprocess.Popen(["sleep", "60"], env=wd_env)
    try:
        table = procfs.scan()
        assert table[tagged.pid].run_id == "run-x"
        assert table[watchdog.pid].watchdog_for == "run-y"
        assert table[watchdog.pid].run_id is None
        me = table[os.getpid()].stat
        ps = psutil.Process()
        assert (me.ppid, me.num_threads) == (ps.ppid(), ps.num_threads())
        assert abs(procfs.start_epoch(me.start) - ps.create_time()) < 0.05
        assert procfs.is_alive(tagged.pid, table[tagged.pid].stat.start)
        assert not procfs.is_alive(tagged.pid, table[tagged.pid].stat.start + 1)
        untagged = procfs.scan(with_env=False)
        assert untagged[tagged.pid].run_id is None
    finally:
        for p in (tagged, watchdog):
            p.kill()
            p.wait()


def test_env_tag_needs_a_whole_variable() -> None:
    env = b"XOCRTRAIN_RUN_ID=no\0A=OCRTRAIN_RUN_ID=no\0OCRTRAIN_RUN_ID=yes\0B=1"
    assert procfs.env_tag(env, b"OCRTRAIN_RUN_ID=") == "yes"
    assert procfs.env_tag(b"OCRTRAIN_RUN_ID=first", b"OCRTRAIN_RUN_ID=") == "first"
    assert procfs.env_tag(b"A=1\0B=2", b"OCRTRAIN_RUN_ID=") is None
    assert procfs.env_tag(None, b"OCRTRAIN_RUN_ID=") is None


def test_comm_with_parentheses_and_spaces() -> None:
    raw = b"42 (a) b (c)) S 1 42 42 0 -1 0 0 0 0 0 3 4 0 0 20 0 7 0 999 0 5 0"
    st = procfs.parse_stat(42, raw)
    assert st is not None and st.comm == "a) b (c)" and st.state == "S" and st.start == 999
    assert st.num_threads == 7 and st.rss_pages == 5
