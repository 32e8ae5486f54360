"""/api/runs/{id}/samples: what the model read at each validation (the trainer's
`ValidationSamples`: a fixed sample of validation lines, worst first), and their images."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from fastapi.responses import FileResponse

from ocrtrain.web.context import get_ctx, read_artifacts
from ocrtrain.web.routes.runs import find_run

router = APIRouter(prefix="/api/runs", tags=["samples"])

STEP_FILE_RE = re.compile(r"^step_(\d+)\.json$")
IMAGE_RE = re.compile(r"^\d{1,4}\.png$")


def samples_dir(request: Request, run_id: str) -> tuple[str, Path | None]:
    """(the run's id, its samples folder: `<output_dir>/samples`, or None)."""
    rec = find_run(get_ctx(request), run_id)
    art = read_artifacts(rec)
    out = art.get("output_dir") if art else None
    return rec.id, Path(str(out)) / "samples" if out else None


def saved_steps(folder: Path | None) -> list[int]:
    if folder is None or not folder.is_dir():
        return []
    return sorted(int(m[1]) for p in folder.iterdir() if (m := STEP_FILE_RE.match(p.name)))


@router.get("/{run_id}/samples", summary="What the model read at a validation step")
def run_samples(
    request: Request,
    run_id: str,
    step: Annotated[
        int | None, Query(ge=0, description="a saved step (default: the latest)")
    ] = None,
) -> dict[str, Any]:
    """`steps`: the validation steps with samples; `lines`: at `step`, each line's `truth`,
    `reading`, `cer` and `image` (a URL), worst first."""
    rid, folder = samples_dir(request, run_id)
    steps = saved_steps(folder)
    if not steps or folder is None:
        if step is not None:
            raise HTTPException(404, f"run {rid} has no samples at step {step}")
        return {"steps": [], "step": None, "lines": []}
    chosen = steps[-1] if step is None else step
    if chosen not in steps:
        raise HTTPException(404, f"run {rid} has no samples at step {chosen}; it has {steps}")
    try:
        doc = json.loads((folder / f"step_{chosen}.json").read_text())
    except (OSError, ValueError):
        raise HTTPException(404, f"the samples of step {chosen} cannot be read") from None
    lines = []
    for line in doc.get("lines", []):
        name = Path(str(line.get("image", ""))).name
        lines.append({**line, "image": f"/api/runs/{rid}/samples/{chosen}/{name}"})
    return {"steps": steps, "step": chosen, "epoch": doc.get("epoch"), "lines": lines}


@router.get(
    "/{run_id}/samples/{step}/{name}",
    summary="One sample line's image (PNG)",
    response_class=FileResponse,
)
def sample_image(request: Request, run_id: str, step: int, name: str) -> FileResponse:
    rid, folder = samples_dir(request, run_id)
    path = folder / f"step_{step}" / name if folder is not None else None
    if path is None or not IMAGE_RE.match(name) or not path.is_file():
        raise HTTPException(404, f"run {rid} has no sample image {step}/{name}")
    return FileResponse(path, media_type="image/png")
