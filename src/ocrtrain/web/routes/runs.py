"""/api/runs: list, launch, inspect and stop runs; stream their logs and metrics."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Annotated, Any

import anyio
from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from ocrtrain.procman import (
    ACTIVE_STATES,
    CONFIG_DIR_ENV,
    FINAL_STATES,
    EventKind,
    OcrtrainError,
    RunNotFound,
    RunRecord,
    RunSpec,
    RunState,
    UsageError,
    request_stop,
    start,
    to_json,
)
from ocrtrain.web import logs
from ocrtrain.web.context import WebContext, get_ctx, read_artifacts
from ocrtrain.web.hydra_form import OverrideError, command_text
from ocrtrain.web.run_scores import scores_of

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/runs", tags=["runs"])

NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,63}$")
POLL_S = 0.1
STATE_CHECK_S = 0.5
KEEPALIVE_S = 10.0
MAX_METRIC_BYTES = 4 * 1024 * 1024
MAX_OFFSET = 2**62  # byte offsets and sequence numbers beyond any file or journal (and int64)
MAX_GRACE_S = 7 * 24 * 3600.0


class LaunchRequest(BaseModel):
    overrides: list[str] = Field(default_factory=list, description="Hydra overrides")
    name: str | None = Field(default=None, description="run name (default: train)")


class StopRequest(BaseModel):
    force: bool = Field(default=False, description="SIGKILL now instead of a graceful stop")
    grace: float | None = Field(
        default=None,
        ge=0,
        le=MAX_GRACE_S,
        allow_inf_nan=False,
        description="override the grace (s)",
    )


def find_run(ctx: WebContext, run_id: str) -> RunRecord:
    try:
        return ctx.journal.resolve(run_id)
    except RunNotFound as exc:
        raise HTTPException(404, str(exc)) from None


def overrides_of(ctx: WebContext, rec: RunRecord) -> list[str] | None:
    """The overrides of a run launched as `python train.py ...` (or the packaged trainer),
    else None."""
    argv = list(rec.argv)
    prefix = ctx.settings.train_argv()[1:]
    if argv[1 : 1 + len(prefix)] == prefix:
        return argv[1 + len(prefix) :]
    script = ctx.settings.train_script
    if script is not None and len(argv) >= 2 and Path(argv[1]).name == script.name:
        return argv[2:]
    return None


def stop_info(ctx: WebContext, rec: RunRecord) -> dict[str, Any] | None:
    """When the latest stop was asked and when the supervisor escalates to SIGKILL."""
    stops = ctx.journal.events(rec.id, kinds=[str(EventKind.STOP_REQUESTED)])
    if not stops:
        return None
    ev = stops[-1]
    force = bool(ev.detail.get("force"))
    grace_v = ev.detail.get("grace")
    grace = 0.0 if force else float(grace_v if grace_v is not None else rec.grace)
    return {
        "requested_at": ev.ts,
        "force": force,
        "grace": grace,
        "deadline": ev.ts + grace,
        "source": ev.detail.get("source"),
    }


def run_summary(ctx: WebContext, rec: RunRecord) -> dict[str, Any]:
    out: dict[str, Any] = to_json(rec)
    out["active"] = rec.state in ACTIVE_STATES
    out["overrides"] = overrides_of(ctx, rec)
    out["command"] = command_text(rec.argv)
    end = rec.ended_at or time.time()
    out["duration_s"] = end - rec.started_at if rec.started_at else None
    art = read_artifacts(rec)
    metrics = art.get("metrics") if art else None
    out["scores"] = to_json(scores_of(Path(str(metrics)))) if metrics else None
    return out


@router.get("", summary="Runs, newest first")
def list_runs(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    state: Annotated[list[RunState] | None, Query()] = None,
) -> dict[str, Any]:
    ctx = get_ctx(request)
    ctx.reconcile()
    runs = ctx.journal.list_runs(limit=limit, states=state)
    return {"runs": [run_summary(ctx, r) for r in runs], "now": time.time()}


@router.post("", status_code=201, summary="Launch the trainer with Hydra overrides")
def launch(request: Request, body: LaunchRequest) -> dict[str, Any]:
    """Compose-check the overrides, then start `python train.py OVERRIDES` detached under the
    supervisor (never through a shell). 422 with Hydra's message if they do not compose."""
    ctx = get_ctx(request)
    s = ctx.settings
    if body.name is not None and not NAME_RE.match(body.name):
        raise HTTPException(422, "name: letters, digits, '_', '-', '.', at most 64 characters")
    if not ctx.tree.exists:
        raise HTTPException(503, f"no train.yaml in {s.config_dir}")
    missing = s.trainer_missing()
    if missing is not None:
        raise HTTPException(503, missing)
    try:
        composed = ctx.tree.compose(body.overrides)
    except OverrideError as exc:
        raise HTTPException(422, str(exc)) from None
    argv = (*s.train_argv(), *composed.overrides)
    spec = RunSpec(
        argv=argv,
        name=body.name or "train",
        grace=s.grace,
        detach=True,
        cwd=str(s.run_cwd),
        env={CONFIG_DIR_ENV: str(s.config_dir)},
    )
    rec = start_run(ctx, spec)
    return {"id": rec.id, "run": run_summary(ctx, rec)}


def start_run(ctx: WebContext, spec: RunSpec) -> RunRecord:
    """Start `spec` detached under the supervisor: 429 past `--max-runs` active runs, 409 if
    refused, 500 if it failed. Counting and starting are one step under the launch lock."""
    limit = ctx.settings.max_runs
    with ctx.launch_lock:
        active = ctx.journal.count_active()
        if active >= limit:
            raise HTTPException(
                429,
                f"{active} runs are active and this UI allows {limit} at once "
                "(ocrtrain ui --max-runs): stop one, or wait for one to end",
            )
        try:
            handle = start(spec, ctx.journal)
        except UsageError as exc:
            raise HTTPException(409, str(exc)) from None
        except OcrtrainError as exc:
            raise HTTPException(500, str(exc)) from None
    ctx.monitor.invalidate()
    rec = handle.record()
    log.info("launched run %s: %s", rec.id, command_text(spec.argv))
    return rec


@router.get("/{run_id}", summary="One run, its lifecycle events and stop countdown")
def get_run(request: Request, run_id: str) -> dict[str, Any]:
    ctx = get_ctx(request)
    rec = find_run(ctx, run_id)
    return {
        "run": run_summary(ctx, rec),
        "events": [to_json(e) for e in ctx.journal.events(rec.id)],
        "stop": stop_info(ctx, rec),
        "artifacts": read_artifacts(rec),
        "now": time.time(),
    }


@router.post("/{run_id}/stop", status_code=202, summary="Stop (graceful) or kill (force) a run")
def stop_run(request: Request, run_id: str, body: StopRequest | None = None) -> dict[str, Any]:
    ctx = get_ctx(request)
    body = body or StopRequest()
    rec = find_run(ctx, run_id)
    if rec.state in FINAL_STATES:
        raise HTTPException(409, f"run {rec.id} has already ended ({rec.state})")
    try:
        request_stop(ctx.journal, rec, grace=body.grace, force=body.force, source="web")
    except UsageError as exc:
        raise HTTPException(409, str(exc)) from None
    ctx.monitor.invalidate()
    rec = find_run(ctx, rec.id)
    return {"id": rec.id, "state": str(rec.state), "stop": stop_info(ctx, rec)}


@router.get("/{run_id}/events", summary="Lifecycle events after a sequence number")
def run_events(
    request: Request, run_id: str, after: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0
) -> dict[str, Any]:
    ctx = get_ctx(request)
    rec = find_run(ctx, run_id)
    return {"events": [to_json(e) for e in ctx.journal.events(rec.id, after_seq=after)]}


@router.get(
    "/{run_id}/logs",
    summary="The run's output as Server-Sent Events",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {}}}},
)
async def stream_logs(
    request: Request,
    run_id: str,
    offset: Annotated[
        int | None, Query(ge=0, le=MAX_OFFSET, description="byte offset to resume from")
    ] = None,
    tail: Annotated[
        int | None, Query(ge=0, le=MAX_OFFSET, description="bytes before the end")
    ] = None,
    follow: Annotated[bool, Query(description="keep streaming until the run ends")] = True,
) -> StreamingResponse:
    """`lines` events (`{"lines": [...], "offset": N}`; the event id is the offset to resume
    from, also honoured as `Last-Event-ID`) and a final `end` event once the run has ended and
    its log is read to the end."""
    ctx = get_ctx(request)
    rec = await anyio.to_thread.run_sync(find_run, ctx, run_id)
    path = Path(rec.log_path)
    resume = request.headers.get("last-event-id")
    if offset is None and resume and resume.isdigit() and int(resume) <= MAX_OFFSET:
        offset = int(resume)
    if offset is None:
        offset = logs.tail_offset(path, tail) if tail is not None else 0
    return StreamingResponse(
        _log_events(ctx, rec, path, offset, follow),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def _log_events(
    ctx: WebContext, rec: RunRecord, path: Path, offset: int, follow: bool
) -> AsyncIterator[bytes]:
    yield b"retry: 1000\n\n"
    final = rec.state in FINAL_STATES or not follow
    checked = time.monotonic()
    last_sent = time.monotonic()
    while True:
        chunk = logs.read_chunk(path, offset, final=final)
        if chunk.lines:
            offset = chunk.end
            last_sent = time.monotonic()
            yield logs.sse("lines", {"lines": chunk.lines, "offset": offset}, offset)
            continue
        if final:
            state = await anyio.to_thread.run_sync(ctx.journal.get_run, rec.id)
            yield logs.sse(
                "end", {"offset": offset, "state": str(state.state) if state else None}, offset
            )
            return
        now = time.monotonic()
        if now - checked >= STATE_CHECK_S:
            checked = now
            cur = await anyio.to_thread.run_sync(ctx.journal.get_run, rec.id)
            if cur is None or cur.state in FINAL_STATES:
                final = True  # one more read picks up what was written before the end
                continue
        if now - last_sent >= KEEPALIVE_S:
            last_sent = now
            yield b": keep-alive\n\n"
        await asyncio.sleep(POLL_S)


@router.get("/{run_id}/logs/search", summary="Search the whole log (case-insensitive)")
def search_logs(
    request: Request,
    run_id: str,
    q: Annotated[str, Query(min_length=1, max_length=200)],
    limit: Annotated[int, Query(ge=1, le=5000)] = 500,
) -> dict[str, Any]:
    ctx = get_ctx(request)
    rec = find_run(ctx, run_id)
    return {"query": q, "hits": logs.search(Path(rec.log_path), q, limit)}


@router.get("/{run_id}/metrics", summary="The run's metrics.jsonl records, from an offset")
def run_metrics(
    request: Request, run_id: str, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0
) -> dict[str, Any]:
    """Records the trainer wrote (step, epoch, train/loss, val/cer, ...), read incrementally:
    pass back `offset` to get only new ones."""
    ctx = get_ctx(request)
    rec = find_run(ctx, run_id)
    art = read_artifacts(rec)
    metrics = art.get("metrics") if art else None
    if not metrics:
        return {"points": [], "offset": 0, "path": None, "active": rec.state in ACTIVE_STATES}
    path = Path(str(metrics))
    chunk = logs.read_chunk(path, offset, final=False, limit=MAX_METRIC_BYTES)
    points = []
    for line in chunk.lines:
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            points.append(obj)
    return {
        "points": points,
        "offset": chunk.end,
        "path": str(path),
        "active": rec.state in ACTIVE_STATES,
    }


@router.get("/{run_id}/resources", summary="The run's CPU, memory and GPU memory over time")
def run_resources(request: Request, run_id: str) -> dict[str, Any]:
    """The supervisor's resource samples of the run's processes, oldest first: `time`,
    `processes`, `cpu_percent` (of one core), `rss_mib`, `gpu_mib` (null without a GPU); and,
    for a node of a distributed job, `ranks`: each rank's samples (the rank and its workers),
    with its network traffic (`net_sent_mib`, `net_recv_mib`) and the `step` it was at."""
    ctx = get_ctx(request)
    rec = find_run(ctx, run_id)
    samples = ctx.journal.samples(rec.id)
    ranks: dict[int, dict[str, Any]] = {}
    for s in samples:
        for r in s.ranks:
            rank = ranks.setdefault(
                r.global_rank,
                {
                    "global_rank": r.global_rank,
                    "local_rank": r.local_rank,
                    "node_rank": r.node_rank,
                    "samples": [],
                },
            )
            rank["samples"].append(
                {
                    "time": s.ts,
                    "pid": r.pid,
                    "processes": r.n_procs,
                    "cpu_percent": r.cpu_percent,
                    "rss_mib": _mib(r.rss_bytes),
                    "gpu_mib": _mib(r.gpu_bytes),
                    "net_sent_mib": _mib(r.net_sent_bytes),
                    "net_recv_mib": _mib(r.net_recv_bytes),
                    "step": r.step,
                }
            )
    return {
        "samples": [
            {
                "time": s.ts,
                "processes": s.n_procs,
                "cpu_percent": s.cpu_percent,
                "rss_mib": _mib(s.rss_bytes),
                "gpu_mib": _mib(s.gpu_bytes),
            }
            for s in samples
        ],
        "ranks": [ranks[g] for g in sorted(ranks)],
    }


def _mib(n: int | None) -> float | None:
    return None if n is None else round(n / 2**20, 6)


@router.get("/{run_id}/processes", summary="The run's live process tree")
def run_processes_view(request: Request, run_id: str) -> dict[str, Any]:
    ctx = get_ctx(request)
    rec = find_run(ctx, run_id)
    snap = ctx.monitor.snapshot()
    if rec.ended_at is not None and snap.get("taken_at", 0) < rec.ended_at:
        ctx.monitor.invalidate()  # taken while the run was live: the next poll is fresh
    for run in snap.get("runs", []):
        if run.get("id") == rec.id:
            return {"run": run, "host": snap.get("host"), "taken_at": snap.get("taken_at")}
    return {"run": None, "host": snap.get("host"), "taken_at": snap.get("taken_at")}
