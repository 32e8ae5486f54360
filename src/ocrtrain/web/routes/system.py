"""Health, the machine-wide process snapshot and orphan cleanup."""

from __future__ import annotations

import logging
import time
from typing import Any

from fastapi import APIRouter, HTTPException, Request
from pydantic import BaseModel, Field

import ocrtrain
from ocrtrain.procman import UsageError
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
        "train_script": " ".join(s.train_argv()[1:]),
        "train_script_ok": s.trainer_missing() is None,
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
