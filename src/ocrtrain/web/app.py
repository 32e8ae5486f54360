"""The web UI's application factory.

The server owns no process: runs are started detached through the supervisor and everything
the UI shows comes from the journal, the run's files and `/proc`. Killing or restarting the
server therefore never touches a run, and a new server shows (and controls) every run again.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from fastapi import FastAPI, Request

import ocrtrain
from ocrtrain.procman.journal import Journal
from ocrtrain.procman.reconcile import reconcile
from ocrtrain.web.hydra_form import ConfigTree
from ocrtrain.web.monitor_bridge import MonitorBridge
from ocrtrain.web.security import SecurityMiddleware, is_loopback

log = logging.getLogger(__name__)

CONFIG_DIR_ENV = "OCRTRAIN_CONFIG_DIR"
TRAIN_SCRIPT_ENV = "OCRTRAIN_TRAIN_SCRIPT"
DEFAULT_GRACE_S = 30.0
RECONCILE_EVERY_S = 5.0
STATIC_DIR = Path(__file__).resolve().parent / "static"


def _repo_root() -> Path:
    """The checkout holding `configs/` and `runners/` (an editable install's src/..)."""
    return Path(ocrtrain.__file__).resolve().parents[2]


def default_config_dir() -> Path:
    """`$OCRTRAIN_CONFIG_DIR`, else the configs the package ships (the checkout's configs/)."""
    env = os.environ.get(CONFIG_DIR_ENV)
    if env:
        return Path(env).expanduser()
    return Path(ocrtrain.__file__).resolve().parent / "configs"


def default_train_script() -> Path:
    env = os.environ.get(TRAIN_SCRIPT_ENV)
    if env:
        return Path(env).expanduser()
    for base in (_repo_root(), Path.cwd()):
        if (base / "runners" / "train.py").is_file():
            return base / "runners" / "train.py"
    return _repo_root() / "runners" / "train.py"


@dataclass
class WebSettings:
    """What a UI server serves. Paths default to the checkout's `configs/`, `runners/train.py`.

    Attributes:
        home: `$OCRTRAIN_HOME` override (the journal's folder).
        config_dir: the Hydra config tree the form is generated from.
        train_script: the only program the UI launches (`python SCRIPT overrides...`).
        python: the interpreter that runs it.
        run_cwd: working directory of launched runs (relative output paths land there).
        host: the address the server binds to; beyond loopback a token is mandatory.
        token: the access token (None: no token check; only allowed on loopback).
        grace: seconds between SIGTERM and SIGKILL when a run launched here is stopped.
    """

    home: Path | None = None
    config_dir: Path = field(default_factory=default_config_dir)
    train_script: Path = field(default_factory=default_train_script)
    python: str = sys.executable
    run_cwd: Path = field(default_factory=Path.cwd)
    host: str = "127.0.0.1"
    token: str | None = None
    grace: float = DEFAULT_GRACE_S

    def __post_init__(self) -> None:
        if self.token is None and not is_loopback(self.host):
            raise ValueError(f"binding to {self.host} requires a token")
        self.config_dir = Path(self.config_dir).resolve()
        self.train_script = Path(self.train_script).resolve()
        self.run_cwd = Path(self.run_cwd).resolve()


class WebContext:
    """Per-app state shared by the routes (all of it recomputable from disk)."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.journal = Journal(settings.home)
        self.tree = ConfigTree(settings.config_dir)
        self.monitor = MonitorBridge(self.journal)
        self.started_at = time.time()
        self._reconcile_lock = threading.Lock()
        self._reconciled_at = 0.0

    def reconcile(self, force: bool = False) -> None:
        """Close runs whose supervisor and watchdog are gone (throttled)."""
        now = time.monotonic()
        if not force and now - self._reconciled_at < RECONCILE_EVERY_S:
            return
        if not self._reconcile_lock.acquire(blocking=False):
            return
        try:
            self._reconciled_at = now
            for run in reconcile(self.journal):
                log.warning("run %s had lost its supervisor; marked lost", run.id)
        finally:
            self._reconcile_lock.release()


def get_ctx(request: Request) -> WebContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, WebContext)
    return ctx


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
