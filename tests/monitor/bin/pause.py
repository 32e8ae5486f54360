"""Sleeps (optionally after forking N children with the same argv, like DataLoader workers).
Used as `runners/train.py`, and as the program behind decoys whose argv[0] is vim or less."""

import os
import sys
import time

for _ in range(int(os.environ.get("PAUSE_FORKS", "0"))):
    if os.fork() == 0:
        break
open(
    os.environ["PAUSE_READY"] + f".{os.getpid()}", "w"
).close() if "PAUSE_READY" in os.environ else None
time.sleep(float(os.environ.get("PAUSE_S", "60")))
sys.exit(0)
