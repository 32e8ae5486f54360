"""Processes left behind after each fault: plain PyTorch vs setpgrp+killpg vs `ocrtrain run`.

Each row starts a trainer with 4 DataLoader workers through a shell launcher, injects one
fault, and counts the processes of that trial still alive 1, 7 and 15 seconds later, and the
time until all were gone. Every process of a trial carries a unique BENCH_TAG in its
environment, which is how they are counted (and, at the end, killed).

Usage: .venv/bin/python bench/orphans.py [--json] [--only ROW]
"""

from __future__ import annotations

import argparse
import json
import os
import pty
import shlex
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
TRAINER = HERE / "orphans_trainer.py"
CHECKPOINTS = (1.0, 7.0, 15.0)
STYLES = ("plain PyTorch", "setpgrp+killpg", "ocrtrain run")
FAULTS = {
    "sigterm": "SIGTERM to the trainer",
    "sigkill": "SIGKILL to the trainer",
    "blocked": "SIGKILL to the trainer, a worker blocked in __getitem__",
    "helper": "a worker started a helper in its own session, trainer ends",
    "ctrl-c": "Ctrl+C to the terminal's foreground group",
    "launcher": "the launcher (shell) SIGKILLed",
}


@dataclass
class Trial:
    fault: str
    style: str
    left: list[int]
    gone_after_s: float | None  # None: still there at the last checkpoint
    error: str | None = None


def tagged(tag: str) -> list[int]:
    needle = f"BENCH_TAG={tag}".encode()
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if needle not in f.read().split(b"\0"):
                    continue
            with open(f"/proc/{name}/stat", "rb") as f:
                if f.read().rsplit(b")", 1)[1].split()[0] in (b"Z", b"X"):
                    continue
        except OSError:
            continue
        pids.append(int(name))
    return pids


def wait_for(cond, timeout: float) -> bool:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.02)
    return False


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] not in (b"Z", b"X")
    except OSError:
        return False


def trainer_cmd(style: str, mode: str, ready: Path, batches: int) -> list[str]:
    py = sys.executable
    base = [py, str(TRAINER), "--mode", mode, "--ready", str(ready), "--batches", str(batches)]
    if style == "plain PyTorch":
        return [*base, "--style", "plain"]
    if style == "setpgrp+killpg":
        return [*base, "--style", "setpgrp"]
    return [py, "-m", "ocrtrain", "run", "--name", "bench", "--", *base, "--style", "plain"]


def one_trial(fault: str, style: str, home: str) -> Trial:
    tag = f"{fault}-{style.split(maxsplit=1)[0]}-{os.getpid()}-{time.monotonic_ns()}"
    tmp = Path(tempfile.mkdtemp(prefix="orphans-"))
    ready = tmp / "ready.json"
    mode = {"blocked": "blocked", "helper": "helper"}.get(fault, "busy")
    batches = 6 if fault == "helper" else 0
    cmd = shlex.join(trainer_cmd(style, mode, ready, batches)) + "; true"
    env = {**os.environ, "BENCH_TAG": tag, "OCRTRAIN_HOME": home, "PYTHONWARNINGS": "ignore"}
    env.pop("OCRTRAIN_RUN_ID", None)
    master = None
    launcher_pid: int
    if fault == "ctrl-c":
        pid, master = pty.fork()
        if pid == 0:
            os.execve("/bin/bash", ["bash", "-c", cmd], env)
        launcher_pid = pid
        os.set_blocking(master, False)
    else:
        launcher = subprocess.Popen(["bash", "-c", cmd], env=env, start_new_session=True)
        launcher_pid = launcher.pid
    try:
        if not wait_for(ready.exists, 120):
            return Trial(FAULTS[fault], style, [], None, "trainer never got ready")
        trainer = json.loads(ready.read_text())["trainer"]
        wait_for(lambda: len(tagged(tag)) >= 5, 30)
        if fault == "sigterm":
            os.kill(trainer, signal.SIGTERM)
        elif fault in ("sigkill", "blocked"):
            os.kill(trainer, signal.SIGKILL)
        elif fault == "helper":
            wait_for(lambda: not alive(trainer), 60)
        elif fault == "ctrl-c":
            assert master is not None
            os.write(master, b"\x03")
        elif fault == "launcher":
            os.kill(launcher_pid, signal.SIGKILL)
        t0 = time.monotonic()
        left: list[int] = []
        gone: float | None = None
        for checkpoint in CHECKPOINTS:
            while time.monotonic() - t0 < checkpoint:
                if gone is None and not tagged(tag):
                    gone = time.monotonic() - t0
                if gone is not None:
                    break
                if master is not None:
                    try:
                        os.read(master, 65536)  # keep the terminal drained
                    except OSError:  # nothing to read, or the terminal closed
                        pass
                time.sleep(0.01)
            left.append(0 if gone is not None and gone <= checkpoint else len(tagged(tag)))
        return Trial(FAULTS[fault], style, left, gone)
    finally:
        for pid in tagged(tag):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for _ in range(100):
            try:
                if os.waitpid(launcher_pid, os.WNOHANG)[0]:
                    break
            except ChildProcessError:
                break
            time.sleep(0.01)
        if master is not None:
            os.close(master)


def render(trials: list[Trial]) -> str:
    head = f"| fault | {' | '.join(STYLES)} |"
    lines = [
        "Processes left at +1 s / +7 s / +15 s after the fault; time until all were gone.",
        "",
        head,
        "|---|" + "---|" * len(STYLES),
    ]
    for fault in FAULTS.values():
        cells = []
        for style in STYLES:
            t = next((t for t in trials if t.fault == fault and t.style == style), None)
            if t is None:
                cells.append("-")
            elif t.error:
                cells.append(f"error: {t.error}")
            else:
                gone = f"{t.gone_after_s:.2f} s" if t.gone_after_s is not None else "never (>15 s)"
                cells.append(f"{' / '.join(map(str, t.left))}, gone: {gone}")
        lines.append(f"| {fault} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true")
    p.add_argument("--only", choices=sorted(FAULTS), action="append")
    args = p.parse_args(argv)
    home = tempfile.mkdtemp(prefix="orphans-home-")
    trials: list[Trial] = []
    for fault in args.only or list(FAULTS):
        # One trial at a time: leftovers of one style must not slow the next one down.
        for style in STYLES:
            trials.append(one_trial(fault, style, home))
        if not args.json:
            print(f"done: {FAULTS[fault]}", file=sys.stderr)
    if args.json:
        print(json.dumps([asdict(t) for t in trials], indent=1))
    else:
        print(render(trials))
    ok = all(t.left[0] == 0 for t in trials if t.style == "ocrtrain run" and not t.error)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
