"""Teardown across nodes: each fault on one node ends the whole job on both nodes within its
bound, and leaves no process on either (two supervised torchrun agents, gloo on CPU)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from helpers import alive, ocrtrain, wait_until
from ocrtrain.procman import EventKind, Journal
from train.conftest import last_metric_step
from train.nodes import GRACE_S, LONG, Node, nodes, start_two

__all__ = ["nodes"]  # a fixture

TIMEOUT_S = 15  # dist.timeout_s of these jobs
BOUND_S = GRACE_S + 10  # every fault but a stall: the whole job is down within this
STALL_BOUND_S = TIMEOUT_S + GRACE_S


def _training(nodes: list[Node], outputs: Path, steps: int = 2) -> None:
    def metrics() -> Path | None:
        return next(outputs.glob("f/runs/*/metrics.jsonl"), None)

    def trained() -> bool:
        ended = [n.name for n in nodes if n.proc.poll() is not None]
        assert not ended, f"{ended} ended before training: {[n.output()[-2000:] for n in nodes]}"
        found = metrics()
        return found is not None and last_metric_step(found) >= steps

    wait_until(trained, timeout=240, interval=0.1, what="both nodes training")
    for node in nodes:
        node.rank()  # every process of both nodes is tracked from here on


def _down_within(nodes: list[Node], t0: float, bound: float) -> float:
    """Seconds from `t0` until every process of both nodes was gone; fails past `bound`."""
    seen = {pid for node in nodes for pid in node.seen}
    for node in nodes:
        node.track()
        seen |= node.seen
    wait_until(
        lambda: not alive(seen) and all(n.proc.poll() is not None for n in nodes),
        timeout=bound + 5,
        interval=0.05,
        what="every process of both nodes gone",
    )
    took = time.monotonic() - t0
    assert took <= bound, f"the job took {took:.1f} s to end on every node (bound {bound} s)"
    return took


def _start(nodes: list[Node], tmp_path: Path, **kw: object) -> Path:
    outputs = tmp_path / "outputs"
    overrides = [*LONG, f"paths.outputs_root={outputs}", "experiment_name=f"]
    start_two(nodes, [*overrides, f"dist.timeout_s={TIMEOUT_S}"], **kw)  # type: ignore[arg-type]
    _training(nodes, outputs)
    return outputs


def _stop_via_cli(node: Node) -> None:
    with Journal() as journal:
        run = next(r for r in journal.list_runs() if r.supervisor_pid == node.proc.pid)
    done = ocrtrain("stop", run.id, timeout=60)
    assert done.returncode == 0, done.stderr


FAULTS: dict[str, tuple[Callable[[list[Node]], None], float, set[int] | None]] = {
    # fault on node B (or A), bound, exit codes of both nodes (None: any non-zero)
    "rank SIGKILLed": (lambda n: os.kill(n[1].rank(), signal.SIGKILL), BOUND_S, None),
    "agent SIGKILLed": (lambda n: os.kill(n[1].agent(), signal.SIGKILL), BOUND_S, None),
    "supervisor SIGKILLed": (lambda n: n[1].proc.kill(), BOUND_S, None),
    "SIGTERM to one node": (lambda n: n[0].proc.send_signal(signal.SIGTERM), BOUND_S, {143}),
    "ocrtrain stop on one node": (lambda n: _stop_via_cli(n[0]), BOUND_S, {143}),
    "SIGINT to one node": (lambda n: n[1].proc.send_signal(signal.SIGINT), BOUND_S, {130}),
}


@pytest.mark.slow
@pytest.mark.parametrize("fault", list(FAULTS))
def test_a_fault_on_one_node_ends_the_job_on_every_node(
    fault: str, nodes: list[Node], tmp_path: Path
) -> None:
    act, bound, codes = FAULTS[fault]
    _start(nodes, tmp_path)
    t0 = time.monotonic()
    act(nodes)
    took = _down_within(nodes, t0, bound)
    results = [node.proc.returncode for node in nodes]
    if codes is None:
        assert all(rc != 0 for rc in results), results
    elif fault == "supervisor SIGKILLed":
        pass
    else:
        assert set(results) == codes, (results, [n.output()[-3000:] for n in nodes])
    print(f"{fault}: the job was down on both nodes {took:.1f} s later (bound {bound} s)")


@pytest.mark.slow
def test_a_stalled_rank_ends_the_job_naming_it_with_every_ranks_stack(
    nodes: list[Node], tmp_path: Path
) -> None:
    _start(nodes, tmp_path)
    stalled = nodes[1].rank()
    t0 = time.monotonic()
    os.kill(stalled, signal.SIGSTOP)
    took = _down_within(nodes, t0, STALL_BOUND_S)
    assert [n.proc.returncode for n in nodes] == [1, 1]
    out_b = nodes[1].output()
    said = re.findall(rf"ERROR: rank \d \(node \d, pid {stalled}\) made no progress .*", out_b)
    assert len(said) == 1 and "it is stopped (SIGSTOP)" in said[0], out_b[-3000:]
    assert 'File "' in nodes[0].output(), "the other rank's Python stack is in node A's log"
    with Journal() as journal:
        events = [e for r in journal.list_runs() for e in journal.events(r.id, kinds=["stalled"])]
    assert events and all(e.kind == EventKind.STALLED for e in events)
    by_pid = {d["pid"]: d for e in events for d in e.detail["ranks"]}
    assert by_pid[stalled]["state"] == "T" and by_pid[stalled]["stalled"]
    other = nodes[0].seen - {stalled}
    assert any("File " in d["stack"] for pid, d in by_pid.items() if pid in other)
    with Journal() as journal:  # each node's run knows its job and its rank
        runs = [r for r in journal.list_runs() if r.job_id is not None]
        assert sorted(r.node_rank for r in runs) == [0, 1] and {r.num_nodes for r in runs} == {2}
        ranks = sorted(k.global_rank for r in runs for k in journal.ranks(r.id))
        assert ranks == [0, 1]
    print(f"stall: the job was down on both nodes {took:.1f} s after the SIGSTOP")


class Veth:
    """Two network namespaces joined by a veth pair (`ip netns`, as root): each node's own
    network, 10.231.N.1 and .2, so cutting the link is a real network cut."""

    def __init__(self) -> None:
        tag = os.getpid() % 100000
        self.ns = (f"ocrt-a{tag}", f"ocrt-b{tag}")
        self.links = (f"ocva{tag}", f"ocvb{tag}")
        self.addrs = ("10.231.0.1", "10.231.0.2")

    def ip(self, *args: str, ns: int | None = None) -> None:
        where = ["ip", "netns", "exec", self.ns[ns]] if ns is not None else []
        done = subprocess.run([*where, "ip", *args], capture_output=True, text=True, timeout=10)
        if done.returncode != 0:
            raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")

    def up(self) -> None:
        for ns in self.ns:
            self.ip("netns", "add", ns)
        self.ip("link", "add", self.links[0], "type", "veth", "peer", "name", self.links[1])
        for i in (0, 1):
            self.ip("link", "set", self.links[i], "netns", self.ns[i])
            self.ip("addr", "add", f"{self.addrs[i]}/24", "dev", self.links[i], ns=i)
            self.ip("link", "set", self.links[i], "up", ns=i)
            self.ip("link", "set", "lo", "up", ns=i)

    def wrap(self, i: int) -> list[str]:
        """A node's command prefix: in its namespace, gloo on its link."""
        return ["ip", "netns", "exec", self.ns[i], "env", f"GLOO_SOCKET_IFNAME={self.links[i]}"]

    def cut(self) -> None:
        self.ip("link", "set", self.links[1], "down", ns=1)

    def down(self) -> None:
        for ns in self.ns:  # deleting a namespace deletes its end of the pair, and the pair
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.fixture
def veth() -> Iterator[Veth]:
    pair = Veth()
    try:
        pair.up()
    except (OSError, subprocess.TimeoutExpired) as e:
        pair.down()
        pytest.skip(f"no network namespaces with a veth pair here: {e}")
    yield pair
    pair.down()


@pytest.mark.slow
def test_a_network_cut_between_the_nodes_ends_the_job_on_both(
    veth: Veth, nodes: list[Node], tmp_path: Path
) -> None:
    _start(
        nodes,
        tmp_path,
        wrap_a=veth.wrap(0),
        wrap_b=veth.wrap(1),
        host=veth.addrs[0],
        addrs=veth.addrs,
    )
    t0 = time.monotonic()
    veth.cut()
    took = _down_within(nodes, t0, STALL_BOUND_S)
    results = [node.proc.returncode for node in nodes]
    assert all(rc != 0 for rc in results), results
    for node in nodes:
        assert "made no progress" in node.output(), node.output()[-3000:]
    with Journal() as journal:  # each node's journal names the stall
        runs = [r for r in journal.list_runs() if r.job_id is not None]
        assert len(runs) == 2 and all(journal.events(r.id, kinds=["stalled"]) for r in runs)
    print(f"network cut: the job was down on both nodes {took:.1f} s later ({results})")
