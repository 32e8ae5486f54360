"""The web UI's application factory.

The server owns no process: runs are started detached through the supervisor and everything
the UI shows comes from the journal, the run's files and `/proc`. Killing or restarting the
server therefore never touches a run, and a new server shows (and controls) every run again.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request

import ocrtrain
from ocrtrain.web.context import STATIC_DIR, WebContext, WebSettings
from ocrtrain.web.security import SecurityMiddleware, is_loopback

__all__ = ["WebSettings", "create_app"]

log = logging.getLogger(__name__)


def _add_offline_docs(app: FastAPI) -> None:
    """OpenAPI docs at /docs with Swagger UI's assets vendored in static/swagger (FastAPI's
    default loads them from a CDN, which a machine without internet cannot reach)."""
    from fastapi.openapi.docs import get_swagger_ui_html
    from fastapi.responses import HTMLResponse

    @app.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title="ocrtrain API",
            swagger_js_url="/static/swagger/swagger-ui-bundle.js",
            swagger_css_url="/static/swagger/swagger-ui.css",
            swagger_favicon_url="/static/swagger/favicon-32x32.png",
        )


def _add_validation_handler(app: FastAPI) -> None:
    """422 for any invalid request, whatever it held: FastAPI's own handler echoes the input,
    and an input such as 1e999 (inf) then fails to render as JSON (a 500)."""
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [
            {"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)


def create_app(settings: WebSettings | None = None) -> FastAPI:
    """Build the FastAPI app (API under /api, docs at /docs, page at /, metrics at /metrics)."""
    from fastapi.staticfiles import StaticFiles

    from ocrtrain.web.routes import checkpoints, metrics, pages, runs, samples, system
    from ocrtrain.web.routes import config as config_routes

    settings = settings or WebSettings()
    ctx = WebContext(settings)
    app = FastAPI(
        title="ocrtrain",
        version=getattr(ocrtrain, "__version__", "0.1.0"),
        description="Launch, watch and stop supervised OCR training runs.",
        docs_url=None,  # served below from local assets: the UI must work offline
    )
    app.state.ctx = ctx
    app.include_router(system.router)
    app.include_router(runs.router)
    app.include_router(checkpoints.router)
    app.include_router(metrics.router)
    app.include_router(samples.router)
    app.include_router(config_routes.router)
    app.include_router(pages.router)
    _add_offline_docs(app)
    _add_validation_handler(app)
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    app.add_middleware(
        SecurityMiddleware, token=settings.token, loopback=is_loopback(settings.host)
    )
    ctx.reconcile(force=True)
    for hint in ctx.monitor.startup_hints():
        log.warning("%s", hint)
    if not ctx.tree.exists:
        log.warning("no train.yaml in %s: the command builder is disabled", settings.config_dir)
    return app
