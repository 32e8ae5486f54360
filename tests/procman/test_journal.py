"""The journal under concurrent writers, and many runs in a row or at once."""

from __future__ import annotations

import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from helpers import ocrtrain, run_pids
from ocrtrain.procman.journal import EventKind, Journal, RunRecord, RunState, new_run_id

WRITER = """
import sys, time
from pathlib import Path
from ocrtrain.procman.journal import Journal
j = Journal(Path(sys.argv[1]))
for i in range(int(sys.argv[3])):
    j.add_event(sys.argv[2], "note", i=i)
"""


def _record(run_id: str) -> RunRecord:
    return RunRecord(
        id=run_id,
        name="t",
        argv=["x"],
        cwd="/",
        user="u",
        host="h",
        state=RunState.STARTING,
        created_at=time.time(),
        grace=5.0,
        log_path="/dev/null",
        run_dir="/tmp",
    )


def test_concurrent_writers_lose_nothing(ocrtrain_home: Path) -> None:
    journal = Journal()
    ids = [new_run_id() + str(i) for i in range(6)]
    for run_id in ids:
        journal.create_run(_record(run_id))
    procs = [
        subprocess.Popen([sys.executable, "-c", WRITER, str(ocrtrain_home), run_id, "200"])
        for run_id in ids
    ]
    for p in procs:
        assert p.wait(timeout=120) == 0
    for run_id in ids:
        notes = [e for e in journal.events(run_id) if e.kind == "note"]
        assert [e.detail["i"] for e in notes] == list(range(200))
    assert journal._query("PRAGMA integrity_check")[0][0] == "ok"


def test_transition_never_overwrites_a_final_state() -> None:
    journal = Journal()
    run_id = new_run_id()
    journal.create_run(_record(run_id))
    assert journal.transition(run_id, RunState.SUCCEEDED, EventKind.FINISHED)
    assert not journal.transition(
        run_id, RunState.LOST, EventKind.MARKED_LOST, only_from=[RunState.RUNNING]
    )
    run = journal.get_run(run_id)
    assert run is not None and run.state == RunState.SUCCEEDED


def test_max_active_is_atomic() -> None:
    journal = Journal()
    assert journal.create_run(_record("a"), max_active=1)
    assert not journal.create_run(_record("b"), max_active=1)
    assert journal.get_run("b") is None


def test_twenty_runs_in_a_row() -> None:
    for i in range(20):
        out = ocrtrain("run", "--name", f"row{i}", "--", sys.executable, "-c", f"print({i})")
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip() == str(i)
    journal = Journal()
    runs = journal.list_runs()
    assert len(runs) == 20
    for run in runs:
        assert run.state == RunState.SUCCEEDED
        kinds = [e.kind for e in journal.events(run.id)]
        assert kinds[0] == "created" and kinds[-1] == "finished"
        assert Path(run.log_path).read_text().strip() == run.name[3:]


def test_four_supervisors_at_once_no_cross_talk(tmp_path: Path) -> None:
    def one(i: int) -> subprocess.CompletedProcess[str]:
        code = (
            "import os, subprocess, sys, time;"
            "kids = [subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)'])"
            " for _ in range(2)];"
            f"print(os.environ['OCRTRAIN_RUN_ID']); sys.exit({i})"
        )
        return ocrtrain(
            "run", "--name", f"par{i}", "--grace", "1", "--", sys.executable, "-c", code
        )

    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(one, range(4)))
    journal = Journal()
    for i, out in enumerate(results):
        assert out.returncode == i, out.stderr
        run = journal.resolve(f"par{i}")
        assert out.stdout.strip() == run.id  # each child saw its own run id
        assert run.exit_code == i
        assert not run_pids(run.id)
        sent = [e for e in journal.events(run.id) if e.kind == "signal_sent"]
        assert len(sent) == 2  # its own two leftovers, nobody else's


def test_default_run_names() -> None:
    from ocrtrain.procman.spec import RunSpec

    def name(*argv: str) -> str:
        return RunSpec(argv=argv).display_name

    assert name("/usr/bin/python3", "-u", "runners/train.py", "x=1") == "train.py"
    assert name("python", "-m", "ocrtrain.train") == "ocrtrain.train"
    assert name("python3", "-c", "print(1)") == "python3"
    assert name("/bin/sleep", "5") == "sleep"
    assert RunSpec(argv=("sleep",), name="nap").display_name == "nap"


V1_RUNS = """CREATE TABLE runs (
    id TEXT PRIMARY KEY, name TEXT NOT NULL, argv TEXT NOT NULL, cwd TEXT NOT NULL,
    user TEXT NOT NULL, host TEXT NOT NULL, state TEXT NOT NULL, created_at REAL NOT NULL,
    grace REAL NOT NULL, log_path TEXT NOT NULL, run_dir TEXT NOT NULL, detached INTEGER NOT NULL,
    supervisor_pid INTEGER, supervisor_start INTEGER, child_pid INTEGER, child_start INTEGER,
    pgid INTEGER, sid INTEGER, cgroup TEXT, watchdog_pid INTEGER, watchdog_start INTEGER,
    started_at REAL, ended_at REAL, exit_code INTEGER, exit_signal INTEGER, reason TEXT,
    tiers TEXT NOT NULL, limits TEXT NOT NULL
)"""


def test_a_journal_of_schema_1_gains_jobs_ranks_and_rank_samples(tmp_path: Path) -> None:
    import sqlite3

    from ocrtrain.procman.journal import JOURNAL_FILE, RankRecord, RankSample, SampleRecord

    old = sqlite3.connect(tmp_path / JOURNAL_FILE)
    old.execute(V1_RUNS)
    old.execute(
        "INSERT INTO runs VALUES ('r1', 'old', '[]', '/', 'u', 'h', 'succeeded', 1.0, 30.0,"
        " 'l', 'd', 0, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, 0,"
        " NULL, NULL, '{}', '{}')"
    )
    old.execute("PRAGMA user_version = 1")
    old.commit()
    old.close()
    with Journal(tmp_path) as journal:
        run = journal.get_run("r1")
        assert run is not None and run.name == "old" and run.job_id is None
        journal.update_run("r1", job_id="t", node_rank=1, num_nodes=2, rdzv_endpoint="h:1")
        journal.record_rank("r1", RankRecord(10, 20, 3, 1, 1))
        run = journal.get_run("r1")
        assert run is not None
        assert (run.job_id, run.node_rank, run.num_nodes, run.rdzv_endpoint) == ("t", 1, 2, "h:1")
        assert journal.ranks("r1") == [RankRecord(10, 20, 3, 1, 1)]
        rank = RankSample(3, 1, 1, 10, 2, 50.0, 2**20, None, 4096, 8192, 7)
        journal.add_sample(SampleRecord("r1", 2.0, 2, 50.0, 2**20, None, (rank,)))
    with Journal(tmp_path) as again:  # opened again: already migrated
        assert again.ranks("r1") == [RankRecord(10, 20, 3, 1, 1)]
        assert again.samples("r1")[0].ranks == (rank,)
