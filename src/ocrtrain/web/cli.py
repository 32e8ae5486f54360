"""`ocrtrain ui`: serve the web UI. The web stack is imported only when the command runs."""

from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path
from typing import Any

from ocrtrain.procman import UsageError

log = logging.getLogger(__name__)

TOKEN_ENV = "OCRTRAIN_UI_TOKEN"


def register(subparsers: Any) -> None:
    """Add `ocrtrain ui` to the `ocrtrain` parser."""
    p = subparsers.add_parser(
        "ui",
        help="web UI: build a training command, launch/stop runs, live logs, processes",
        description=(
            "Serve the web UI. It owns no process: runs are started detached under the "
            "supervisor, so stopping or crashing the UI never stops or orphans a run."
        ),
    )
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default: 127.0.0.1)")
    p.add_argument("--port", type=int, default=8765, help="port (default: 8765; 0: any free)")
    p.add_argument(
        "--token",
        default=None,
        help=f"access token (default: ${TOKEN_ENV}, else generated when --host is not loopback)",
    )
    p.add_argument("--config-dir", type=Path, default=None, help="Hydra config folder")
    p.add_argument("--train-script", type=Path, default=None, help="the trainer script")
    p.add_argument(
        "--grace", type=float, default=None, help="grace of launched runs in seconds (default 30)"
    )
    p.set_defaults(func=run_ui)


def run_ui(args: argparse.Namespace) -> int:
    from ocrtrain.web.security import is_loopback, new_token

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    if args.grace is not None and args.grace < 0:
        raise UsageError(f"--grace must be non-negative, got {args.grace}")
    token: str | None = args.token or os.environ.get(TOKEN_ENV) or None
    loopback = is_loopback(args.host)
    generated = False
    if token is None and not loopback:
        token, generated = new_token(), True

    import uvicorn

    from ocrtrain.web.app import WebSettings, create_app

    kwargs: dict[str, Any] = {"host": args.host, "token": token}
    if args.config_dir is not None:
        kwargs["config_dir"] = args.config_dir
    if args.train_script is not None:
        kwargs["train_script"] = args.train_script
    if args.grace is not None:
        kwargs["grace"] = args.grace
    app = create_app(WebSettings(**kwargs))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/"
    if token is not None:
        if generated:
            print(f"access token (shown once): {token}", flush=True)
        print(f"ocrtrain UI: {url}?token={token}", flush=True)
    else:
        print(f"ocrtrain UI: {url}", flush=True)
    # Open log streams must not hold a Ctrl+C'd server: runs do not depend on it anyway.
    uvicorn.run(
        app,
        host=args.host,
        port=args.port,
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=3,
    )
    return 0
