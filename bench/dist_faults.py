"""The multi-node fault table: torchrun alone vs Lightning-spawned DDP vs ocrtrain, in one run.

Each trial starts a 2-rank job (gloo on CPU, 2 DataLoader workers per rank), injects one fault
once every rank has trained a few steps, and measures the seconds until every process of the
job was gone on every node, or how many were left at the cap.

- torchrun alone: two "nodes" on 127.0.0.1, `torchrun --nnodes 2 --nproc-per-node 1` with a c10d
  rendezvous, each running a plain DDP loop (bench/dist_trainer.py);
- Lightning DDP: one node, `Trainer(accelerator="cpu", devices=2, strategy="ddp")`: rank 0 is
  the launcher and starts rank 1;
- ocrtrain: two nodes, `ocrtrain run -- torchrun ... runners/train.py debug=smoke`, grace 20 s,
  `dist.timeout_s=15`.

Every process of a node carries a unique BENCH_TAG in its environment: that is how they are
counted and, at the end of each trial, killed.

Usage: .venv/bin/python bench/dist_faults.py [--json] [--only FAULT] [--cap SECONDS]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TRAINER = HERE / "dist_trainer.py"
GRACE_S = 20
TIMEOUT_S = 15  # ocrtrain's dist.timeout_s
STYLES = ("torchrun alone", "Lightning DDP", "ocrtrain")
FAULTS = {
    "rank-kill": "a rank SIGKILLed (node B's; Lightning: rank 1)",
    "agent-kill": "node B's agent SIGKILLed (Lightning: rank 0, the launcher)",
    "stall": "a rank SIGSTOPped (node B's; Lightning: rank 1)",
    "sigterm": "SIGTERM to one node (node A's agent or supervisor; Lightning: rank 0)",
}
SMOKE = [
    "debug=smoke",
    "dataloaders.train.num_workers=2",
    "dataloaders.val.num_workers=0",
    "dataloaders.test.num_workers=0",
    "data.train.batches_per_epoch=1000",
    "callbacks.checkpoint.every_n_train_steps=100000",
    "trainer.max_epochs=1000",
    f"dist.timeout_s={TIMEOUT_S}",
]


@dataclass
class Trial:
    fault: str
    style: str
    down_after_s: float | None  # None: processes still there at the cap
    left_at_cap: int
    error: str | None = None


def _stat(pid: int | str) -> list[bytes]:
    with open(f"/proc/{pid}/stat", "rb") as f:
        return f.read().rsplit(b")", 1)[1].split()


def tagged(*tags: str) -> list[int]:
    """Live processes whose environment carries one of these BENCH_TAGs."""
    needles = {f"BENCH_TAG={t}".encode() for t in tags}
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/environ", "rb") as f:
                if not needles & set(f.read().split(b"\0")):
                    continue
            if _stat(name)[0] in (b"Z", b"X"):
                continue
        except OSError:
            continue
        pids.append(int(name))
    return pids


def ppid(pid: int) -> int:
    return int(_stat(pid)[1])


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode().replace("\0", " ")
    except OSError:
        return ""


def wait_for(cond: Callable[[], object], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        time.sleep(0.05)
    return False


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def metric_step(outputs: Path) -> int:
    steps = [0]
    for metrics in outputs.glob("*/runs/*/metrics.jsonl"):
        for line in metrics.read_text().splitlines():
            if line.strip().endswith("}"):
                steps.append(int(json.loads(line).get("step", 0)))
    return max(steps)


class Job:
    """One job of a style: its nodes' launchers, started with their BENCH_TAGs."""

    def __init__(self, style: str, tmp: Path, home: str) -> None:
        self.style = style
        self.tmp = tmp
        self.tags = [f"{tmp.name}-a", f"{tmp.name}-b"]
        self.procs: list[subprocess.Popen[bytes]] = []
        self.log = open(tmp / "output.log", "wb")  # noqa: SIM115 (closed in stop())
        base = {**os.environ, "OCRTRAIN_HOME": home, "PYTHONWARNINGS": "ignore"}
        base.pop("OCRTRAIN_RUN_ID", None)
        endpoint = f"127.0.0.1:{free_port()}"
        trainer = [str(TRAINER), "--ready-dir", str(tmp)]
        for node, tag in zip("ab", self.tags, strict=True):
            torchrun = ["--nnodes", "2", "--nproc-per-node", "1", "--rdzv-backend", "c10d",
                        "--rdzv-endpoint", endpoint, "--rdzv-id", "bench"]  # fmt: skip
            if style == "torchrun alone":
                cmd = [sys.executable, "-m", "torch.distributed.run", *torchrun,
                       *trainer, "--launcher", "torchrun"]  # fmt: skip
            elif style == "Lightning DDP":
                if node == "b":
                    break  # one node: rank 0 starts rank 1
                cmd = [sys.executable, *trainer, "--launcher", "lightning"]
            else:
                cmd = [sys.executable, "-m", "ocrtrain", "run", "--name", f"bench-{node}",
                       "--grace", str(GRACE_S), "--", "torchrun", *torchrun,
                       str(REPO / "runners" / "train.py"), *SMOKE,
                       f"paths.outputs_root={tmp / 'outputs'}", "experiment_name=f"]  # fmt: skip
            self.procs.append(
                subprocess.Popen(
                    cmd,
                    cwd=REPO,
                    env={**base, "BENCH_TAG": tag},
                    stdout=self.log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )

    def ready(self) -> bool:
        if self.style == "ocrtrain":
            return metric_step(self.tmp / "outputs") >= 2 and self.rank_b() is not None
        return all((self.tmp / f"{r}.json").exists() for r in (0, 1))

    def failed(self) -> bool:
        return any(p.poll() is not None for p in self.procs)

    def _rank_pids(self) -> list[int]:
        return [json.loads((self.tmp / f"{r}.json").read_text())["pid"] for r in (0, 1)]

    def agent_b(self) -> int | None:
        """Node B's agent; Lightning: rank 0, which launched rank 1."""
        if self.style == "Lightning DDP":
            return self._rank_pids()[0]
        if self.style == "torchrun alone":
            rank = self.rank_b()
            return None if rank is None else ppid(rank)
        return next((p for p in tagged(self.tags[1]) if "ocrtrain.dist.agent" in cmdline(p)), None)

    def rank_b(self) -> int | None:
        """Node B's rank; Lightning: rank 1."""
        if self.style == "Lightning DDP":
            return self._rank_pids()[1]
        if self.style == "torchrun alone":
            on_b = set(tagged(self.tags[1]))
            return next((p for p in self._rank_pids() if p in on_b), None)
        agent = self.agent_b()
        return next((p for p in tagged(self.tags[1]) if agent and ppid(p) == agent), None)

    def sigterm_target(self) -> int:
        """Node A's agent (torchrun), supervisor (ocrtrain), or Lightning's rank 0."""
        if self.style == "ocrtrain":
            return self.procs[0].pid
        if self.style == "Lightning DDP":
            return self._rank_pids()[0]
        on_a = set(tagged(self.tags[0]))
        return ppid(next(p for p in self._rank_pids() if p in on_a))

    def inject(self, fault: str) -> None:
        if fault == "rank-kill":
            os.kill(self.rank_b() or 0, signal.SIGKILL)
        elif fault == "agent-kill":
            os.kill(self.agent_b() or 0, signal.SIGKILL)
        elif fault == "stall":
            os.kill(self.rank_b() or 0, signal.SIGSTOP)
        else:
            os.kill(self.sigterm_target(), signal.SIGTERM)

    def stop(self) -> None:
        """Kill whatever of the job is left, and reap the launchers."""
        for pid in tagged(*self.tags):
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        self.log.close()


def one_trial(fault: str, style: str, home: str, cap: float) -> Trial:
    tmp = Path(tempfile.mkdtemp(prefix=f"distf-{os.getpid()}-"))
    job = Job(style, tmp, home)
    try:
        if not wait_for(lambda: job.ready() or job.failed(), 300) or job.failed():
            tail = (tmp / "output.log").read_text(errors="replace")[-300:].replace("\n", " ")
            return Trial(FAULTS[fault], style, None, 0, f"the job never trained: {tail}")
        job.inject(fault)
        t0 = time.monotonic()
        down = wait_for(lambda: not tagged(*job.tags), cap)
        took = time.monotonic() - t0
        return Trial(FAULTS[fault], style, took if down else None, len(tagged(*job.tags)))
    finally:
        job.stop()
        shutil.rmtree(tmp, ignore_errors=True)


def render(trials: list[Trial], cap: float) -> str:
    lines = [
        f"Seconds from the fault until every process of the job was gone on every node"
        f" (or the processes left at {cap:.0f} s).",
        "",
        f"| fault | {' | '.join(STYLES)} |",
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
            elif t.down_after_s is None:
                cells.append(f"**>{cap:.0f} s**, {t.left_at_cap} processes left")
            else:
                cells.append(f"{t.down_after_s:.1f} s")
        lines.append(f"| {fault} | {' | '.join(cells)} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--json", action="store_true", help="print the trials as JSON")
    p.add_argument("--only", choices=sorted(FAULTS), action="append", help="run only this fault")
    p.add_argument("--style", choices=STYLES, action="append", help="run only this launcher")
    p.add_argument("--cap", type=float, default=60.0, help="seconds to wait for the job to end")
    args = p.parse_args(argv)
    home = tempfile.mkdtemp(prefix="distf-home-")
    trials: list[Trial] = []
    try:
        for fault in args.only or list(FAULTS):
            for style in args.style or STYLES:  # one trial at a time: 2 CPU cores here
                trials.append(one_trial(fault, style, home, args.cap))
                if not args.json:
                    print(f"done: {fault} / {style}", file=sys.stderr)
    finally:
        subprocess.run(
            [sys.executable, "-m", "ocrtrain", "cleanup", "--yes"],
            env={**os.environ, "OCRTRAIN_HOME": home},
            capture_output=True,
            check=False,
        )
        shutil.rmtree(home, ignore_errors=True)
    if args.json:
        print(json.dumps([asdict(t) for t in trials], indent=2))
    else:
        print(render(trials, args.cap))
    return 0


if __name__ == "__main__":
    sys.exit(main())
