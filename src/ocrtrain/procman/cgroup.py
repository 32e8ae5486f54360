"""Per-run cgroup v2 (where one is writable): membership the kernel keeps for us, and an atomic
`cgroup.kill` that also catches processes forked while we tear down.

Where no writable cgroup v2 exists (no mount, a read-only one, no delegation) the run simply
has no cgroup; the other tiers still find and end every process.
"""

from __future__ import annotations

import errno
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from ocrtrain.procman.envnames import CGROUP_ROOT_ENV, NO_CGROUP_ENV

log = logging.getLogger(__name__)


class CgroupUnavailable(Exception):
    """No writable cgroup v2 here; the message says why."""


def cgroup2_mount() -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (unified or hybrid layout), if anywhere."""
    try:
        with open("/proc/self/mounts") as f:
            for line in f:
                parts = line.split()
                if len(parts) >= 3 and parts[2] == "cgroup2":
                    return Path(parts[1])
    except OSError:
        pass
    return None


def own_cgroup() -> str | None:
    """This process's cgroup v2 path relative to the mount (the `0::` line), if any."""
    try:
        with open("/proc/self/cgroup") as f:
            for line in f:
                if line.startswith("0::"):
                    return line[3:].strip()
    except OSError:
        pass
    return None


def parent_dir() -> Path:
    """The folder under which run cgroups are created: `$OCRTRAIN_CGROUP_ROOT`, else an
    `ocrtrain` folder below this process's own cgroup (works with systemd delegation).

    Raises:
        CgroupUnavailable: no cgroup v2 mount, or disabled by `OCRTRAIN_NO_CGROUP=1`.
    """
    if os.environ.get(NO_CGROUP_ENV) == "1":
        raise CgroupUnavailable(f"disabled by {NO_CGROUP_ENV}=1")
    explicit = os.environ.get(CGROUP_ROOT_ENV)
    if explicit:
        return Path(explicit)
    mount = cgroup2_mount()
    if mount is None:
        raise CgroupUnavailable("no cgroup v2 hierarchy is mounted")
    own = own_cgroup()
    if own is None:
        raise CgroupUnavailable("this process is not in a cgroup v2 hierarchy")
    return mount / own.lstrip("/") / "ocrtrain"


@dataclass(frozen=True)
class RunCgroup:
    """The cgroup that holds every process of one run."""

    path: Path

    @classmethod
    def create(cls, run_id: str) -> RunCgroup:
        """Create the run's cgroup.

        Raises:
            CgroupUnavailable: it cannot be created or has no `cgroup.kill` (kernel < 5.14).
        """
        base = parent_dir()
        path = base / run_id
        try:
            path.mkdir(parents=True, exist_ok=False)
        except OSError as exc:
            raise CgroupUnavailable(f"cannot create {path}: {exc.strerror}") from None
        if not (path / "cgroup.kill").exists():
            cls(path).remove()
            raise CgroupUnavailable("the kernel has no cgroup.kill (Linux < 5.14)")
        return cls(path)

    def add_self(self) -> None:
        """Move the calling process into the cgroup (used in the child before exec)."""
        with open(self.path / "cgroup.procs", "w") as f:
            f.write("0")

    def add(self, pid: int) -> None:
        with open(self.path / "cgroup.procs", "w") as f:
            f.write(str(pid))

    def pids(self) -> list[int]:
        """Processes in the cgroup and its sub-groups now ([] once it is gone)."""
        out: list[int] = []
        for folder, _dirs, _files in os.walk(self.path):
            try:
                with open(os.path.join(folder, "cgroup.procs")) as f:
                    out.extend(int(x) for x in f.read().split())
            except (OSError, ValueError):
                continue
        return out

    def is_populated(self) -> bool:
        try:
            with open(self.path / "cgroup.events") as f:
                for line in f:
                    if line.startswith("populated "):
                        return line.split()[1] == "1"
        except OSError:
            return False
        return bool(self.pids())

    def kill(self) -> bool:
        """SIGKILL every process in the cgroup at once, forks in flight included."""
        try:
            with open(self.path / "cgroup.kill", "w") as f:
                f.write("1")
            return True
        except OSError as exc:
            if exc.errno != errno.ENOENT:
                log.warning("cgroup.kill on %s failed: %s", self.path, exc.strerror)
            return False

    def remove(self) -> bool:
        """Remove the (empty) cgroup; False while processes remain in it."""
        try:
            self.path.rmdir()
            return True
        except FileNotFoundError:
            return True
        except OSError:
            return False


def probe() -> tuple[bool, str]:
    """Whether run cgroups can be created here, and why (or why not)."""
    try:
        base = parent_dir()
        probe_cg = RunCgroup.create(f"probe-{os.getpid()}-{os.urandom(2).hex()}")
    except CgroupUnavailable as exc:
        return False, str(exc)
    probe_cg.remove()
    return True, f"writable cgroup v2 at {base}"
