"""A stand-in trainer for the monitor tests: forks DataLoader-like workers, optionally starts a
DDP-like rank, allocates memory or ignores SIGTERM, writes its pids to --ready, then waits."""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--ready", required=True)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--ranks", type=int, default=0, help="extra ranks started with LOCAL_RANK")
    p.add_argument("--ignore-term", action="store_true", help="workers ignore SIGTERM")
    p.add_argument("--alloc-mb", type=int, default=0, help="allocate and touch this much")
    p.add_argument("--sleep", type=float, default=120.0)
    p.add_argument("--pymp", action="store_true", help="workers make and record /tmp/pymp-*")
    args = p.parse_args()

    if args.alloc_mb:
        block = bytearray(args.alloc_mb * 2**20)
        for i in range(0, len(block), 4096):
            block[i] = 1
    workers: list[int] = []
    tmp_r, tmp_w = os.pipe()
    for _ in range(args.workers):
        pid = os.fork()
        if pid == 0:
            if args.pymp:  # what a DataLoader worker's resource sharer makes, recorded
                import multiprocessing.util

                from ocrtrain.procman import record_tmpdir

                made = multiprocessing.util.get_temp_dir()
                record_tmpdir(made)
                os.write(tmp_w, f"{made}\n".encode())
            if args.ignore_term:
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            time.sleep(args.sleep)
            os._exit(0)
        workers.append(pid)
    tmpdirs: list[str] = []
    while args.pymp and len(tmpdirs) < args.workers:
        tmpdirs += os.read(tmp_r, 4096).decode().split()
    ranks: list[dict[str, object]] = []
    for r in range(1, args.ranks + 1):
        rank_ready = f"{args.ready}.rank{r}"
        env = dict(os.environ, LOCAL_RANK=str(r), RANK=str(r))
        cmd = [sys.executable, __file__, "--ready", rank_ready, "--workers", "1"]
        proc = subprocess.Popen([*cmd, "--sleep", str(args.sleep)], env=env)
        while not os.path.exists(rank_ready):
            time.sleep(0.01)
        with open(rank_ready) as f:
            ranks.append(json.load(f))
        del proc
    info = {"main": os.getpid(), "workers": workers, "ranks": ranks, "tmpdirs": tmpdirs}
    tmp = args.ready + ".tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, args.ready)
    time.sleep(args.sleep)
    return 0


if __name__ == "__main__":
    sys.exit(main())
