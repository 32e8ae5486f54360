"""Per-rank network bytes of a two-node job match what its gradient all-reduce must send."""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest

from helpers import alive, ocrtrain, wait_until
from train.conftest import last_metric_step
from train.nodes import LONG, Node, nodes, start_two

__all__ = ["nodes"]  # a fixture

STEPS = 20
WORLD = 2


def _ranks(
    world: int, since: dict[int, tuple[int, int, int]] | None = None
) -> dict[int, tuple[int, int, int]] | None:
    """Each rank's (step, TCP bytes sent, TCP bytes received), from `ocrtrain ps --json`;
    None until all `world` ranks are listed (and, with `since`, each is STEPS steps on)."""
    out = ocrtrain("ps", "--json")
    assert out.returncode == 0, out.stderr
    found = {}
    for run in json.loads(out.stdout)["runs"]:
        for p in run["processes"]:
            if p["global_rank"] is not None and p["step"] is not None:
                found[p["global_rank"]] = (p["step"], p["net_sent_bytes"], p["net_recv_bytes"])
    if len(found) < world or (since and any(found[k][0] < since[k][0] + STEPS for k in since)):
        return None
    return found


@pytest.mark.slow
def test_each_ranks_network_bytes_are_what_its_gradient_all_reduce_sends(
    nodes: list[Node], tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    start_two(nodes, [*LONG, f"paths.outputs_root={outputs}", "experiment_name=net"])
    metrics = lambda: next(outputs.glob("net/runs/*/metrics.jsonl"), None)  # noqa: E731
    wait_until(lambda: metrics() and last_metric_step(metrics()) >= 3, timeout=240, interval=0.1)
    before = wait_until(lambda: _ranks(WORLD), timeout=30, what="both ranks in ps")
    after = wait_until(lambda: _ranks(WORLD, before), timeout=240, interval=0.2, what="20 steps")
    nodes[0].proc.send_signal(signal.SIGTERM)  # one last.ckpt: the model, to count it
    results = [node.wait(timeout=90) for node in nodes]
    assert [rc for rc, _ in results] == [143, 143], results
    for node in nodes:
        wait_until(lambda n=node: not alive(n.seen), timeout=10, what="no process left")

    from ocrtrain.train.inference import load_model

    (last,) = outputs.glob("net/**/last.ckpt")
    model = load_model(last)
    grad_bytes = 4 * sum(p.numel() for p in model.parameters() if p.requires_grad)
    must_send = 2 * (WORLD - 1) / WORLD * grad_bytes  # a ring all-reduce, per rank and step
    for rank in range(WORLD):
        steps = after[rank][0] - before[rank][0]
        sent = (after[rank][1] - before[rank][1]) / steps
        recv = (after[rank][2] - before[rank][2]) / steps
        print(f"rank {rank}: {sent:.0f} B sent, {recv:.0f} B received per step over {steps}")
        print(f"  the all-reduce of {grad_bytes} gradient bytes must send {must_send:.0f} B")
        assert 0.8 <= sent / must_send <= 2.0, (rank, sent, must_send)
        assert 0.8 <= recv / must_send <= 2.0, (rank, recv, must_send)
