"""`python -m ocrtrain.dist.agent [torchrun options] SCRIPT|-m MODULE [args]`: torchrun's
elastic agent, as `ocrtrain run` starts it on each node.

torchrun alone has no SIGUSR1 handler (the signal would kill the agent and the job), and with
SIGUSR1 in `--signals-to-handle` it shuts the job down. This agent relays SIGUSR1/SIGUSR2 to
its ranks (those that installed a handler; a rank still importing would die of it) and goes
on, so "save now" reaches every rank while the agents keep the job. A job stopped by
SIGTERM/SIGINT exits 128+N on every node: on the node that got the signal (torchrun exits 1
there) and on the others, whose ranks all stopped with the same 128+N.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ocrtrain.procman.stacks import catches, register_stack_dump

log = logging.getLogger(__name__)

RELAYED = (signal.SIGUSR1, signal.SIGUSR2)
STOP_CODES = {128 + s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
USAGE = 2  # every rank refused the job's input (each printed its one ERROR: line)


def _ranks() -> list[int]:
    """The agent's children: the ranks it started (in their own sessions)."""
    pids: list[int] = []
    for task in Path("/proc/self/task").iterdir():
        try:
            pids += [int(p) for p in (task / "children").read_text().split()]
        except OSError:
            continue
    return pids


def _relay(signum: int, frame: FrameType | None) -> None:
    # Runs between the agent's monitor polls; os.kill is all it does.
    for pid in _ranks():
        if not catches(pid, signum):
            os.write(2, f"ocrtrain agent: rank pid {pid} not ready for signal {signum}\n".encode())
            continue
        try:
            os.kill(pid, signum)
        except ProcessLookupError:  # the rank just ended
            pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run torchrun with `argv`; returns the node's exit code."""
    for sig in RELAYED:
        signal.signal(sig, _relay)
    register_stack_dump()
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import main as torchrun_main

    try:
        torchrun_main(list(sys.argv[1:] if argv is None else argv))
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except ChildFailedError as exc:
        codes = {failure.exitcode for failure in exc.failures.values()}
        if len(codes) == 1 and codes <= {*STOP_CODES, USAGE}:
            return codes.pop()  # the same end on every rank: a stop signal, or bad input
        print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
