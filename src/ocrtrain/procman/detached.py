"""Body of `ocrtrain run --detach`: fork once more so the supervisor belongs to no launcher
(the launcher reaps the intermediate process at once), then supervise the recorded run.

Run as `python -m ocrtrain.procman.detached --home DIR --run-id ID`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from ocrtrain.procman.supervisor import supervise_recorded


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="ocrtrain-detached")
    parser.add_argument("--home", required=True)
    parser.add_argument("--run-id", required=True)
    args = parser.parse_args(argv)
    if os.fork() != 0:
        os._exit(0)  # the launcher reaps us now; the supervisor lives on, re-parented
    return supervise_recorded(Path(args.home), args.run_id)


if __name__ == "__main__":
    sys.exit(main())
