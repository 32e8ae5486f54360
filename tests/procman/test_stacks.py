"""`ocrtrain stack RUN`: every process's Python stack, on demand, from a real run."""

from __future__ import annotations

import json
import sys

from helpers import ocrtrain, read_ready, run_pids, wait_until

# A Python process with the dump registered, waiting in a named function, with a plain
# `sleep` child beside it (no Python stack to give, and it must survive being asked).
PROGRAM = """
import json, os, subprocess, sys, time
from ocrtrain.procman.stacks import register_stack_dump
register_stack_dump()
child = subprocess.Popen(["sleep", "60"])
def waiting_in_a_named_function():
    open(sys.argv[1], "w").write(json.dumps({"main": os.getpid(), "child": child.pid}))
    time.sleep(60)
waiting_in_a_named_function()
"""


def test_stack_prints_each_python_process_stack_and_harms_no_other(tmp_path) -> None:
    ready = tmp_path / "ready.json"
    started = ocrtrain("run", "--detach", "--name", "stk", "--", sys.executable, "-c", PROGRAM,
                       str(ready))  # fmt: skip
    assert started.returncode == 0, started.stderr
    run_id = started.stdout.strip()
    try:
        pids = read_ready(ready)
        done = ocrtrain("stack", run_id, "--json")
        assert done.returncode == 0, done.stderr
        dumps = {d["pid"]: d for d in json.loads(done.stdout)}
        assert dumps[pids["main"]]["answered"]
        assert "waiting_in_a_named_function" in dumps[pids["main"]]["text"]
        assert not dumps[pids["child"]]["answered"]
        assert sorted(run_pids(run_id)) == sorted(pids.values()), "no process died of it"
        logs = ocrtrain("logs", run_id)
        assert "waiting_in_a_named_function" in logs.stdout  # into the run's log too
    finally:
        ocrtrain("stop", run_id, "--force")
    wait_until(lambda: not run_pids(run_id), timeout=10, what="the run's processes gone")
    ended = ocrtrain("stack", run_id)
    assert ended.returncode == 2 and ended.stderr.startswith("ERROR: run ")
