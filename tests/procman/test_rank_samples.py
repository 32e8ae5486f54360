"""The supervisor's resource samples of a distributed job's node: one per rank, the rank with
its workers, their network bytes and the step the rank reported. Real processes, a real
journal, real sockets."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

from helpers import wait_until
from ocrtrain.procman import (
    Journal,
    RankSample,
    RunSpec,
    SampleRecord,
    is_alive,
    launcher_rank,
    read_stat,
    run_ranks,
    start,
)

# A rank as a launcher starts one: it records itself in its run's journal and writes a
# progress report (what ocrtrain.dist.progress does in a trainer), forks a worker, sends
# 100 kB over TCP to itself, then waits to be stopped.
STAND_IN_RANK = """
import json, os, socket, sys, time
from ocrtrain.procman import Journal, RankRecord, read_stat
run_id, run_dir = os.environ["OCRTRAIN_RUN_ID"], os.environ["OCRTRAIN_RUN_DIR"]
with Journal() as j:
    j.record_rank(run_id, RankRecord(os.getpid(), read_stat(os.getpid()).start, 5, 1, 2))
os.makedirs(run_dir + "/ranks", exist_ok=True)
report = {"pid": os.getpid(), "job_id": "job", "global_rank": 5, "local_rank": 1,
          "node_rank": 2, "num_nodes": 3, "world_size": 6, "rdzv_endpoint": None,
          "timeout_s": 120.0, "step": 42, "trained": True, "updated_at": time.time()}
with open(run_dir + "/ranks/5.json", "w") as f:
    json.dump(report, f)
s = socket.create_server(("127.0.0.1", 0))
c = socket.create_connection(s.getsockname())
a, _ = s.accept()
c.sendall(b"x" * 100_000)
got = 0
while got < 100_000:
    got += len(a.recv(65536))
if os.fork() == 0:
    time.sleep(120)
    os._exit(0)
print("ready", flush=True)
time.sleep(120)
"""


def _rank_sample(journal: Journal, run_id: str) -> RankSample | None:
    samples = journal.samples(run_id)
    if not samples or not samples[-1].ranks:
        return None
    rank = samples[-1].ranks[0]
    return rank if rank.n_procs == 2 and (rank.net_sent_bytes or 0) >= 100_000 else None


def test_each_rank_is_sampled_with_its_workers_network_and_step() -> None:
    journal = Journal()
    spec = RunSpec(argv=[sys.executable, "-c", STAND_IN_RANK], name="rank", sample_interval=0.1)
    handle = start(spec, journal)
    ranks: list[tuple[int, int]] = []
    try:
        rank = wait_until(lambda: _rank_sample(journal, handle.id), 30, "a sample of the rank")
        sample = journal.samples(handle.id)[-1]
        stat = read_stat(rank.pid)
        ranks = [(rank.pid, stat.start)] if stat is not None else []
        assert (rank.global_rank, rank.local_rank, rank.node_rank, rank.step) == (5, 1, 2, 42)
        # 100 kB each way over one loopback connection: both ends are the rank's sockets
        assert 100_000 <= (rank.net_sent_bytes or 0) < 120_000
        assert 100_000 <= (rank.net_recv_bytes or 0) < 120_000
        # the stand-in is the run's only process with a worker: the rank is all of the run
        assert rank.n_procs == sample.n_procs and 0 < rank.rss_bytes == sample.rss_bytes
        assert rank.gpu_bytes is None and rank.cpu_percent >= 0
    finally:
        handle.stop(grace=1)
        final = handle.wait(timeout=30)
    assert final.ended_at is not None
    assert not any(is_alive(*r) for r in ranks)


def test_rank_samples_are_kept_and_dropped_with_their_run_samples() -> None:
    journal = Journal()
    for i in range(10):
        ranks = tuple(
            RankSample(g, g, 0, 100 + g, 1, 1.0, 2**20, None, i * 10, i * 20, i) for g in (0, 1)
        )
        journal.add_sample(SampleRecord("bounded", float(i), 2, 2.0, 2**21, None, ranks), keep=3)
    samples = journal.samples("bounded")
    assert [s.ts for s in samples] == [7.0, 8.0, 9.0]
    assert [[r.global_rank for r in s.ranks] for s in samples] == [[0, 1]] * 3
    assert samples[-1].ranks[1] == RankSample(1, 1, 0, 101, 1, 1.0, 2**20, None, 90, 180, 9)


def test_a_launchers_rank_is_told_from_its_workers_by_its_variables() -> None:
    """Lightning's own launcher gives a rank LOCAL_RANK and NODE_RANK only; the worker it
    forks inherits them and is no rank of its own."""
    script = (
        "import os, time\n"
        "if os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\n"
        "print(1, flush=True)\ntime.sleep(60)\n"
    )
    env = {**os.environ, "LOCAL_RANK": "1", "NODE_RANK": "0", "WORLD_SIZE": "2"}
    rank = subprocess.Popen(
        [sys.executable, "-c", script], env=env, stdout=subprocess.PIPE, start_new_session=True
    )
    try:
        assert rank.stdout is not None and rank.stdout.readline()
        pids = [rank.pid, *(int(p) for p in children_of(rank.pid))]
        stats = {pid: st for pid in pids if (st := read_stat(pid)) is not None}
        assert len(stats) == 2
        found = run_ranks(stats, [])
        assert [(r.pid, r.global_rank, r.local_rank, r.node_rank) for r in found] == [
            (rank.pid, 1, 1, 0)
        ]
        assert launcher_rank(b"PATH=/bin\0") is None
        assert launcher_rank(b"SLURM_PROCID=7\0SLURM_LOCALID=3\0SLURM_NODEID=1\0") == (7, 3, 1)
    finally:
        os.killpg(rank.pid, signal.SIGKILL)
        rank.wait()


def children_of(pid: int) -> list[str]:
    with open(f"/proc/{pid}/task/{pid}/children") as f:
        return f.read().split()


AGENT = """
import os, subprocess, sys, time
rank = subprocess.Popen([sys.executable, "-c", sys.argv[1]],
                        env={**os.environ, "RANK": "2", "LOCAL_RANK": "0", "GROUP_RANK": "1"})
time.sleep(60)
"""


def test_under_srun_the_ranks_a_launcher_started_are_the_ranks_not_the_task() -> None:
    """srun runs one torchrun agent per node (SLURM_PROCID=1): its ranks inherit srun's
    variables and add torchrun's; the agent is no rank, the rank's worker neither."""
    env = {**os.environ, "SLURM_PROCID": "1", "SLURM_LOCALID": "0", "SLURM_NODEID": "1"}
    rank_script = (
        "import os, time\n"
        "if os.fork() == 0:\n    time.sleep(60)\n    os._exit(0)\n"
        "print(1, flush=True)\ntime.sleep(60)\n"
    )
    agent = subprocess.Popen(
        [sys.executable, "-c", AGENT, rank_script],
        env=env,
        stdout=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        assert agent.stdout is not None and agent.stdout.readline()  # the rank's worker is up
        (rank_pid,) = (int(p) for p in children_of(agent.pid))
        pids = [agent.pid, rank_pid, *(int(p) for p in children_of(rank_pid))]
        stats = {pid: st for pid in pids if (st := read_stat(pid)) is not None}
        assert len(stats) == 3
        found = run_ranks(stats, [])
        assert [(r.pid, r.global_rank, r.local_rank, r.node_rank) for r in found] == [
            (rank_pid, 2, 0, 1)
        ]
        # without a launcher below it, an srun task is the rank
        assert [r.pid for r in run_ranks({agent.pid: stats[agent.pid]}, [])] == [agent.pid]
    finally:
        os.killpg(agent.pid, signal.SIGKILL)
        agent.wait()
