"""`python -m ocrtrain.dist.agent [torchrun options] SCRIPT|-m MODULE [args]`: torchrun's
elastic agent, as `ocrtrain run` starts it on each node.

torchrun alone has no SIGUSR1 handler (the signal would kill the agent and the job), and with
SIGUSR1 in `--signals-to-handle` it shuts the job down. This agent relays SIGUSR1/SIGUSR2 to
its ranks (those that installed a handler; a rank still importing would die of it) and goes
on, so "save now" reaches every rank while the agents keep the job. SIGTERM/SIGINT go to the
ranks alone too: torchrun would signal each rank's process group, whose DataLoader workers
die of SIGTERM before their rank saves. The ranks agree on the step, save once and exit
128+N; the supervisor's grace bounds how long that may take. A job stopped by
SIGTERM/SIGINT exits 128+N on every node: on the node that got the signal (torchrun exits 1
there) and on the others, whose ranks all stopped with the same 128+N. Ranks report how they
ended in a file of the agent's (`record_exit`): torchrun does not say, when node 0's agent,
host of the rendezvous, ended first and this agent failed to reach it. A rank without
progress for `dist.timeout_s` ends the job with a report (`ocrtrain.dist.watch`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from ocrtrain.dist.watch import StallWatch, local_ranks
from ocrtrain.procman import RUN_DIR_ENV, catches, register_stack_dump

log = logging.getLogger(__name__)

RANK_EXITS_ENV = "OCRTRAIN_RANK_EXITS"
RANK_EXITS_DIR = "rank-exits"  # in the run folder: a killed agent leaves nothing in /tmp
RELAYED = (signal.SIGUSR1, signal.SIGUSR2)  # to ranks that catch them
STOPS = (signal.SIGTERM, signal.SIGINT)  # to every rank
TORCHRUN_HANDLES = "SIGHUP,SIGQUIT"  # what torchrun still turns into a shutdown
STOP_CODES = {128 + s for s in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
USAGE = 2  # every rank refused the job's input (each printed its one ERROR: line)


def _relay(signum: int, frame: FrameType | None) -> None:
    # Runs between the agent's monitor polls; os.kill is all it does.
    for pid in local_ranks():
        if signum not in STOPS and not catches(pid, signum):
            os.write(2, f"ocrtrain agent: rank pid {pid} not ready for signal {signum}\n".encode())
            continue
        try:
            os.kill(pid, signum)
        except ProcessLookupError:  # the rank just ended
            pass


def record_exit(code: int) -> None:
    """Tell this rank's agent how the rank ends (a no-op outside ocrtrain's agent)."""
    folder = os.environ.get(RANK_EXITS_ENV)
    if folder:
        rank = os.environ.get("LOCAL_RANK", "0")
        with contextlib.suppress(OSError):
            Path(folder, rank).write_text(f"{code} {os.environ.get('LOCAL_WORLD_SIZE', '1')}\n")


def _common_end(folder: Path) -> int | None:
    """The exit code all local ranks reported, if they all reported the same stop or usage."""
    codes, expected = set(), set()
    reports = list(folder.iterdir())
    for report in reports:
        with contextlib.suppress(OSError, ValueError):
            code, world = report.read_text().split()
            codes.add(int(code))
            expected.add(int(world))
    if len(codes) == 1 and expected == {len(reports)} and codes <= {*STOP_CODES, USAGE}:
        return codes.pop()
    return None


def main(argv: Sequence[str] | None = None) -> int:
    """Run torchrun with `argv`; returns the node's exit code."""
    for sig in (*RELAYED, *STOPS):
        signal.signal(sig, _relay)
    register_stack_dump()
    from torch.distributed.elastic.multiprocessing.api import SignalException
    from torch.distributed.run import main as torchrun_main

    exits = _exits_folder()
    os.environ[RANK_EXITS_ENV] = str(exits)  # the ranks inherit it
    watch = StallWatch()
    watch.start()
    try:
        args = list(sys.argv[1:] if argv is None else argv)
        torchrun_main(["--signals-to-handle", TORCHRUN_HANDLES, *args])  # a user's comes later
    except SignalException as exc:
        return 128 + int(exc.sigval)
    except Exception as exc:  # ChildFailedError, or a rendezvous gone with node 0's agent
        code = _common_end(exits)
        if code is not None:
            return code  # the same end on every rank: a stop signal some node got, bad input
        if watch.verdict is None:  # else the stall was reported already
            print(f"ERROR: {exc}", file=sys.stderr)
        return 1
    finally:
        watch.close()
        shutil.rmtree(exits, ignore_errors=True)
    return 0


def _exits_folder() -> Path:
    """A fresh folder for the ranks' exit reports: in the run folder when supervised."""
    run_dir = os.environ.get(RUN_DIR_ENV)
    if not run_dir:
        return Path(tempfile.mkdtemp(prefix="ocrtrain-rank-exits-"))
    folder = Path(run_dir) / RANK_EXITS_DIR
    shutil.rmtree(folder, ignore_errors=True)  # a restarted agent's old reports
    folder.mkdir(parents=True)
    return folder


if __name__ == "__main__":
    sys.exit(main())
