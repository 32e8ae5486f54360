"""/api/config: the command builder's form schema and server-side validation."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel, Field

from ocrtrain.web.context import get_ctx
from ocrtrain.web.hydra_form import OverrideError, command_text

router = APIRouter(prefix="/api/config", tags=["config"])


class ValidateRequest(BaseModel):
    overrides: list[str] = Field(default_factory=list, description="Hydra overrides")


@router.get("/schema", summary="The form generated from the Hydra config")
def schema(
    request: Request,
    choice: Annotated[list[str] | None, Query(description="group choices: debug=smoke")] = None,
) -> dict[str, Any]:
    ctx = get_ctx(request)
    if not ctx.tree.exists:
        raise HTTPException(503, f"no train.yaml in {ctx.settings.config_dir}")
    try:
        out = ctx.tree.schema(choice or [])
    except OverrideError as exc:
        raise HTTPException(422, str(exc)) from None
    out["argv_prefix"] = ctx.settings.train_argv()
    return out


@router.post("/validate", summary="Compose the config with these overrides (no launch)")
def validate(request: Request, body: ValidateRequest) -> dict[str, Any]:
    """The exact argv a launch would run, or 422 with Hydra's message."""
    ctx = get_ctx(request)
    if not ctx.tree.exists:
        raise HTTPException(503, f"no train.yaml in {ctx.settings.config_dir}")
    try:
        composed = ctx.tree.compose(body.overrides)
    except OverrideError as exc:
        raise HTTPException(422, str(exc)) from None
    argv = [*ctx.settings.train_argv(), *composed.overrides]
    return {"ok": True, "argv": argv, "command": command_text(argv)}
