"""Health, the machine-wide process snapshot, orphan cleanup and Prometheus metrics."""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Sequence
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import PlainTextResponse
from pydantic import BaseModel, Field

import ocrtrain
from ocrtrain.procman import ACTIVE_STATES, RunState, UsageError
from ocrtrain.web.context import get_ctx
from ocrtrain.web.monitor_bridge import MonitorUnavailable

log = logging.getLogger(__name__)

router = APIRouter(tags=["system"])


class CleanupRequest(BaseModel):
    dry_run: bool = Field(default=True, description="only show what would be cleaned up")
    run_id: str | None = Field(default=None, description="limit to one run")
    include_live: bool = Field(default=False, description="also stop runs that are still live")
    grace: float = Field(
        default=5.0, ge=0, le=3600, allow_inf_nan=False, description="SIGTERM to SIGKILL (s)"
    )
    force: bool = Field(default=False, description="SIGKILL at once")


@router.get("/api/health", summary="Liveness and configuration")
def health(request: Request) -> dict[str, Any]:
    ctx = get_ctx(request)
    s = ctx.settings
    return {
        "ok": True,
        "version": getattr(ocrtrain, "__version__", None),
        "home": str(ctx.journal.home),
        "config_dir": str(s.config_dir),
        "config_ok": ctx.tree.exists,
        "train_script": str(s.train_script),
        "train_script_ok": s.train_script.is_file(),
        "active_runs": ctx.journal.count_active(),
        "uptime_s": time.time() - ctx.started_at,
        "token_required": s.token is not None,
    }


@router.get("/api/processes", summary="Every run's processes (as `ocrtrain ps --json`)")
def processes(request: Request) -> dict[str, Any]:
    return get_ctx(request).monitor.snapshot()


@router.post("/api/cleanup", summary="Orphan cleanup: the plan (dry run) or its execution")
def cleanup(request: Request, body: CleanupRequest | None = None) -> dict[str, Any]:
    ctx = get_ctx(request)
    body = body or CleanupRequest()
    try:
        out = ctx.monitor.cleanup(
            dry_run=body.dry_run,
            run_id=body.run_id,
            include_live=body.include_live,
            grace=body.grace,
            force=body.force,
        )
    except MonitorUnavailable as exc:
        raise HTTPException(503, str(exc)) from None
    except UsageError as exc:  # an unknown run, say
        raise HTTPException(422, str(exc)) from None
    if not body.dry_run:
        log.warning("cleanup executed from the web UI: ok=%s", out.get("ok"))
    return out


def _label(value: object) -> str:
    text = "" if value is None else str(value)
    text = text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
    return f'"{text}"'


@router.get("/metrics", response_class=PlainTextResponse, summary="Prometheus metrics")
def metrics(request: Request) -> PlainTextResponse:
    """Runs by state, processes per run, orphans, per-run CPU/RSS/GPU memory, host gauges."""
    ctx = get_ctx(request)
    counts = Counter(str(r.state) for r in ctx.journal.list_runs())
    snap = ctx.monitor.snapshot()
    out: list[str] = []

    def family(name: str, help_: str, samples: Sequence[tuple[str, float | int | None]]) -> None:
        out.append(f"# HELP {name} {help_}")
        out.append(f"# TYPE {name} gauge")
        for labels, value in samples:
            if value is not None:
                out.append(f"{name}{labels} {value}")

    family(
        "ocrtrain_runs",
        "Runs in the journal by state.",
        [(f"{{state={_label(s)}}}", counts.get(str(s), 0)) for s in RunState],
    )
    family(
        "ocrtrain_runs_active",
        "Runs starting, running or stopping.",
        [("", sum(counts.get(str(s), 0) for s in ACTIVE_STATES))],
    )
    family("ocrtrain_orphans", "Orphaned run processes.", [("", snap.get("orphans", 0))])
    procs: list[tuple[str, float | int | None]] = []
    cpu: list[tuple[str, float | int | None]] = []
    rss: list[tuple[str, float | int | None]] = []
    gpu: list[tuple[str, float | int | None]] = []
    for run in snap.get("runs", []):
        labels = f"{{run={_label(run.get('id'))},name={_label(run.get('name'))}}}"
        members = run.get("processes") or []
        procs.append((labels, len(members)))
        cpu.append((labels, _total(members, "cpu_percent")))
        rss.append((labels, _total(members, "rss_bytes")))
        gpu.append((labels, _total(members, "gpu_mem_bytes")))
    family("ocrtrain_run_processes", "Live processes per run.", procs)
    family("ocrtrain_run_cpu_percent", "CPU use of a run's processes (percent of one core).", cpu)
    family("ocrtrain_run_rss_bytes", "Resident memory of a run's processes.", rss)
    family("ocrtrain_run_gpu_memory_bytes", "GPU memory of a run's processes.", gpu)
    host = snap.get("host") or {}
    family("ocrtrain_host_cpu_percent", "Machine CPU use.", [("", host.get("cpu_percent"))])
    family("ocrtrain_host_memory_used_bytes", "Memory in use.", [("", host.get("mem_used"))])
    family("ocrtrain_host_memory_total_bytes", "Machine memory.", [("", host.get("mem_total"))])
    return PlainTextResponse(
        "\n".join(out) + "\n", media_type="text/plain; version=0.0.4; charset=utf-8"
    )


def _total(members: list[dict[str, Any]], key: str) -> float | None:
    values: list[float] = [float(m[key]) for m in members if m.get(key) is not None]
    return sum(values) if values else None
