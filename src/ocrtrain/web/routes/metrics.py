"""/metrics for Prometheus, through `prometheus_client`: runs by state, each live run's
processes (CPU, RSS, GPU memory) and training progress (step, loss, validation CER, lines/s),
and the machine's gauges. Everything is read at scrape time from the journal, the process
snapshot and each live run's metrics.jsonl."""

from __future__ import annotations

import json
import os
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from ocrtrain.procman import ACTIVE_STATES, RunState
from ocrtrain.web.context import WebContext, get_ctx, read_artifacts

router = APIRouter(tags=["system"])

TAIL_BLOCK = 64 * 1024
TAIL_MAX = 16 * 1024 * 1024  # read no further back than this for a run's latest scores
RUN_LABELS = ("run", "name")
# metrics.jsonl key -> (Prometheus name, help)
TRAINING = {
    "step": ("ocrtrain_run_step", "The latest training step a live run recorded."),
    "epoch": ("ocrtrain_run_epoch", "The epoch of that step (0-based)."),
    "train/loss": ("ocrtrain_run_train_loss", "The latest training loss."),
    "lr": ("ocrtrain_run_learning_rate", "The latest learning rate."),
    "lines_per_s": ("ocrtrain_run_lines_per_second", "Training speed, text lines a second."),
    "val/cer": ("ocrtrain_run_val_cer", "Character error rate of the latest validation."),
    "val/line_acc": ("ocrtrain_run_val_line_accuracy", "Line accuracy of that validation."),
}
RANK_LABELS = ("run", "job", "node_rank", "global_rank", "local_rank")
# a rank's process field -> (Prometheus name, help)
PER_RANK = {
    "step": ("ocrtrain_rank_step", "The training step a rank of a distributed job is at."),
    "cpu_percent": ("ocrtrain_rank_cpu_percent", "CPU use of a rank (percent of one core)."),
    "rss_bytes": ("ocrtrain_rank_rss_bytes", "Resident memory of a rank."),
    "gpu_mem_bytes": ("ocrtrain_rank_gpu_memory_bytes", "GPU memory of a rank."),
    "net_sent_bytes": ("ocrtrain_rank_net_sent_bytes", "TCP bytes a rank's sockets sent."),
    "net_recv_bytes": ("ocrtrain_rank_net_received_bytes", "TCP bytes a rank's sockets received."),
}
TRAIN_KEYS = ("step", "epoch", "train/loss", "lr", "lines_per_s")
VAL_KEYS = ("val/cer", "val/line_acc")


def latest_scores(path: Path) -> dict[str, float]:
    """The newest training record's and validation record's numbers in a metrics.jsonl,
    read backwards from the end."""
    found: dict[str, float] = {}
    try:
        with open(path, "rb") as f:
            _read_backwards(f, found)
    except OSError:
        pass
    return found


def _read_backwards(f: Any, found: dict[str, float]) -> None:
    end = f.seek(0, os.SEEK_END)
    pos, carry = end, b""
    while pos > 0 and end - pos < TAIL_MAX:
        start = max(0, pos - TAIL_BLOCK)
        f.seek(start)
        block = f.read(pos - start) + carry
        pos = start
        lines = block.split(b"\n")
        carry = lines.pop(0) if pos > 0 else b""
        for line in reversed(lines):
            _take(line, found)
            if "train/loss" in found and "val/cer" in found:
                return


def _take(line: bytes, found: dict[str, float]) -> None:
    """Keep the numbers of a record if it is the newest of its kind seen so far."""
    try:
        rec = json.loads(line)
    except ValueError:
        return
    if not isinstance(rec, dict):
        return
    for marker, keys in (("train/loss", TRAIN_KEYS), ("val/cer", VAL_KEYS)):
        if marker in rec and marker not in found:
            for key in keys:
                value = rec.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    found[key] = float(value)


class RunsCollector(Collector):
    """Collects at each scrape; holds nothing between scrapes."""

    def __init__(self, ctx: WebContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[GaugeMetricFamily]:
        ctx = self.ctx
        counts = Counter(str(r.state) for r in ctx.journal.list_runs())
        runs = GaugeMetricFamily("ocrtrain_runs", "Runs in the journal by state.", labels=["state"])
        for s in RunState:
            runs.add_metric([str(s)], counts.get(str(s), 0))
        yield runs
        active = sum(counts.get(str(s), 0) for s in ACTIVE_STATES)
        yield GaugeMetricFamily(
            "ocrtrain_runs_active", "Runs starting, running or stopping.", active
        )
        snap = ctx.monitor.snapshot()
        yield GaugeMetricFamily(
            "ocrtrain_orphans", "Orphaned run processes.", snap.get("orphans", 0)
        )
        yield from self._processes(snap.get("runs", []))
        yield from self._ranks(snap.get("runs", []))
        yield from self._training()
        nics = {
            key: GaugeMetricFamily(
                f"ocrtrain_nic_{key}_bytes", f"Bytes {key} by a network interface.", labels=["nic"]
            )
            for key in ("sent", "received")
        }
        for name, nic in (snap.get("host") or {}).get("nics", {}).items():
            for key, family in nics.items():
                if isinstance(nic, dict) and nic.get(key) is not None:
                    family.add_metric([str(name)], float(nic[key]))
        yield from nics.values()
        host = snap.get("host") or {}
        for name, help_, key in (
            ("ocrtrain_host_cpu_percent", "Machine CPU use.", "cpu_percent"),
            ("ocrtrain_host_memory_used_bytes", "Memory in use.", "mem_used"),
            ("ocrtrain_host_memory_total_bytes", "Machine memory.", "mem_total"),
        ):
            if host.get(key) is not None:
                yield GaugeMetricFamily(name, help_, float(host[key]))

    @staticmethod
    def _processes(runs: list[dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
        families = {
            "count": GaugeMetricFamily(
                "ocrtrain_run_processes", "Live processes per run.", labels=RUN_LABELS
            ),
            "cpu_percent": GaugeMetricFamily(
                "ocrtrain_run_cpu_percent",
                "CPU use of a run's processes (percent of one core).",
                labels=RUN_LABELS,
            ),
            "rss_bytes": GaugeMetricFamily(
                "ocrtrain_run_rss_bytes", "Resident memory of a run's processes.", labels=RUN_LABELS
            ),
            "gpu_mem_bytes": GaugeMetricFamily(
                "ocrtrain_run_gpu_memory_bytes",
                "GPU memory of a run's processes.",
                labels=RUN_LABELS,
            ),
        }
        for run in runs:
            labels = [str(run.get("id") or ""), str(run.get("name") or "")]
            members = run.get("processes") or []
            families["count"].add_metric(labels, len(members))
            for key, family in families.items():
                values = [float(m[key]) for m in members if m.get(key) is not None]
                if key != "count" and values:
                    family.add_metric(labels, sum(values))
        yield from families.values()

    def _ranks(self, runs: list[dict[str, Any]]) -> Iterator[GaugeMetricFamily]:
        """Per rank of a distributed job, labelled so that one Prometheus scrapes a cluster."""
        families = {
            key: GaugeMetricFamily(name, help_, labels=RANK_LABELS)
            for key, (name, help_) in PER_RANK.items()
        }
        for run in runs:
            run_id = str(run.get("id") or "")
            ranks = [p for p in run.get("processes") or [] if p.get("global_rank") is not None]
            if not ranks:
                continue
            rec = self.ctx.journal.get_run(run_id) if run_id else None
            job = (rec.job_id if rec is not None else None) or run_id
            for p in ranks:
                node = p.get("node_rank")
                labels = [
                    run_id,
                    str(job),
                    "" if node is None else str(node),
                    str(p["global_rank"]),
                    "" if p.get("local_rank") is None else str(p["local_rank"]),
                ]
                for key, family in families.items():
                    if p.get(key) is not None:
                        family.add_metric(labels, float(p[key]))
        yield from families.values()

    def _training(self) -> Iterator[GaugeMetricFamily]:
        families = {
            key: GaugeMetricFamily(name, help_, labels=RUN_LABELS)
            for key, (name, help_) in TRAINING.items()
        }
        for rec in self.ctx.journal.list_runs(states=ACTIVE_STATES):
            art = read_artifacts(rec)
            path = art.get("metrics") if art else None
            if not path:
                continue
            for key, value in latest_scores(Path(str(path))).items():
                families[key].add_metric([rec.id, rec.name], value)
        yield from families.values()


def registry_for(ctx: WebContext) -> CollectorRegistry:
    """A registry of this app's own (none of the process-global default collectors)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(RunsCollector(ctx))
    return registry


@router.get("/metrics", summary="Prometheus metrics", response_class=Response)
def metrics(request: Request) -> Response:
    """Runs by state; per live run its processes (count, CPU, RSS, GPU memory) and training
    progress (step, epoch, loss, learning rate, lines/s, validation CER and line accuracy);
    orphans; the machine's CPU and memory."""
    app_state = request.app.state
    registry = getattr(app_state, "metrics_registry", None)
    if registry is None:
        registry = app_state.metrics_registry = registry_for(get_ctx(request))
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)
