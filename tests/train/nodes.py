"""Two "nodes" of a torchrun job on this machine: two `ocrtrain run -- torchrun --nnodes 2
--nproc-per-node 1` with a c10d rendezvous (gloo on CPU), and what finds their processes."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from helpers import REPO, alive, kill_all, wait_until
from train.conftest import descendants

SMALL = [
    "debug=smoke",
    "dataloaders.train.num_workers=1",
    "dataloaders.val.num_workers=0",
    "dataloaders.test.num_workers=0",
    "data.train.batches_per_epoch=3",
]
LONG = [
    *SMALL,
    "data.train.batches_per_epoch=1000",  # no epoch end: last.ckpt only from the signals
    "callbacks.checkpoint.every_n_train_steps=100000",
    "trainer.max_epochs=1000",
]
GRACE_S = 20


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ckpt_step(path: Path) -> int | None:
    import torch

    try:
        return int(torch.load(path, map_location="cpu", weights_only=False)["global_step"])
    except (OSError, EOFError, RuntimeError):
        return None


def saved_step(experiment_dir: Path) -> int | None:
    """The step of the experiment's latest `last.ckpt` (each run keeps its own), or None."""
    from ocrtrain.train.run_folders import latest_checkpoint

    path = latest_checkpoint(experiment_dir)
    return None if path is None else ckpt_step(path)


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().split("\0")
    except OSError:
        return []


def _ppid(pid: int) -> int | None:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return None


class Node:
    """One "node": `ocrtrain run -- torchrun --nnodes 2 --nproc-per-node 1 ...` (its output
    goes to a file, so a long run never blocks on a full pipe)."""

    def __init__(
        self,
        name: str,
        endpoint: str,
        overrides: Sequence[str],
        wrap: Sequence[str] = (),
        torchrun: Sequence[str] = (),
    ) -> None:
        cmd = [
            *wrap,
            sys.executable, "-m", "ocrtrain", "run", "--name", name, "--grace", str(GRACE_S),
            "--", "torchrun", "--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend",
            "c10d", "--rdzv-endpoint", endpoint, "--rdzv-id", "t", *torchrun,
            str(REPO / "runners" / "train.py"), *overrides,
        ]  # fmt: skip
        self.name = name
        self.out = tempfile.TemporaryFile(mode="w+")  # noqa: SIM115 (closed by the fixture)
        self.proc = subprocess.Popen(cmd, cwd=REPO, stdout=self.out, stderr=subprocess.STDOUT)
        self.seen: set[int] = {self.proc.pid}

    def track(self) -> list[int]:
        pids = descendants(self.proc.pid)
        self.seen.update(pids)
        return pids

    def agent(self) -> int:
        """The node's torchrun agent (`python -m ocrtrain.dist.agent`)."""

        def find() -> int | None:
            return next((p for p in self.track() if "ocrtrain.dist.agent" in _cmdline(p)), None)

        return wait_until(find, timeout=60, interval=0.05, what=f"{self.name}'s agent")

    def rank(self) -> int:
        """The node's one rank: the agent's child."""
        agent = self.agent()
        return wait_until(
            lambda: next((p for p in self.track() if _ppid(p) == agent), None),
            timeout=60,
            interval=0.05,
            what=f"{self.name}'s rank",
        )

    def output(self) -> str:
        self.out.seek(0)
        return self.out.read()

    def wait(self, timeout: float) -> tuple[int, str]:
        self.proc.wait(timeout=timeout)
        return self.proc.returncode, self.output()


@pytest.fixture
def nodes() -> Iterator[list[Node]]:
    started: list[Node] = []
    yield started
    for node in started:
        if node.proc.poll() is None:
            kill_all([node.proc.pid, *node.track()])
            node.proc.wait(timeout=10)
            print(f"output of the killed node:\n{node.output()}")
        left = alive(node.seen)
        if left:
            kill_all(left)
            pytest.fail(f"processes of a node left behind: {left}")
        node.out.close()


def start_two(
    nodes: list[Node],
    overrides: Sequence[str],
    wrap_b: Sequence[str] = (),
    *,
    wrap_a: Sequence[str] = (),
    host: str = "127.0.0.1",
    addrs: tuple[str, str] | None = None,
) -> None:
    """Start node A and node B; `addrs`: each node's own address (`--local-addr`), which
    the node that gets global rank 0 tells the other ranks to reach it at."""
    endpoint = f"{host}:{free_port()}"

    def extra(node: int) -> list[str]:
        # torchrun hosts the rendezvous where the endpoint names this machine; an address of
        # a network namespace it does not recognise: node A says it hosts.
        conf = ["--rdzv-conf", f"is_host={'true' if node == 0 else 'false'}"] if wrap_a else []
        return [*conf, *(["--local-addr", addrs[node]] if addrs else [])]

    nodes.append(Node("node-a", endpoint, overrides, wrap_a, extra(0)))
    nodes.append(Node("node-b", endpoint, overrides, wrap_b, extra(1)))
