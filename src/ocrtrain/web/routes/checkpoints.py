"""/api/runs/{id}/checkpoints: a run's checkpoints (step, score, size), their download, and
reading a line image with one of them.

The list comes from the checkpoint folder the trainer named in the run's artifacts.json and
the JSON record written beside each checkpoint; no torch file is opened by the server.
Reading an image runs `ocrtrain predict` as a child with a deadline (the server itself never
loads torch), and the child is gone when the request returns.
"""

from __future__ import annotations

import json
import logging
import re
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import anyio
from fastapi import APIRouter, HTTPException, Request
from fastapi.responses import FileResponse
from pydantic import BaseModel, Field

from ocrtrain.procman import RunSpec
from ocrtrain.web.context import get_ctx, read_artifacts
from ocrtrain.web.routes.runs import NAME_RE, find_run, run_summary, start_run

log = logging.getLogger(__name__)

router = APIRouter(prefix="/api/runs", tags=["checkpoints"])

CKPT_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.=\-]{0,120}\.ckpt$")
MAX_IMAGE_BYTES = 8 * 1024 * 1024
PREDICT_TIMEOUT_S = 120.0
IMAGE_TYPES = {"image/png": ".png", "image/jpeg": ".jpg", "image/webp": ".webp"}
MAX_SYNTH_LINES = 5000


class EvaluateRequest(BaseModel):
    data: str | None = Field(
        default=None, description="a folder on the server holding labels.tsv and its images"
    )
    synth: int | None = Field(
        default=None,
        ge=1,
        le=MAX_SYNTH_LINES,
        description="or: this many fresh synthetic lines in held-out fonts",
    )


def checkpoint_dir(request: Request, run_id: str) -> Path | None:
    """The run's checkpoint folder as its trainer reported it, or None."""
    rec = find_run(get_ctx(request), run_id)
    art = read_artifacts(rec)
    folder = art.get("checkpoints") if art else None
    return Path(str(folder)) if folder else None


def _record(ckpt: Path) -> dict[str, Any]:
    try:
        doc = json.loads(ckpt.with_name(ckpt.name + ".json").read_text())
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def describe(ckpt: Path) -> dict[str, Any]:
    """One checkpoint: where, how big, at which step and with which validation scores."""
    st = ckpt.stat()
    rec = _record(ckpt)
    saved = rec.get("metrics")
    metrics: dict[str, Any] = saved if isinstance(saved, dict) else {}
    monitor = rec.get("monitor")
    return {
        "name": ckpt.name,
        "path": str(ckpt),
        "size": st.st_size,
        "modified_at": st.st_mtime,
        "step": rec.get("step"),
        "epoch": rec.get("epoch"),
        "monitor": monitor,
        "score": metrics.get(monitor or "val/cer"),
        "metrics": metrics,
    }


def _named(request: Request, run_id: str, name: str) -> Path:
    folder = checkpoint_dir(request, run_id)
    if not CKPT_NAME_RE.match(name) or folder is None:
        raise HTTPException(404, f"run {run_id} has no checkpoint {name!r}")
    path = folder / name
    if not path.is_file():
        raise HTTPException(404, f"run {run_id} has no checkpoint {name!r}")
    return path


@router.get("/{run_id}/checkpoints", summary="The run's checkpoints: path, size, step, score")
def list_checkpoints(request: Request, run_id: str) -> dict[str, Any]:
    """`best.ckpt` (lowest `val/cer`) first, then `last.ckpt`; `score` is the checkpoint's
    monitored metric (`val/cer` of its latest validation for `last.ckpt`)."""
    folder = checkpoint_dir(request, run_id)
    found = sorted(folder.glob("*.ckpt")) if folder is not None and folder.is_dir() else []
    items = [describe(p) for p in found if CKPT_NAME_RE.match(p.name)]
    items.sort(key=lambda c: (c["monitor"] is None, c["name"]))
    return {"folder": str(folder) if folder else None, "checkpoints": items}


@router.get(
    "/{run_id}/checkpoints/{name}",
    summary="Download one checkpoint",
    response_class=FileResponse,
)
def download_checkpoint(request: Request, run_id: str, name: str) -> FileResponse:
    path = _named(request, run_id, name)
    rec = find_run(get_ctx(request), run_id)
    return FileResponse(
        path, media_type="application/octet-stream", filename=f"{rec.id}-{path.name}"
    )


@router.post(
    "/{run_id}/checkpoints/{name}/read",
    summary="Read the text of one line image (the request body: PNG, JPEG or WebP)",
)
async def read_image(request: Request, run_id: str, name: str) -> dict[str, Any]:
    path = _named(request, run_id, name)
    kind = (request.headers.get("content-type") or "").split(";")[0].strip().lower()
    if kind not in IMAGE_TYPES:
        raise HTTPException(415, f"send the image as {', '.join(IMAGE_TYPES)}, not {kind!r}")
    body = await request.body()
    if not body:
        raise HTTPException(422, "the request body holds no image")
    if len(body) > MAX_IMAGE_BYTES:
        raise HTTPException(413, f"images up to {MAX_IMAGE_BYTES // (1024 * 1024)} MiB")
    python = get_ctx(request).settings.python
    text = await anyio.to_thread.run_sync(_predict, python, path, body, IMAGE_TYPES[kind])
    return {"checkpoint": str(path), "text": text}


def _predict(python: str, ckpt: Path, image_bytes: bytes, suffix: str) -> str:
    """The text `ocrtrain predict` reads in the image (a child process, killed at the
    deadline by `subprocess.run`)."""
    with tempfile.TemporaryDirectory(prefix="ocrtrain-read-") as tmp:
        image = Path(tmp) / f"line{suffix}"
        image.write_bytes(image_bytes)
        argv = [python, "-m", "ocrtrain", "predict", "--ckpt", str(ckpt), str(image)]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                timeout=PREDICT_TIMEOUT_S,
                check=False,
                stdin=subprocess.DEVNULL,
            )
        except subprocess.TimeoutExpired:
            raise HTTPException(504, f"reading took over {PREDICT_TIMEOUT_S:.0f} s") from None
    if done.returncode != 0:
        lines = (done.stderr or done.stdout).strip().splitlines() or ["ocrtrain predict failed"]
        raise HTTPException(422 if done.returncode == 2 else 500, lines[-1])
    return done.stdout.rstrip("\n").split("\t", 1)[-1]


@router.post(
    "/{run_id}/checkpoints/{name}/evaluate",
    status_code=201,
    summary="Evaluate a checkpoint (CER, line accuracy) as a supervised run",
)
def evaluate_checkpoint(
    request: Request, run_id: str, name: str, body: EvaluateRequest
) -> dict[str, Any]:
    """Starts `ocrtrain eval --json` on a labels.tsv folder or on synthetic lines, detached
    under the supervisor like any run: its log ends with the scores as one JSON line."""
    path = _named(request, run_id, name)
    if (body.data is None) == (body.synth is None):
        raise HTTPException(422, "give either data (a labels.tsv folder) or synth (a line count)")
    if body.data is not None:
        folder = Path(body.data).expanduser()
        if not (folder / "labels.tsv").is_file():
            raise HTTPException(422, f"data: {folder} holds no labels.tsv")
        what = ["--data", str(folder.resolve())]
    else:
        what = ["--synth", str(body.synth)]
    ctx = get_ctx(request)
    rec = find_run(ctx, run_id)
    eval_name = f"eval-{rec.name}"[:64]
    spec = RunSpec(
        argv=(ctx.settings.python, "-m", "ocrtrain", "eval", "--ckpt", str(path), "--json", *what),
        name=eval_name if NAME_RE.match(eval_name) else "eval",
        grace=ctx.settings.grace,
        detach=True,
        cwd=str(ctx.settings.run_cwd),
    )
    started = start_run(ctx, spec)
    return {"id": started.id, "run": run_summary(ctx, started)}
