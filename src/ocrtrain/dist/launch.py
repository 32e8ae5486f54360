"""The launch forms of a multi-node job, before torch is imported.

`ocrtrain train dist.nnodes=N dist.nproc_per_node=P dist.rdzv_endpoint=HOST:PORT [overrides]`
stands for `ocrtrain run -- torchrun --nnodes N --nproc-per-node P --rdzv-backend c10d
--rdzv-endpoint HOST:PORT -m ocrtrain.train [overrides]`, and `ocrtrain run` starts a
`torchrun` command as `python -m ocrtrain.dist.agent` (torchrun itself, with the signals
ocrtrain needs handled: see that module).
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence

from ocrtrain.dist.env import under_torchrun
from ocrtrain.procman import NO_SUPERVISOR_ENV, UsageError, current_run_id, ensure_supervised

AGENT = ("-m", "ocrtrain.dist.agent")
# The overrides that shape the launch, and torchrun's options they become.
LAUNCH_KEYS = {
    "dist.nnodes": "--nnodes",
    "dist.nproc_per_node": "--nproc-per-node",
    "dist.rdzv_endpoint": "--rdzv-endpoint",
    "dist.rdzv_id": "--rdzv-id",
    "dist.max_restarts": "--max-restarts",
}
_WHOLE_NUMBERS = ("dist.nnodes", "dist.nproc_per_node", "dist.max_restarts")
DEFAULT_RDZV_ID = "ocrtrain"


def agent_argv(argv: Sequence[str]) -> list[str]:
    """`argv` with a leading `torchrun` replaced by ocrtrain's agent (same options)."""
    if argv and os.path.basename(argv[0]) == "torchrun":
        return [sys.executable, *AGENT, *argv[1:]]
    return list(argv)


def _launch_values(overrides: Sequence[str]) -> dict[str, str]:
    values = {}
    for override in overrides:
        key, sep, value = override.partition("=")
        if sep and key in LAUNCH_KEYS:
            values[key] = value
    for key in _WHOLE_NUMBERS:
        least = 0 if key == "dist.max_restarts" else 1
        if key in values and not (values[key].isdigit() and int(values[key]) >= least):
            raise UsageError(
                f"{key} must be a whole number of at least {least}, not {values[key]!r}"
            )
    return values


def torchrun_argv(overrides: Sequence[str], entry: Sequence[str], grace: float) -> list[str] | None:
    """The agent command that `overrides` ask for (None: one process, no launcher).

    Args:
        overrides: the training overrides; all of them reach every rank.
        entry: what each rank runs, e.g. `["-m", "ocrtrain.train"]` or a script path.
        grace: seconds the agent gives its ranks to save after a stop signal.

    Raises:
        UsageError: a launch value is not a number, or several nodes have no rendezvous.
    """
    values = _launch_values(overrides)
    nnodes = int(values.get("dist.nnodes", "1"))
    nproc = int(values.get("dist.nproc_per_node", "1"))
    if nnodes == 1 and nproc == 1:
        return None
    endpoint = values.get("dist.rdzv_endpoint", "null")
    if endpoint in ("", "null"):
        if nnodes > 1:
            raise UsageError(
                f"dist.nnodes={nnodes} needs dist.rdzv_endpoint=HOST:PORT, an address of node 0 "
                "that every node reaches (the same on every node)"
            )
        endpoint = "127.0.0.1:0"  # one node: a free port
    return [
        sys.executable,
        *AGENT,
        "--nnodes", str(nnodes),
        "--nproc-per-node", str(nproc),
        "--rdzv-backend", "c10d",
        "--rdzv-endpoint", endpoint,
        "--rdzv-id", values.get("dist.rdzv_id", DEFAULT_RDZV_ID),
        "--max-restarts", values.get("dist.max_restarts", "0"),
        "--shutdown-timeout", str(max(1, round(grace))),
        *entry,
        *overrides,
    ]  # fmt: skip


def launch_job(name: str, overrides: Sequence[str], entry: Sequence[str], grace: float) -> None:
    """Start the torchrun agent that `overrides` ask for, supervised, in place of this
    process; return when they ask for no multi-rank job or this process is already a rank.

    Raises:
        UsageError: bad launch values, or a torchrun rank outside a supervised run.
    """
    if under_torchrun():
        if not current_run_id() and os.environ.get(NO_SUPERVISOR_ENV) != "1":
            raise UsageError(
                "a torchrun rank outside a supervised run: start torchrun as "
                "'ocrtrain run -- torchrun ...', or use 'ocrtrain train dist.nnodes=N "
                "dist.nproc_per_node=P dist.rdzv_endpoint=HOST:PORT ...'"
            )
        return
    cmd = torchrun_argv(overrides, entry, grace)
    if cmd is None:
        return
    if current_run_id() or os.environ.get(NO_SUPERVISOR_ENV) == "1":
        sys.stdout.flush()
        sys.stderr.flush()
        os.execv(cmd[0], cmd)
    ensure_supervised(name, cmd[1:], grace=grace)
