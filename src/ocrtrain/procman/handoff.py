"""Hand a script over to the supervisor: `ensure_supervised()` re-executes the current
program under `ocrtrain run` unless it already runs inside a supervised run.

The exec keeps the pid and the process group, so a script started from a terminal stays in the
terminal's foreground group and Ctrl+C reaches the supervisor, which forwards it once.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ocrtrain.procman.envnames import NO_SUPERVISOR_ENV, RUN_DIR_ENV, RUN_ID_ENV

# The names stay importable from here for the supervisor and watchdog.
__all__ = ["NO_SUPERVISOR_ENV", "RUN_DIR_ENV", "RUN_ID_ENV", "current_run_id", "ensure_supervised"]


def current_run_id() -> str | None:
    """The id of the supervised run this process belongs to, if any."""
    return os.environ.get(RUN_ID_ENV) or None


def ensure_supervised(
    name: str,
    argv: Sequence[str] | None = None,
    grace: float | None = None,
    extra_args: Sequence[str] = (),
) -> None:
    """Re-exec `sys.executable argv...` under `ocrtrain run --name NAME` unless already supervised.

    Returns only when the caller is already inside a run (or `OCRTRAIN_NO_SUPERVISOR=1` is set,
    an escape hatch for debuggers); otherwise the process image is replaced.

    Args:
        name: the run's name in the journal.
        argv: the program and its arguments, as for `sys.executable` (default: `sys.argv`).
        grace: seconds between SIGTERM and SIGKILL at teardown (default: the supervisor's).
        extra_args: more `ocrtrain run` options (e.g. `["--max-memory", "8G"]`).
    """
    if current_run_id() or os.environ.get(NO_SUPERVISOR_ENV) == "1":
        return
    args = list(sys.argv if argv is None else argv)
    cmd = [sys.executable, "-m", "ocrtrain", "run", "--name", name]
    if grace is not None:
        cmd += ["--grace", str(grace)]
    cmd += [*extra_args, "--", sys.executable, *args]
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, cmd)
