"""What the web UI's routes share: its settings, the per-app context and where its page lives.

A module of its own so that the routes and the app factory both import it, and the routes
never import the app that includes them.
"""

from __future__ import annotations

import json
import logging
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import Request

import ocrtrain
from ocrtrain.procman import CONFIG_DIR_ENV, TRAIN_SCRIPT_ENV, Journal, RunRecord, reconcile
from ocrtrain.web.hydra_form import ConfigTree
from ocrtrain.web.monitor_bridge import MonitorBridge
from ocrtrain.web.security import is_loopback

log = logging.getLogger(__name__)

DEFAULT_GRACE_S = 30.0
DEFAULT_MAX_RUNS = 2
RECONCILE_EVERY_S = 5.0
MAX_RESUMABLE_RUNS = 1000  # newest runs whose checkpoints `resume=PATH` may name
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


PACKAGED_TRAINER = ("-m", "ocrtrain.train")  # what a wheel install launches


def default_train_script() -> Path | None:
    """`$OCRTRAIN_TRAIN_SCRIPT`, else the checkout's `runners/train.py`, else None: the
    trainer the package ships (`python -m ocrtrain.train`; a wheel has no runners/)."""
    env = os.environ.get(TRAIN_SCRIPT_ENV)
    if env:
        return Path(env).expanduser()
    for base in (_repo_root(), Path.cwd()):
        if (base / "runners" / "train.py").is_file():
            return base / "runners" / "train.py"
    return None


@dataclass
class WebSettings:
    """What a UI server serves. Paths default to the checkout's `configs/`, `runners/train.py`.

    Attributes:
        home: `$OCRTRAIN_HOME` override (the journal's folder).
        config_dir: the Hydra config tree the form is generated from.
        train_script: the only program the UI launches (`python SCRIPT overrides...`); None:
            the packaged trainer (`python -m ocrtrain.train overrides...`).
        python: the interpreter that runs it.
        run_cwd: working directory of launched runs (relative output paths land there).
        host: the address the server binds to; beyond loopback a token is mandatory.
        token: the access token (None: no token check; only allowed on loopback).
        grace: seconds between SIGTERM and SIGKILL when a run launched here is stopped.
        max_runs: most runs of the journal active at once; launches beyond are refused.
    """

    home: Path | None = None
    config_dir: Path = field(default_factory=default_config_dir)
    train_script: Path | None = field(default_factory=default_train_script)
    python: str = sys.executable
    run_cwd: Path = field(default_factory=Path.cwd)
    host: str = "127.0.0.1"
    token: str | None = None
    grace: float = DEFAULT_GRACE_S
    max_runs: int = DEFAULT_MAX_RUNS

    def __post_init__(self) -> None:
        if self.token is None and not is_loopback(self.host):
            raise ValueError(f"binding to {self.host} requires a token")
        self.config_dir = Path(self.config_dir).resolve()
        if self.train_script is not None:
            self.train_script = Path(self.train_script).resolve()
        self.run_cwd = Path(self.run_cwd).resolve()

    def train_argv(self) -> list[str]:
        """The command every launch starts, before its overrides."""
        if self.train_script is None:
            return [self.python, *PACKAGED_TRAINER]
        return [self.python, str(self.train_script)]

    def trainer_missing(self) -> str | None:
        """Why no run can be launched (the configured script is gone), or None."""
        script = self.train_script
        if script is not None and not script.is_file():
            return f"the trainer {script} does not exist"
        return None


class WebContext:
    """Per-app state shared by the routes (all of it recomputable from disk)."""

    def __init__(self, settings: WebSettings) -> None:
        self.settings = settings
        self.journal = Journal(settings.home)
        self.tree = ConfigTree(settings.config_dir, settings.run_cwd, self.checkpoint_dirs)
        self.monitor = MonitorBridge(self.journal)
        self.started_at = time.time()
        self._reconcile_lock = threading.Lock()
        self.launch_lock = threading.Lock()  # the active-run count and a start, as one step
        self._reconciled_at = 0.0

    def checkpoint_dirs(self) -> list[Path]:
        """The checkpoint folders the journal's runs wrote (what `resume=PATH` may name)."""
        out = []
        for rec in self.journal.list_runs(limit=MAX_RESUMABLE_RUNS):
            art = read_artifacts(rec)
            if art is not None and isinstance(art.get("checkpoints"), str):
                out.append(Path(art["checkpoints"]))
        return out

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


def read_artifacts(rec: RunRecord) -> dict[str, Any] | None:
    """The run's `artifacts.json` (where its trainer wrote outputs), None if absent or bad."""
    path = Path(rec.run_dir) / "artifacts.json"
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def get_ctx(request: Request) -> WebContext:
    ctx = request.app.state.ctx
    assert isinstance(ctx, WebContext)
    return ctx
