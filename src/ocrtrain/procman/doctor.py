"""`ocrtrain doctor`: which teardown tiers are active on this machine, and why."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from ocrtrain.procman import cgroup
from ocrtrain.procman.home import state_home


def _probe_in_child(code: str) -> bool:
    """Run a probe in a throwaway interpreter (prctl changes must not stick to us)."""
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return out.stdout.strip() == "yes"


def check() -> dict[str, Any]:
    """Probe each tier; a JSON-ready report."""
    linux = sys.platform.startswith("linux")
    tiers: list[dict[str, Any]] = []

    def add(name: str, active: bool, detail: str, required: bool = False) -> None:
        tiers.append({"name": name, "active": active, "detail": detail, "required": required})

    add(
        "session",
        hasattr(os, "setsid"),
        "each run's command leads its own session and process group",
        required=True,
    )
    add("run-id tag", True, "every descendant carries OCRTRAIN_RUN_ID in its environment", True)
    sub = linux and _probe_in_child(
        "from ocrtrain.procman.lifeline import become_subreaper as b, is_subreaper as i;"
        "print('yes' if b() and i() else 'no')"
    )
    add(
        "subreaper",
        sub,
        "orphans re-parent to the supervisor, which reaps them"
        if sub
        else "PR_SET_CHILD_SUBREAPER unavailable: orphans re-parent to init",
    )
    add(
        "pdeathsig",
        linux,
        "the command is SIGKILLed if its supervisor dies"
        if linux
        else "no parent-death signal on this OS",
    )
    pidfd = hasattr(os, "pidfd_open") and _probe_in_child(
        "import os; fd = os.pidfd_open(os.getpid()); print('yes')"
    )
    add(
        "pidfd",
        pidfd,
        "signals go through pidfds: a reused pid is never hit"
        if pidfd
        else "no pidfd: start times are checked right before each signal",
    )
    ok, why = cgroup.probe() if linux else (False, "cgroups are Linux-only")
    add("cgroup v2", ok, why)
    add("watchdog", True, "a process in its own session ends the run if the supervisor is killed")
    return {"platform": sys.platform, "home": str(state_home()), "tiers": tiers}
