"""Jobs that torchrun or srun launch: one job of N x P ranks, one run folder, rank 0's
decisions on every rank. Two "nodes" are two supervised torchrun agents on 127.0.0.1 with a
c10d rendezvous (gloo on CPU)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import REPO, alive, kill_all, ocrtrain, wait_until
from ocrtrain.dist.env import Launcher, job_shape
from ocrtrain.dist.launch import agent_argv, torchrun_argv
from ocrtrain.procman.errors import UsageError
from train.conftest import descendants, last_metric_step
from train.nodes import LONG, SMALL, Node, free_port, nodes, saved_step, start_two

__all__ = ["nodes"]  # a fixture


def test_the_launchers_environment_gives_the_jobs_shape() -> None:
    torchrun = {
        "TORCHELASTIC_RUN_ID": "job7",
        "WORLD_SIZE": "4",
        "LOCAL_WORLD_SIZE": "2",
        "RANK": "3",
        "LOCAL_RANK": "1",
        "GROUP_RANK": "1",
    }
    shape = job_shape(torchrun)
    assert shape is not None and shape.launcher is Launcher.TORCHRUN
    assert (shape.world_size, shape.num_nodes, shape.local_world_size) == (4, 2, 2)
    assert (shape.global_rank, shape.local_rank, shape.node_rank, shape.job_id) == (3, 1, 1, "job7")
    slurm = {
        "SLURM_NTASKS": "4",
        "SLURM_NNODES": "2",
        "SLURM_NTASKS_PER_NODE": "2(x2)",
        "SLURM_PROCID": "2",
        "SLURM_LOCALID": "0",
        "SLURM_NODEID": "1",
        "SLURM_JOB_ID": "901",
        "SLURM_ARRAY_JOB_ID": "900",
        "SLURM_ARRAY_TASK_ID": "1",
        "SLURM_JOB_NAME": "train",
    }
    shape = job_shape(slurm)
    assert shape is not None and shape.launcher is Launcher.SLURM
    assert (shape.world_size, shape.num_nodes, shape.local_world_size) == (4, 2, 2)
    assert (shape.global_rank, shape.node_rank, shape.job_id) == (2, 1, "900_1")
    assert job_shape({**slurm, "SLURM_JOB_NAME": "bash"}) is None  # an salloc shell
    assert job_shape({}) is None
    with pytest.raises(ValueError, match="WORLD_SIZE"):
        job_shape({"TORCHELASTIC_RUN_ID": "x"})


def test_the_short_form_stands_for_a_torchrun_command() -> None:
    overrides = ["dist.nnodes=2", "dist.nproc_per_node=4", "dist.rdzv_endpoint=n0:29400", "seed=1"]
    cmd = torchrun_argv(overrides, ["-m", "ocrtrain.train"], grace=30)
    assert cmd is not None
    assert cmd[:3] == [sys.executable, "-m", "ocrtrain.dist.agent"]
    args = cmd[3:]
    for option, value in [
        ("--nnodes", "2"),
        ("--nproc-per-node", "4"),
        ("--rdzv-backend", "c10d"),
        ("--rdzv-endpoint", "n0:29400"),
        ("--max-restarts", "0"),
        ("--shutdown-timeout", "30"),
    ]:
        assert args[args.index(option) + 1] == value
    assert args[-6:] == ["-m", "ocrtrain.train", *overrides]
    assert torchrun_argv(["seed=1"], ["x.py"], grace=30) is None
    one_node = torchrun_argv(["dist.nproc_per_node=2"], ["x.py"], grace=30)
    assert one_node is not None and "127.0.0.1:0" in one_node
    with pytest.raises(UsageError, match=r"dist\.rdzv_endpoint=HOST:PORT"):
        torchrun_argv(["dist.nnodes=2"], ["x.py"], grace=30)
    with pytest.raises(UsageError, match=r"dist\.nnodes must be a whole number"):
        torchrun_argv(["dist.nnodes=two"], ["x.py"], grace=30)
    assert agent_argv(["/usr/bin/torchrun", "--nnodes", "2"])[1:] == [
        "-m",
        "ocrtrain.dist.agent",
        "--nnodes",
        "2",
    ]
    assert agent_argv(["python", "x.py"]) == ["python", "x.py"]


def test_a_short_form_without_rendezvous_is_refused_at_once() -> None:
    done = ocrtrain("train", "debug=smoke", "dist.nnodes=2", timeout=60)
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        "ERROR: dist.nnodes=2 needs dist.rdzv_endpoint=HOST:PORT, an address of node 0 that "
        "every node reaches (the same on every node)"
    ]


@pytest.mark.slow
def test_two_nodes_train_one_job_to_one_run_folder(nodes: list[Node], tmp_path: Path) -> None:
    outputs = tmp_path / "outputs"
    start_two(nodes, [*SMALL, f"paths.outputs_root={outputs}", "experiment_name=two"])
    results = [node.wait(timeout=280) for node in nodes]
    assert [rc for rc, _ in results] == [0, 0], results
    (run_dir,) = (outputs / "two" / "runs").iterdir()  # one job, one folder
    records = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in records if r["split"] == "train"]
    assert steps == list(range(1, 7)), "global rank 0 alone writes the metrics"
    assert sum(out.count("test  cer") for _, out in results) == 1
    assert saved_step(outputs / "two") is not None


@pytest.mark.slow
def test_a_rank_that_cannot_see_the_checkpoint_folder_stops_the_job(
    nodes: list[Node], tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    outputs.mkdir()
    # Node B sees an empty folder of its own where node A writes: another machine's disk.
    hide = ["unshare", "-m", "sh", "-c", f'mount -t tmpfs none "{outputs}" && exec "$@"', "sh"]
    if subprocess.run([*hide, "true"], capture_output=True).returncode != 0:
        pytest.skip("no mount namespaces here (unshare -m)")
    start_two(nodes, [*SMALL, f"paths.outputs_root={outputs}", "experiment_name=hidden"], hide)
    results = [node.wait(timeout=280) for node in nodes]
    assert [rc for rc, _ in results] == [2, 2], results
    ckpt = re.escape(str(outputs / "hidden" / "runs")) + r"/[^/ ]+/checkpoints"  # the run's
    said = (
        rf"ERROR: rank 1 \(of 2\) cannot see the checkpoint folder {ckpt} that rank 0 writes: "
        "mount it at the same path on every node, or set paths.outputs_root to a shared folder"
    )
    for _, out in results:
        errors = [line for line in out.splitlines() if line.startswith("ERROR: rank")]
        assert len(errors) == 1 and re.fullmatch(said, errors[0]), out
    assert not (outputs / "hidden" / "runs").exists() or not any(
        (outputs / "hidden" / "runs").iterdir()
    )


@pytest.mark.slow
def test_sigusr1_on_one_node_saves_every_rank_and_sigterm_on_the_other_stops_them(
    nodes: list[Node], tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    start_two(nodes, [*LONG, f"paths.outputs_root={outputs}", "experiment_name=sig"])
    a, b = nodes
    metrics = lambda: next(outputs.glob("sig/runs/*/metrics.jsonl"), None)  # noqa: E731
    wait_until(lambda: metrics() and last_metric_step(metrics()) >= 2, timeout=200, interval=0.1)
    assert saved_step(outputs / "sig") is None
    b.proc.send_signal(signal.SIGUSR1)  # node B's supervisor -> its agent -> its rank
    saved = wait_until(
        lambda: saved_step(outputs / "sig"), timeout=60, interval=0.1, what="the save"
    )
    wait_until(
        lambda: last_metric_step(metrics()) >= saved + 2, timeout=60, interval=0.1, what="more"
    )
    assert a.proc.poll() is None and b.proc.poll() is None, "SIGUSR1 ended a node"
    a.proc.send_signal(signal.SIGTERM)  # node A only
    results = [node.wait(timeout=60) for node in nodes]
    assert [rc for rc, _ in results] == [143, 143], results
    out = "".join(o for _, o in results)
    assert out.count(f"checkpoints/last.ckpt at step {saved}") == 1, out  # the USR1 save
    (stopped,) = re.findall(r"stopped by SIGTERM at step (\d+)", out)  # rank 0 alone says it
    assert saved_step(outputs / "sig") == int(stopped) > saved
    assert out.count("callbacks: saved ") == 2, out  # one save each, by all ranks together
    for node in nodes:
        wait_until(lambda n=node: not alive(n.seen), timeout=10, what="no process left")


@pytest.mark.slow
def test_slurm_requeue_saves_requeues_once_and_the_requeued_job_resumes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    outputs, log = tmp_path / "outputs", tmp_path / "scontrol.log"
    bin_dir = REPO / "tests" / "fixtures" / "bin"
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "SCONTROL_LOG": str(log),
        "SLURM_JOB_ID": "4242",
        "SLURM_JOB_NAME": "train",
        "SLURM_NTASKS": "2",
        "SLURM_NNODES": "1",
        "SLURM_NTASKS_PER_NODE": "2",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(free_port()),
    }
    run = [*LONG, f"paths.outputs_root={outputs}", "experiment_name=slurm", "resume=auto"]
    cmd = ["srun", sys.executable, str(REPO / "runners" / "train.py"), *run]
    srun = subprocess.Popen(
        [*cmd, "slurm.requeue=true"], cwd=REPO, env=env, stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    seen: set[int] = set()
    try:
        metrics = lambda: next(outputs.glob("slurm/runs/*/metrics.jsonl"), None)  # noqa: E731
        wait_until(lambda: metrics() and last_metric_step(metrics()) >= 2, timeout=200)
        seen.update(descendants(srun.pid))
        task = int(Path(f"/proc/{srun.pid}/task/{srun.pid}/children").read_text().split()[1])
        os.kill(task, signal.SIGUSR1)  # one task's supervisor, as sbatch --signal would
        out, _ = srun.communicate(timeout=60)
    finally:
        if srun.poll() is None:
            kill_all([srun.pid, *descendants(srun.pid)])
            srun.communicate()
    assert srun.returncode == 128 + signal.SIGUSR1, out
    assert log.read_text().splitlines() == ["requeue 4242"]  # rank 0 alone
    saved = saved_step(outputs / "slurm")
    assert saved is not None and f"at step {saved}" in out
    wait_until(lambda: not alive(seen), timeout=10, what="no process left")

    again = subprocess.run(
        [*cmd, f"trainer.max_steps={saved + 2}", "test_after_fit=false"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert again.returncode == 0, again.stdout + again.stderr
    assert "resuming from" in again.stdout + again.stderr
    assert saved_step(outputs / "slurm") == saved + 2
    assert log.read_text().splitlines() == ["requeue 4242"]
