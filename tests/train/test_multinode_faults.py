"""Teardown across nodes: each fault on one node ends the whole job on both nodes within its
bound, and leaves no process on either (two supervised torchrun agents, gloo on CPU)."""

from __future__ import annotations

import os
import re
import signal
import time
from collections.abc import Callable
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
