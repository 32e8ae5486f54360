"""The membership model on real process trees: every view, and identities that do not match."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from helpers import alive, assert_gone_within, kill_all, wait_until
from ocrtrain.procman import procfs
from ocrtrain.procman.journal import RunRecord, RunState
from ocrtrain.procman.membership import (
    FoundBy,
    ProcessTable,
    Role,
    RunScope,
    by_run,
    find_members,
    members,
    run_scope,
)

# A stand-in supervisor: starts the trainer in a new session with the run-id tag. The trainer
# starts a torchrun-style worker in its own session (the tag inherited), a helper in its
# session without the tag, and a detached process with neither (found only by descent).
TREE = r"""
import json, os, subprocess, sys, time
run_id, out, part = sys.argv[1], sys.argv[2], sys.argv[3]
me = [sys.executable, __file__]
sleep = [sys.executable, "-c", "import time; time.sleep(120)"]
bare = {k: v for k, v in os.environ.items() if k != "OCRTRAIN_RUN_ID"}
if part == "supervisor":
    env = dict(bare, OCRTRAIN_RUN_ID=run_id)
    subprocess.Popen([*me, run_id, out, "trainer"], env=env, start_new_session=True)
    time.sleep(120)
else:
    worker = subprocess.Popen(sleep, start_new_session=True)
    helper = subprocess.Popen(sleep, env=bare)
    detached = subprocess.Popen(sleep, env=bare, start_new_session=True)
    pids = {"trainer": os.getpid(), "worker": worker.pid, "helper": helper.pid,
            "detached": detached.pid}
    with open(out + ".tmp", "w") as f:
        json.dump(pids, f)
    os.rename(out + ".tmp", out)
    time.sleep(120)
"""


@dataclass
class Tree:
    run_id: str
    supervisor: subprocess.Popen[bytes]
    pids: dict[str, int]

    def all(self) -> list[int]:
        return [self.supervisor.pid, *self.pids.values()]


@pytest.fixture
def tree(tmp_path: Path) -> Iterator[Tree]:
    script = tmp_path / "tree.py"
    script.write_text(TREE)
    out = tmp_path / "pids.json"
    run_id = "test-" + uuid.uuid4().hex[:8]
    env = {k: v for k, v in os.environ.items() if k != "OCRTRAIN_RUN_ID"}
    sup = subprocess.Popen([sys.executable, str(script), run_id, str(out), "supervisor"], env=env)
    t = Tree(run_id, sup, {})
    try:
        wait_until(out.exists, timeout=20, what="the process tree")
        t.pids = json.loads(out.read_text())
        yield t
    finally:
        kill_all(t.all())
        sup.wait()
        assert_gone_within(t.all(), 10, "the test's process tree")
    assert not alive(t.all())


def _start(pid: int) -> int:
    st = procfs.read_stat(pid)
    assert st is not None
    return st.start


def _record(t: Tree, **kw: object) -> RunRecord:
    fields: dict[str, object] = {
        "id": t.run_id,
        "name": "t",
        "argv": [],
        "cwd": "/",
        "user": "u",
        "host": "h",
        "state": RunState.RUNNING,
        "created_at": time.time(),
        "grace": 1.0,
        "log_path": "",
        "run_dir": "",
        "supervisor_pid": t.supervisor.pid,
        "supervisor_start": _start(t.supervisor.pid),
        "child_pid": t.pids["trainer"],
        "child_start": _start(t.pids["trainer"]),
        "sid": t.pids["trainer"],
    }
    fields.update(kw)
    return RunRecord(**fields)  # type: ignore[arg-type]


def test_each_view_finds_its_processes_once(tree: Tree) -> None:
    table = ProcessTable.scan()
    group = by_run(table, [_record(tree)])[tree.run_id]
    found = {pid: (m.found_by, m.role) for pid, m in group.members.items()}
    p = tree.pids
    assert found == {
        p["trainer"]: (FoundBy.TAG, Role.TRAINER),
        p["worker"]: (FoundBy.TAG, Role.MEMBER),  # torchrun-style: own session, tag inherited
        p["helper"]: (FoundBy.SESSION, Role.MEMBER),
        p["detached"]: (FoundBy.DESCENT, Role.MEMBER),
    }
    assert group.supervisor is not None and group.supervisor.pid == tree.supervisor.pid
    assert group.trainer_alive and not group.watchdog_alive
    # The API's question (one run) and the group view (every run) give the same answer.
    one = members(table, run_scope(_record(tree), table))
    assert {pid: m.found_by for pid, m in one.items()} == {
        pid: m.found_by for pid, m in group.members.items()
    }


def test_tag_alone_finds_the_worker_in_its_own_session(tree: Tree) -> None:
    found = find_members(tree.run_id)
    assert sorted(found) == sorted([tree.pids["trainer"], tree.pids["worker"]])


def test_a_reused_pid_is_not_the_run_s_process(tree: Tree) -> None:
    table = ProcessTable.scan()
    sup, trainer = tree.supervisor.pid, tree.pids["trainer"]
    # The journal's (pid, start) pairs name other processes than those now holding the pids.
    rec = _record(tree, supervisor_start=_start(sup) + 1, child_start=_start(trainer) - 1)
    group = by_run(table, [rec])[tree.run_id]
    assert group.supervisor is None and not group.trainer_alive
    # Without a live leader and supervisor only the tag counts: no session, no descent.
    assert {pid: m.found_by for pid, m in group.members.items()} == {
        trainer: FoundBy.TAG,
        tree.pids["worker"]: FoundBy.TAG,
    }
    assert group.members[trainer].role == Role.MEMBER  # not the journal's trainer
    assert table.alive(trainer, _start(trainer) + 1) is None
    assert table.alive(trainer, _start(trainer)) is not None


def test_excluded_pids_and_the_caller_are_never_members(tree: Tree) -> None:
    table = ProcessTable.scan()
    scope = RunScope(
        tree.run_id,
        root_pid=tree.supervisor.pid,
        exclude=frozenset({tree.pids["worker"]}),
    )
    found = members(table, scope)
    assert tree.pids["worker"] not in found and os.getpid() not in found
    assert found[tree.pids["detached"]].found_by == FoundBy.DESCENT


def _tagged(pid: int, sid: int, start: int, run_id: str | None = None) -> procfs.Tagged:
    st = procfs.ProcStat(pid, "x", "S", 1, sid, sid, start, 0, 0, 1, 1)
    return procfs.Tagged(st, run_id, None)


def test_a_reused_session_id_is_not_a_member() -> None:
    """Moved here from test_procfs.py."""
    table = ProcessTable(
        {
            10: _tagged(10, sid=500, start=100),  # started while the run's leader lived
            11: _tagged(11, sid=500, start=900),  # a new session that reused the leader's pid
            12: _tagged(12, sid=700, start=950, run_id="r"),  # tagged: always a member
        }
    )
    found = find_members("r", sid=500, sid_until=800, table=table)
    assert sorted(found) == [10, 12]
    assert sorted(find_members("r", sid=500, table=table)) == [10, 11, 12]
