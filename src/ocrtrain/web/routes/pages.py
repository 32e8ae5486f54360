"""The single page (`/`), which also hands the browser its CSRF cookie."""

from __future__ import annotations

import secrets

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, Response

from ocrtrain.web.context import STATIC_DIR
from ocrtrain.web.security import CSRF_COOKIE

router = APIRouter(include_in_schema=False)


@router.get("/", response_class=HTMLResponse)
def index(request: Request) -> Response:
    html = (STATIC_DIR / "index.html").read_text(encoding="utf-8")
    resp = HTMLResponse(html, headers={"Cache-Control": "no-store"})
    if not request.cookies.get(CSRF_COOKIE):
        # Readable by the page's script (double submit), never sent cross-site.
        resp.set_cookie(CSRF_COOKIE, secrets.token_urlsafe(16), samesite="strict", path="/")
    return resp


@router.get("/favicon.ico")
def favicon() -> Response:
    return Response(status_code=204)
