#!/usr/bin/env python3
"""The old `process_monitor.py`, kept for users of the old guide; it maps onto `ocrtrain ps`
and `ocrtrain cleanup` (same code, same output, same exit codes).

    python scripts/process_monitor.py --list [--json] [--watch [S]] [--match PATTERN]
    python scripts/process_monitor.py --cleanup [--dry-run] [--yes] [--force] [--grace S]
                                      [--run ID] [--all] [--match PATTERN] [--all-users]

Unlike the old script it never matches by a command-line substring: see `docs/monitoring.md`.
It runs from a checkout without installation (it adds `src/` to the path if needed).
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence
from pathlib import Path

try:
    import ocrtrain  # noqa: F401
except ImportError:  # a plain checkout: use its sources
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from ocrtrain.cli import report_errors
from ocrtrain.monitor import cli
from ocrtrain.procman.errors import UsageError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="process_monitor.py", description=__doc__.splitlines()[0])
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--list", action="store_true", help="list runs (the default)")
    mode.add_argument("--cleanup", action="store_true", help="end orphans, close stale runs")
    p.add_argument("--json", action="store_true", help="JSON for scripts")
    p.add_argument("--watch", nargs="?", const=cli.DEFAULT_WATCH_S, type=float, metavar="S")
    p.add_argument("--match", metavar="PATTERN")
    p.add_argument("--all-users", action="store_true")
    p.add_argument("--no-gpu", action="store_true")
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("-y", "--yes", action="store_true")
    p.add_argument("--force", action="store_true")
    p.add_argument("--grace", default="5")
    p.add_argument("--run", metavar="ID")
    p.add_argument("--all", action="store_true")
    p.add_argument("--stale", action="store_true")
    p.add_argument("--no-stale", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    def handle() -> int:
        if args.cleanup:
            if args.watch is not None:
                raise UsageError("--watch only applies to --list")
            return cli.cmd_cleanup(args)
        cleanup_only = ("dry_run", "yes", "force", "run", "all", "stale", "no_stale")
        if any(getattr(args, k) for k in cleanup_only):
            raise UsageError("--dry-run, --yes, --force, --run, --all, --stale apply to --cleanup")
        return cli.cmd_ps(args)

    return report_errors(handle)


if __name__ == "__main__":
    sys.exit(main())
