"""A plain PyTorch trainer with 4 DataLoader workers, used by bench/orphans.py.

`--style plain` is what most training scripts do; `--style setpgrp` adds the classic recipe
(`os.setpgrp()`, handlers that `killpg` the group, no persistent workers). Under `ocrtrain run`
the plain style is used: the supervisor does the work.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time

import torch
from torch.utils.data import DataLoader, Dataset, get_worker_info


class Lines(Dataset[torch.Tensor]):
    def __init__(self, mode: str) -> None:
        self.mode = mode

    def __len__(self) -> int:
        return 10**9

    def __getitem__(self, index: int) -> torch.Tensor:
        info = get_worker_info()
        if self.mode == "blocked" and index >= 16:
            r, _w = os.pipe()
            os.read(r, 1)  # blocked in __getitem__ for good
        if self.mode == "helper" and info is not None and info.id == 0 and index == 0:
            subprocess.Popen(["sh", "-c", "sleep 3600; :"], start_new_session=True)
        x = 0
        for i in range(20000):  # real CPU work per sample
            x = (x * 31 + i) % 1000003
        return torch.full((8,), float(x))


def main() -> int:
    p = argparse.ArgumentParser()
    p.add_argument("--style", choices=["plain", "setpgrp"], default="plain")
    p.add_argument("--mode", choices=["busy", "blocked", "helper"], default="busy")
    p.add_argument("--ready", required=True)
    p.add_argument("--batches", type=int, default=0, help="end after N batches (0: never)")
    args = p.parse_args()

    if args.style == "setpgrp":
        os.setpgrp()

        def kill_group(signum: int, frame: object) -> None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)
            os.killpg(0, signal.SIGTERM)
            sys.exit(128 + signum)

        signal.signal(signal.SIGINT, kill_group)
        signal.signal(signal.SIGTERM, kill_group)

    loader = DataLoader(
        Lines(args.mode),
        batch_size=4,
        num_workers=4,
        persistent_workers=args.style == "plain",
    )
    for n, _batch in enumerate(loader, 1):
        if n == 2:
            with open(args.ready + ".tmp", "w") as f:
                json.dump({"trainer": os.getpid()}, f)
            os.replace(args.ready + ".tmp", args.ready)
        if args.batches and n >= args.batches:
            break
        time.sleep(0.01)
    return 0


if __name__ == "__main__":
    sys.exit(main())
