"""Kernel-level ties between processes: parent-death signals and child subreaping (Linux).

Both are best effort: on other systems (or old kernels) the functions return False and the
other tiers (sessions, run-id tags, the watchdog) still tear runs down.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import sys

log = logging.getLogger(__name__)

_PR_SET_PDEATHSIG = 1
_PR_SET_CHILD_SUBREAPER = 36
_PR_GET_CHILD_SUBREAPER = 37

_libc: ctypes.CDLL | None = None


def _prctl(option: int, arg: int) -> bool:
    global _libc
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        _libc = ctypes.CDLL(None, use_errno=True)
    return int(_libc.prctl(option, arg, 0, 0, 0)) == 0


def set_parent_death_signal(sig: int = signal.SIGKILL, expected_parent: int | None = None) -> bool:
    """Ask the kernel to send `sig` to this process when its parent thread exits.

    Call it first thing in a worker (e.g. a DataLoader `worker_init_fn`). If the parent already
    died before the call (the classic race), the signal is delivered at once, so the caller never
    outlives a parent it did not see die.

    Args:
        sig: the signal to receive; SIGKILL for workers that hold no state worth saving.
        expected_parent: the pid the caller believes is its parent (default: the current one).

    Returns:
        True when the tie is in place (Linux), False where the kernel has no such feature.
    """
    parent = os.getppid() if expected_parent is None else expected_parent
    if not _prctl(_PR_SET_PDEATHSIG, int(sig)):
        return False
    if os.getppid() != parent:
        # The parent died between fork and prctl: the kernel will not signal us for it.
        os.kill(os.getpid(), sig)
    return True


def become_subreaper() -> bool:
    """Make orphaned descendants re-parent to this process instead of init (Linux >= 3.4)."""
    ok = _prctl(_PR_SET_CHILD_SUBREAPER, 1)
    if not ok:
        log.warning("could not become a child subreaper; orphans re-parent to init")
    return ok


def is_subreaper() -> bool:
    """Whether this process is currently a child subreaper."""
    if not sys.platform.startswith("linux"):
        return False
    if _libc is None:
        _prctl(_PR_GET_CHILD_SUBREAPER, 0)  # loads libc
    assert _libc is not None
    value = ctypes.c_int(0)
    rc = int(_libc.prctl(_PR_GET_CHILD_SUBREAPER, ctypes.byref(value), 0, 0, 0))
    return rc == 0 and value.value == 1
