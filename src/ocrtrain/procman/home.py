"""Where ocrtrain keeps its state: `$OCRTRAIN_HOME`, or a per-user state directory."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from ocrtrain.procman.envnames import HOME_ENV
from ocrtrain.procman.errors import HomeError

__all__ = ["HOME_ENV", "ensure_home", "network_filesystem", "runs_dir", "state_home"]

# Filesystems whose locking SQLite's WAL mode cannot trust: the journal's shared memory and
# POSIX locks are per host there, so two hosts (or a server restart) corrupt it silently.
NETWORK_FS_TYPES = frozenset(
    {
        "nfs", "nfs4", "cifs", "smb3", "smbfs", "9p", "afs", "ceph", "lustre", "gpfs",
        "beegfs", "glusterfs", "ocfs2", "gfs2", "pvfs2", "orangefs",
        "fuse.sshfs", "fuse.glusterfs", "fuse.ceph", "fuse.s3fs", "fuse.gcsfuse",
        "fuse.rclone", "fuse.juicefs", "fuse.weka", "davfs", "fuse.davfs2",
    }
)  # fmt: skip


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
    fstype = network_filesystem(home)
    if fstype is not None:
        raise HomeError(
            f"{HOME_ENV}={home} is on a network filesystem ({fstype}), where the journal's "
            "SQLite WAL is unsafe; point it at a local disk (each node keeps its own)"
        )
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


def _unescape(field: str) -> str:
    """Undo mountinfo's octal escapes (`\\040` for a space)."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def network_filesystem(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the network filesystem holding `path`, or None when it is local.

    `mountinfo` is the text of /proc/self/mountinfo (read when None); the mount whose mount
    point is the longest prefix of the path (symbolic links resolved) decides.
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text()
        except OSError:
            return None
    target = os.path.realpath(path)
    best, best_type = "", ""
    for line in mountinfo.splitlines():
        left, sep, right = line.partition(" - ")
        fields = left.split()
        if not sep or len(fields) < 5 or not right:
            continue
        point = _unescape(fields[4])
        inside = target == point or target.startswith(point.rstrip("/") + "/")
        if inside and len(point) >= len(best):
            best, best_type = point, right.split()[0]
    return best_type if best_type in NETWORK_FS_TYPES else None
