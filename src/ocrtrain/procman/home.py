"""Where ocrtrain keeps its state: `$OCRTRAIN_HOME`, or a per-user state directory."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from ocrtrain.procman.envnames import HOME_ENV
from ocrtrain.procman.errors import HomeError

__all__ = ["HOME_ENV", "ensure_home", "runs_dir", "state_home"]  # HOME_ENV: for the supervisor


def state_home() -> Path:
    """The state directory, without creating it: `$OCRTRAIN_HOME`, else the XDG state dir."""
    explicit = os.environ.get(HOME_ENV)
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return (base / "ocrtrain").absolute()


def ensure_home(path: Path | None = None) -> Path:
    """Create the state directory if needed and prove it is writable.

    Raises:
        HomeError: the directory cannot be created or written (a usage error: exit 2).
    """
    home = state_home() if path is None else path
    if home.exists() and not home.is_dir():
        raise HomeError(f"{HOME_ENV}={home} is not a directory")
    try:
        home.mkdir(parents=True, exist_ok=True)
        # Root passes os.access checks on read-only mounts: a real write is the only proof.
        with tempfile.NamedTemporaryFile(dir=home, prefix=".write-test-"):
            pass
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise HomeError(f"{HOME_ENV}={home} is not writable: {reason}") from None
    return home


def runs_dir(home: Path) -> Path:
    """The folder holding one sub-folder per run (logs, artifacts)."""
    return home / "runs"
