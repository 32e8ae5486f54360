"""`ocrtrain ui`: serve the web UI. The web stack is imported only when the command runs."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import Any

from ocrtrain.procman import UsageError

log = logging.getLogger(__name__)

TOKEN_ENV = "OCRTRAIN_UI_TOKEN"
TOKEN_FILE = "ui-token"
CPU_MAX_RUNS = 2


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
        "--token-file",
        type=Path,
        default=None,
        help=(
            "read the access token from this file (default: $OCRTRAIN_UI_TOKEN, else a new "
            f"token each start, saved to $OCRTRAIN_HOME/{TOKEN_FILE} with mode 0600)"
        ),
    )
    p.add_argument(
        "--no-token",
        action="store_true",
        help=(
            "serve without a token, on loopback only: every user of this machine can then "
            "launch runs as you. Only for a machine you alone use"
        ),
    )
    p.add_argument(
        "--max-runs",
        type=int,
        default=None,
        help="most runs active at once; more launches are refused (default: GPUs, or 2)",
    )
    p.add_argument("--config-dir", type=Path, default=None, help="Hydra config folder")
    p.add_argument("--train-script", type=Path, default=None, help="the trainer script")
    p.add_argument(
        "--grace", type=float, default=None, help="grace of launched runs in seconds (default 30)"
    )
    p.set_defaults(func=run_ui)


def _default_max_runs() -> int:
    from ocrtrain.monitor import gpu

    reading = gpu.read()
    return len(reading.devices) if reading is not None and reading.devices else CPU_MAX_RUNS


def read_token_file(path: Path) -> str:
    """The token in `path` (one line).

    Raises:
        UsageError: unreadable, empty, or not printable ASCII.
    """
    try:
        token = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"--token-file {path}: cannot read it ({exc})") from None
    if not token or not token.isascii() or not token.isprintable() or " " in token:
        raise UsageError(f"--token-file {path}: expected one token of printable ASCII")
    if path.stat().st_mode & 0o077:
        log.warning("%s is readable by other users: chmod 600 it", path)
    return token


def save_token(token: str) -> Path:
    """Write `token` to `$OCRTRAIN_HOME/ui-token`: mode 0600 from creation, replaced
    atomically (never a moment with a readable or half-written file)."""
    from ocrtrain.procman import ensure_home

    path = ensure_home() / TOKEN_FILE
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    os.replace(tmp, path)
    return path


def _resolve_token(args: argparse.Namespace, loopback: bool) -> tuple[str | None, Path | None]:
    """The token and the file it came from or went to (None, None: --no-token)."""
    from ocrtrain.web.security import new_token

    if args.no_token:
        if args.token_file is not None:
            raise UsageError("--no-token and --token-file exclude each other")
        if not loopback:
            raise UsageError(f"--no-token is for loopback only; {args.host} needs a token")
        return None, None
    if args.token_file is not None:
        return read_token_file(args.token_file), args.token_file
    env = os.environ.get(TOKEN_ENV)
    if env:
        return env, None
    token = new_token()
    return token, save_token(token)


def run_ui(args: argparse.Namespace) -> int:
    from ocrtrain.web.security import is_loopback

    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port must be 0..65535, got {args.port}")
    if args.grace is not None and args.grace < 0:
        raise UsageError(f"--grace must be non-negative, got {args.grace}")
    if args.max_runs is not None and args.max_runs < 1:
        raise UsageError(f"--max-runs must be at least 1, got {args.max_runs}")
    loopback = is_loopback(args.host)
    token, token_path = _resolve_token(args, loopback)

    import uvicorn

    from ocrtrain.web.app import WebSettings, create_app

    kwargs: dict[str, Any] = {"host": args.host, "token": token}
    if args.config_dir is not None:
        kwargs["config_dir"] = args.config_dir
    if args.train_script is not None:
        kwargs["train_script"] = args.train_script
    if args.grace is not None:
        kwargs["grace"] = args.grace
    kwargs["max_runs"] = args.max_runs if args.max_runs is not None else _default_max_runs()
    app = create_app(WebSettings(**kwargs))
    shown = f"[{args.host}]" if ":" in args.host else args.host
    url = f"http://{shown}:{args.port}/"
    if token is None:
        print(
            "WARNING: --no-token: anyone who can connect to this port, every local user "
            "included, can launch and stop runs as you. Use it only on a machine you alone use.",
            file=sys.stderr,
            flush=True,
        )
        print(f"ocrtrain UI: {url}", flush=True)
    elif args.token_file is not None or token_path is None:
        print(f"ocrtrain UI: {url}?token=<your token> (the token is not shown)", flush=True)
    else:
        print(f"ocrtrain UI: {url}?token={token}", flush=True)
        print(f"(token saved in {token_path}, mode 0600; a new one each start)", flush=True)
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
